package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/fapo-dev/fapo/engine/loop"
)

// GetVariantIn names a variant.
type GetVariantIn struct {
	TenantIn
	Variant string `json:"variant" jsonschema:"variant id, e.g. v0000 for the baseline"`
}

// GetVariantOut is a verified variant.
type GetVariantOut struct {
	*loop.VariantView
	Budget *loop.BudgetView `json:"budget_left,omitempty" jsonschema:"what is left of the session's budget"`
}

// GetVariant returns a variant's manifest and files.
func GetVariant(d Deps) server.ServerTool {
	return server.ServerTool{
		Tool: mcp.NewTool("get_variant",
			mcp.WithDescription("Read a variant: its chain.toml and prompt files, parent, level, rationale and target cluster. Its hashes are verified first; a tampered variant is refused."),
			mcp.WithTitleAnnotation("Get a variant"),
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
			mcp.WithIdempotentHintAnnotation(true),
			mcp.WithOpenWorldHintAnnotation(false),
			mcp.WithInputSchema[GetVariantIn](),
			mcp.WithOutputSchema[GetVariantOut](),
		),
		Handler: handle(d, "get_variant", func(ctx context.Context, _ mcp.CallToolRequest, in GetVariantIn) (*GetVariantOut, error) {
			v, err := d.Workspace.GetVariant(in.Tenant, in.Variant)
			if err != nil {
				return nil, err
			}
			return &GetVariantOut{VariantView: v, Budget: budgetOf(d, in.Tenant)}, nil
		}),
	}
}
