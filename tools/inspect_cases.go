package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/fapo-dev/fapo/engine/loop"
)

// InspectCasesIn selects cases of a train run.
type InspectCasesIn struct {
	TenantIn
	Run      string   `json:"run" jsonschema:"a train run id returned by evaluate"`
	Failed   bool     `json:"failed,omitempty" jsonschema:"only cases below full marks or with an error"`
	MaxScore *float64 `json:"max_score,omitempty" jsonschema:"only cases scoring at most this"`
	MinScore *float64 `json:"min_score,omitempty" jsonschema:"only cases scoring at least this"`
	Step     string   `json:"step,omitempty" jsonschema:"only cases where this step failed, was skipped or produced nothing"`
	CaseIDs  []string `json:"case_ids,omitempty" jsonschema:"only these train cases"`
	Offset   int      `json:"offset,omitempty" jsonschema:"skip this many matching cases (paging)"`
	Limit    int      `json:"limit,omitempty" jsonschema:"cases per page, default 5, at most 20"`
}

// InspectCasesOut is one page of cases.
type InspectCasesOut struct {
	*loop.CasePage
	Budget *loop.BudgetView `json:"budget_left,omitempty"`
}

// InspectCases pages through the cases of a train run with their traces.
func InspectCases(d Deps) server.ServerTool {
	return server.ServerTool{
		Tool: mcp.NewTool("inspect_cases",
			mcp.WithDescription("Page through the cases of a TRAIN run: inputs, expected values, score, and for every step the rendered prompt, output, retrieved titles, finish reason, tokens and errors. Filter by failure, score, step or case ids. Pages stay under ~40k characters. Validation and test cases are never shown."),
			mcp.WithTitleAnnotation("Inspect train cases"),
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
			mcp.WithIdempotentHintAnnotation(true),
			mcp.WithOpenWorldHintAnnotation(false),
			mcp.WithInputSchema[InspectCasesIn](),
			mcp.WithOutputSchema[InspectCasesOut](),
		),
		Handler: handle(d, "inspect_cases", func(ctx context.Context, _ mcp.CallToolRequest, in InspectCasesIn) (*InspectCasesOut, error) {
			page, err := d.Workspace.InspectCases(ctx, loop.InspectRequest{Tenant: in.Tenant, Run: in.Run, Failed: in.Failed,
				MaxScore: in.MaxScore, MinScore: in.MinScore, Step: in.Step, CaseIDs: in.CaseIDs, Offset: in.Offset, Limit: in.Limit})
			if err != nil {
				return nil, err
			}
			return &InspectCasesOut{CasePage: page, Budget: budgetOf(d, in.Tenant)}, nil
		}),
	}
}
