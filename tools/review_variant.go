package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/fapo-dev/fapo/engine/loop"
)

// ReviewVariantIn names the variant to review.
type ReviewVariantIn struct {
	TenantIn
	Variant string `json:"variant" jsonschema:"the proposed variant id, e.g. v0003"`
}

// ReviewVariant runs the review gate.
func ReviewVariant(d Deps) server.ServerTool {
	return server.ServerTool{
		Tool: mcp.NewTool("review_variant",
			mcp.WithDescription("Run the review gate on a proposed variant: scope (level and frozen files), chain validity (dry run), leakage against held-out data (computed server-side, never quoted), memorization of train answers or cases, size, and the independent model reviewer when the tenant configures one. A variant must pass before it may touch validation."),
			mcp.WithTitleAnnotation("Review a variant"),
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(false),
			mcp.WithIdempotentHintAnnotation(false),
			mcp.WithOpenWorldHintAnnotation(true),
			mcp.WithInputSchema[ReviewVariantIn](),
			mcp.WithOutputSchema[loop.ReviewResult](),
		),
		Handler: handle(d, "review_variant", func(ctx context.Context, _ mcp.CallToolRequest, in ReviewVariantIn) (*loop.ReviewResult, error) {
			return d.Workspace.Review(ctx, in.Tenant, in.Variant)
		}),
	}
}
