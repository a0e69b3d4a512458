package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/fapo-dev/fapo/engine/loop"
)

// AttributeIn names a train run.
type AttributeIn struct {
	TenantIn
	Run     string `json:"run" jsonschema:"a train run id returned by evaluate"`
	Analyze bool   `json:"analyze,omitempty" jsonschema:"also ask the tenant's analysis model to group reasoning failures into named patterns (costs a model call)"`
}

// AttributeOut is the run's failure attribution.
type AttributeOut struct {
	*loop.AttributionView
	Budget *loop.BudgetView `json:"budget_left,omitempty" jsonschema:"what is left of the session's budget"`
}

// Attribute traces each failed train case to a failure class and root step.
func Attribute(d Deps) server.ServerTool {
	return server.ServerTool{
		Tool: mcp.NewTool("attribute",
			mcp.WithDescription("Attribute the failures of a TRAIN run: each failed case gets a class (infrastructure, truncation, cascade, retrieval, format, reasoning), the step it started at and evidence; failures are clustered by (class, step) with the level that can address them (prompt, parameter, structural). The dominant cluster drives the escalation policy. Counts: errored = no answer because of provider or network errors, failed = scored below full marks, below_threshold = below fail_below, attributed = the classified cases. The expected values compared are the scorer's fields. Lists at most 40 failures; clusters cover all; inspect a cluster with inspect_cases cluster=class@step."),
			mcp.WithTitleAnnotation("Attribute failures"),
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(false),
			mcp.WithIdempotentHintAnnotation(true),
			mcp.WithOpenWorldHintAnnotation(true),
			mcp.WithInputSchema[AttributeIn](),
			mcp.WithOutputSchema[AttributeOut](),
		),
		Handler: handle(d, "attribute", func(ctx context.Context, _ mcp.CallToolRequest, in AttributeIn) (*AttributeOut, error) {
			v, err := d.Workspace.Attribute(ctx, in.Tenant, in.Run, in.Analyze)
			if err != nil {
				return nil, err
			}
			return &AttributeOut{AttributionView: v, Budget: budgetOf(d, in.Tenant)}, nil
		}),
	}
}
