package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/fapo-dev/fapo/engine/loop"
)

// ListTenantsIn takes no arguments.
type ListTenantsIn struct{}

// ListTenantsOut lists the workspace's tenants.
type ListTenantsOut struct {
	Tenants []loop.TenantInfo `json:"tenants" jsonschema:"every tenant of the workspace, broken ones with their problems"`
}

// ListTenants lists the tenants of the workspace.
func ListTenants(d Deps) server.ServerTool {
	return server.ServerTool{
		Tool: mcp.NewTool("list_tenants",
			mcp.WithDescription("List the tenants (pipelines with a dataset and a scorer) in this workspace: name, task type, target, whether the data is sealed, and the active session if any. Start here."),
			mcp.WithTitleAnnotation("List tenants"),
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
			mcp.WithIdempotentHintAnnotation(true),
			mcp.WithOpenWorldHintAnnotation(false),
			mcp.WithInputSchema[ListTenantsIn](),
			mcp.WithOutputSchema[ListTenantsOut](),
		),
		Handler: handle(d, "list_tenants", func(ctx context.Context, _ mcp.CallToolRequest, _ ListTenantsIn) (ListTenantsOut, error) {
			ts := d.Workspace.ListTenants()
			if ts == nil {
				ts = []loop.TenantInfo{}
			}
			return ListTenantsOut{Tenants: ts}, nil
		}),
	}
}
