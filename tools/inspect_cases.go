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
	Failed   bool     `json:"failed,omitempty" jsonschema:"only failed cases: scored below full marks (errored cases are not failed; see errored)"`
	Errored  bool     `json:"errored,omitempty" jsonschema:"only errored cases: no answer because of provider or network errors"`
	Cluster  string   `json:"cluster,omitempty" jsonschema:"only cases of this failure cluster of the run's attribution, class@step as attribute and evaluate name it, e.g. truncation@summarize"`
	Class    string   `json:"class,omitempty" jsonschema:"only cases attributed to this failure class: infrastructure, truncation, cascade, retrieval, format or reasoning"`
	Step     string   `json:"step,omitempty" jsonschema:"only cases whose failure was attributed to this step, or where it errored, was cut off (finish_reason length), was skipped or produced nothing"`
	MaxScore *float64 `json:"max_score,omitempty" jsonschema:"only cases scoring at most this"`
	MinScore *float64 `json:"min_score,omitempty" jsonschema:"only cases scoring at least this"`
	CaseIDs  []string `json:"case_ids,omitempty" jsonschema:"only these train cases"`
	Offset   int      `json:"offset,omitempty" jsonschema:"skip this many matching cases (paging)"`
	Limit    int      `json:"limit,omitempty" jsonschema:"cases per page, default 5, at most 20"`
}

// InspectCasesOut is one page of cases.
type InspectCasesOut struct {
	*loop.CasePage
	Budget *loop.BudgetView `json:"budget_left,omitempty" jsonschema:"what is left of the session's budget"`
}

// InspectCases pages through the cases of a train run with their traces.
func InspectCases(d Deps) server.ServerTool {
	return server.ServerTool{
		Tool: mcp.NewTool("inspect_cases",
			mcp.WithDescription("Page through the cases of a TRAIN run: inputs, expected values, score, and for every step the rendered prompt, output, retrieved titles, finish reason, tokens and errors. Filter by failure cluster (cluster=class@step, as evaluate and attribute name clusters), class, step, failed (scored below full marks), errored (no answer because of provider errors), score or case ids; each case carries its attributed class and root step. Pages stay under ~40k characters. Validation and test cases are never shown."),
			mcp.WithTitleAnnotation("Inspect train cases"),
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
			mcp.WithIdempotentHintAnnotation(true),
			mcp.WithOpenWorldHintAnnotation(false),
			mcp.WithInputSchema[InspectCasesIn](),
			mcp.WithOutputSchema[InspectCasesOut](),
		),
		Handler: handle(d, "inspect_cases", func(ctx context.Context, _ mcp.CallToolRequest, in InspectCasesIn) (*InspectCasesOut, error) {
			page, err := d.Workspace.InspectCases(ctx, loop.InspectRequest{Tenant: in.Tenant, Run: in.Run, Failed: in.Failed, Errored: in.Errored,
				Class: in.Class, Cluster: in.Cluster,
				MaxScore: in.MaxScore, MinScore: in.MinScore, Step: in.Step, CaseIDs: in.CaseIDs, Offset: in.Offset, Limit: in.Limit})
			if err != nil {
				return nil, err
			}
			return &InspectCasesOut{CasePage: page, Budget: budgetOf(d, in.Tenant)}, nil
		}),
	}
}
