package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/fapo-dev/fapo/engine/loop"
)

// DiffVariantsIn names two variants.
type DiffVariantsIn struct {
	TenantIn
	From string `json:"from" jsonschema:"the older variant id, e.g. v0000"`
	To   string `json:"to" jsonschema:"the newer variant id, e.g. v0003"`
}

// DiffVariantsOut is a unified diff.
type DiffVariantsOut struct {
	Diff      string           `json:"diff" jsonschema:"unified diff, from → to"`
	Truncated bool             `json:"truncated,omitempty" jsonschema:"the diff was too long and was shortened; its last line says by how much"`
	Budget    *loop.BudgetView `json:"budget_left,omitempty" jsonschema:"what is left of the session's budget"`
}

// DiffVariants returns the unified diff between two variants.
func DiffVariants(d Deps) server.ServerTool {
	return server.ServerTool{
		Tool: mcp.NewTool("diff_variants",
			mcp.WithDescription("Unified diff of the files of two variants (both verified first)."),
			mcp.WithTitleAnnotation("Diff two variants"),
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
			mcp.WithIdempotentHintAnnotation(true),
			mcp.WithOpenWorldHintAnnotation(false),
			mcp.WithInputSchema[DiffVariantsIn](),
			mcp.WithOutputSchema[DiffVariantsOut](),
		),
		Handler: handle(d, "diff_variants", func(ctx context.Context, _ mcp.CallToolRequest, in DiffVariantsIn) (*DiffVariantsOut, error) {
			diff, truncated, err := d.Workspace.DiffVariants(in.Tenant, in.From, in.To)
			if err != nil {
				return nil, err
			}
			return &DiffVariantsOut{Diff: diff, Truncated: truncated, Budget: budgetOf(d, in.Tenant)}, nil
		}),
	}
}
