package tools

import (
	"context"
	"fmt"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/fapo-dev/fapo/engine/attribution"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/run"
)

// EvaluateIn selects a variant and a split.
type EvaluateIn struct {
	TenantIn
	Variant string `json:"variant,omitempty" jsonschema:"variant id such as v0003 (default: the incumbent)"`
	Split   string `json:"split" jsonschema:"train (per-case traces you can inspect) or validation (aggregate only; reviewed variants only; charged once per variant)"`
	Limit   int    `json:"limit,omitempty" jsonschema:"train only: evaluate at most this many cases"`
}

// EvaluateOut is a run's aggregate. Train runs carry a run id for
// inspect_cases and attribute; validation runs carry nothing per case.
type EvaluateOut struct {
	Split          string             `json:"split"`
	Variant        string             `json:"variant"`
	Run            string             `json:"run,omitempty"`
	ScoreMean      float64            `json:"score_mean"`
	BreakdownMeans map[string]float64 `json:"breakdown_means,omitempty"`
	Cases          int                `json:"cases"`
	Failed         int                `json:"failed"`
	Cached         bool               `json:"cached,omitempty"`
	Steps          []run.StepStats    `json:"steps,omitempty"`
	// Attribution summarizes a train run's failures by class and root step.
	Attribution *attribution.Report `json:"attribution,omitempty"`
	// FailureClasses counts a fresh validation run's failures per class.
	FailureClasses map[string]int   `json:"failure_classes,omitempty"`
	USD            float64          `json:"usd"`
	Next           string           `json:"next"`
	Budget         *loop.BudgetView `json:"budget_left,omitempty"`
}

// Evaluate runs a variant on train or validation.
func Evaluate(d Deps) server.ServerTool {
	return server.ServerTool{
		Tool: mcp.NewTool("evaluate",
			mcp.WithDescription("Run a variant of the tenant's pipeline and score it. split=train returns a run id, the aggregate and per-step figures; inspect its cases with inspect_cases and its failures with attribute. split=validation returns the aggregate only, is allowed only for variants that passed review_variant, and is charged against the validation budget once per variant (repeating it is free). Sends progress notifications; cancellable."),
			mcp.WithTitleAnnotation("Evaluate a variant"),
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(false),
			mcp.WithIdempotentHintAnnotation(false),
			mcp.WithOpenWorldHintAnnotation(true),
			mcp.WithInputSchema[EvaluateIn](),
			mcp.WithOutputSchema[EvaluateOut](),
		),
		Handler: handle(d, "evaluate", func(ctx context.Context, req mcp.CallToolRequest, in EvaluateIn) (*EvaluateOut, error) {
			rr := loop.RunRequest{Tenant: in.Tenant, Variant: in.Variant, Limit: in.Limit,
				Progress: progressReporter(ctx, req, "evaluate "+in.Split)}
			switch dataset.Split(in.Split) {
			case dataset.Train:
				te, err := d.Workspace.EvaluateTrain(ctx, rr)
				if err != nil {
					return nil, err
				}
				sum := te.Summary
				return &EvaluateOut{Split: sum.Split, Variant: sum.Variant, Run: sum.RunID, ScoreMean: sum.ScoreMean,
					BreakdownMeans: sum.BreakdownMeans, Cases: sum.Cases, Failed: sum.ExecErrors + sum.ScoreErrors,
					Steps: sum.Steps, USD: sum.Usage.USD, Budget: budgetOf(d, in.Tenant), Attribution: te.Attribution,
					Next: fmt.Sprintf("attribute run %s to find the dominant failure cluster, then inspect_cases", sum.RunID)}, nil
			case dataset.Validation:
				if in.Limit != 0 {
					return nil, fmt.Errorf("limit applies to train only: validation always runs every case so that compares are paired")
				}
				v, err := d.Workspace.EvaluateValidation(ctx, rr)
				if err != nil {
					return nil, err
				}
				return &EvaluateOut{Split: "validation", Variant: v.Variant, ScoreMean: v.ScoreMean, BreakdownMeans: v.BreakdownMeans,
					Cases: v.Cases, Failed: v.Failed, Cached: v.Cached, FailureClasses: v.FailureClasses, Budget: budgetOf(d, in.Tenant),
					Next: "compare a reviewed candidate against the incumbent to decide"}, nil
			default:
				return nil, fmt.Errorf("split %q: use train or validation (the test split is not reachable from here)", in.Split)
			}
		}),
	}
}
