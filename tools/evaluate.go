package tools

import (
	"context"
	"fmt"
	"strings"

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
	Split          string             `json:"split" jsonschema:"train or validation"`
	Variant        string             `json:"variant" jsonschema:"the evaluated variant"`
	Run            string             `json:"run,omitempty" jsonschema:"train run id, for inspect_cases and attribute"`
	ScoreMean      float64            `json:"score_mean" jsonschema:"mean score over the scored cases (errored cases are in no mean)"`
	BreakdownMeans map[string]float64 `json:"breakdown_means,omitempty" jsonschema:"mean per scorer component"`
	Cases          int                `json:"cases" jsonschema:"cases in the run"`
	// Failed counts cases scored below full marks.
	Failed int `json:"failed" jsonschema:"cases scored below full marks"`
	// Errored counts train cases that got no answer because of the
	// infrastructure (provider errors after retries); they are in no mean.
	// A validation run with errored cases is refused, not reported.
	Errored     int              `json:"errored,omitempty" jsonschema:"train only: cases with no answer because of provider or network errors; not in score_mean"`
	ErrorCauses []run.CauseCount `json:"error_causes,omitempty" jsonschema:"train only: errored cases by cause, commonest first"`
	Cached      bool             `json:"cached,omitempty" jsonschema:"the same aggregate as before, at no charge"`
	Steps       []run.StepStats  `json:"steps,omitempty" jsonschema:"per step: runs, errors, calls, tokens, latency"`
	// Attribution summarizes a train run's failures by class and root step.
	Attribution *attribution.Report `json:"attribution,omitempty" jsonschema:"train: failures by class and root step (the cases are listed by attribute)"`
	// FailureClasses counts a fresh validation run's failures per class.
	FailureClasses map[string]int   `json:"failure_classes,omitempty" jsonschema:"validation: failed cases per class (counts only)"`
	USD            float64          `json:"usd" jsonschema:"dollars this run cost"`
	Next           string           `json:"next" jsonschema:"what to do now, from the session's state"`
	Budget         *loop.BudgetView `json:"budget_left,omitempty" jsonschema:"what is left of the session's budget"`
}

// Evaluate runs a variant on train or validation.
func Evaluate(d Deps) server.ServerTool {
	return server.ServerTool{
		Tool: mcp.NewTool("evaluate",
			mcp.WithDescription("Run a variant of the tenant's pipeline and score it. split=train returns a run id, the aggregate, per-step figures and the attribution (failure clusters, class@step); inspect a cluster's cases with inspect_cases cluster=class@step. split=validation returns the aggregate only, is allowed only for variants that passed review_variant, and is charged against the validation budget once per variant when its result is recorded (repeating it is free); a validation run where any case hit provider errors is refused, not charged, and continued by the next call. Counts: errored = no answer because of provider or network errors (in no mean), failed = scored below full marks. next says what to do now. Sends progress notifications; cancellable."),
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
				Progress: progressReporter(ctx, req, "evaluate "+in.Split, dataset.Split(in.Split) == dataset.Train)}
			switch dataset.Split(in.Split) {
			case dataset.Train:
				te, err := d.Workspace.EvaluateTrain(ctx, rr)
				if err != nil {
					return nil, err
				}
				sum := te.Summary
				next := strings.Join(te.Next, "; ")
				if sum.Errored > 0 {
					next = fmt.Sprintf("%d of %d cases errored (%s): they are not in score_mean; %s; evaluate again when fixed. %s",
						sum.Errored, sum.Cases, run.FormatCauses(sum.ErrorCauses, 3), sum.ErrorCauses[0].Hint, next)
				}
				return &EvaluateOut{Split: sum.Split, Variant: sum.Variant, Run: sum.RunID, ScoreMean: sum.ScoreMean,
					BreakdownMeans: sum.BreakdownMeans, Cases: sum.Cases, Failed: sum.Failed, Errored: sum.Errored,
					ErrorCauses: sum.ErrorCauses, Steps: sum.Steps, USD: sum.Usage.USD, Budget: budgetOf(d, in.Tenant),
					Attribution: te.Attribution, Next: next}, nil
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
					Next: nextOf(d, in.Tenant)}, nil
			default:
				return nil, fmt.Errorf("split %q: use train or validation (the test split is not reachable from here)", in.Split)
			}
		}),
	}
}

// nextOf is the session's next steps as one sentence.
func nextOf(d Deps, tenant string) string {
	st, err := d.Workspace.SessionStatus(tenant)
	if err != nil {
		return ""
	}
	return strings.Join(st.Next, "; ")
}
