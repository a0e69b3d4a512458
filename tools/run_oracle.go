package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/fapo-dev/fapo/engine/attribution"
	"github.com/fapo-dev/fapo/engine/loop"
)

// RunOracleIn names the step whose headroom to measure.
type RunOracleIn struct {
	TenantIn
	Step    string `json:"step" jsonschema:"the step whose output is replaced by gold (a retrieve step with gold evidence, or a step mapped in tenant.toml [oracle])"`
	Variant string `json:"variant,omitempty" jsonschema:"the variant to replay (default: the incumbent)"`
	Sample  int    `json:"sample,omitempty" jsonschema:"train cases to replay, default 20, at most 200"`
}

// RunOracleOut is the measured headroom of the step.
type RunOracleOut struct {
	*attribution.OracleResult
	Budget *loop.BudgetView `json:"budget_left,omitempty" jsonschema:"what is left of the session's budget"`
}

// RunOracle measures how much a step could gain with a perfect output.
func RunOracle(d Deps) server.ServerTool {
	return server.ServerTool{
		Tool: mcp.NewTool("run_oracle",
			mcp.WithDescription("Measure a step's headroom: replay a sample of TRAIN cases with that step's output replaced by gold (gold retrieval paragraphs, or a field mapped in tenant.toml [oracle]) and report the score with and without, and how many cases changed. Use it before investing in a step. Its model calls are charged to the session's dollars (cached calls are free)."),
			mcp.WithTitleAnnotation("Measure a step's headroom"),
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(false),
			mcp.WithIdempotentHintAnnotation(true),
			mcp.WithOpenWorldHintAnnotation(true),
			mcp.WithInputSchema[RunOracleIn](),
			mcp.WithOutputSchema[RunOracleOut](),
		),
		Handler: handle(d, "run_oracle", func(ctx context.Context, _ mcp.CallToolRequest, in RunOracleIn) (*RunOracleOut, error) {
			res, err := d.Workspace.RunOracle(ctx, loop.OracleRequest{Tenant: in.Tenant, Variant: in.Variant, Step: in.Step, Sample: in.Sample})
			if err != nil {
				return nil, err
			}
			if len(res.Cases) > 50 {
				res.Cases = res.Cases[:50] // train cases only, but keep the answer small
			}
			return &RunOracleOut{OracleResult: res, Budget: budgetOf(d, in.Tenant)}, nil
		}),
	}
}
