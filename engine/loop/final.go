package loop

import (
	"context"
	"fmt"
	"math"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/tenant"
	"github.com/fapo-dev/fapo/engine/variant"
)

// FinalRequest asks for the one-shot test evaluation.
type FinalRequest struct {
	Tenant   string
	Variant  string // "best" or "" means the incumbent of the latest session
	Force    bool
	Progress func(run.Progress)
	// OnPlan, when set, is told what the run will evaluate before its
	// first case: the test split costs its cases × repeats × task models.
	OnPlan func(FinalPlan)
}

// FinalPlan is what a final run evaluates, and what it is expected to call.
type FinalPlan struct {
	Variant string
	Cases   int
	Repeats int
	// Models are the task models, [""] for [model] alone.
	Models []string
	// Evaluations is Cases × Repeats × len(Models): the runs of the
	// pipeline, each as many model calls as the pipeline makes for a case.
	Evaluations int
	// CallsPerEvaluation and USDPerEvaluation are what one evaluation of
	// the variant made and cost (at list price) in the session's runs of
	// it, validation before train; 0 when it has none. ModelCalls and USD
	// are the expected totals from them. A continued run makes fewer.
	CallsPerEvaluation float64
	USDPerEvaluation   float64
	ModelCalls         int
	USD                float64
	// MeasuredOn says which runs the figures per evaluation come from.
	MeasuredOn string
}

// FinalResult is the test aggregate, for the operator.
type FinalResult struct {
	// Summary is the test run on [model], or on the first task model when
	// the tenant declares several (each is in PerModel).
	Summary  *run.Summary
	Variant  string
	Previous int // earlier final runs, when forced
	// ScoreMean is the test score: the run's mean, or the mean over the
	// task models' runs.
	ScoreMean float64
	PerModel  []ModelFinal
}

// ModelFinal is the test run on one task model.
type ModelFinal struct {
	Model   string
	Summary *run.Summary
}

// Final evaluates the test split once. It is reachable only from the fapo
// final command, never from a tool: the test split exists for the human's
// one look at the end. A second run is refused unless forced, and every run
// (forced or not) is journaled.
func (w *Workspace) Final(ctx context.Context, req FinalRequest) (*FinalResult, error) {
	t, err := w.tenant(req.Tenant)
	if err != nil {
		return nil, err
	}
	j, err := w.journal(t)
	if err != nil {
		return nil, err
	}
	var previous []session.Entry
	if err := j.Read(func(e session.Entry) error {
		// Refusals and incomplete runs did not use the one shot.
		if e.Kind == session.KindFinalRun && e.Data["refused"] != true && e.Data["incomplete"] != true {
			previous = append(previous, e)
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if len(previous) > 0 && !req.Force {
		last := previous[len(previous)-1]
		_, _ = j.Append(session.Entry{Kind: session.KindFinalRun, Variant: last.Variant,
			Data: map[string]any{"refused": true, "reason": "test split already evaluated"}})
		return nil, refusal.New(refusal.RerunFinal, t.Name(), fmt.Sprintf("the test split of %s was already evaluated (variant %s, %s): a second look turns the test split into a validation split",
			t.Name(), last.Variant, last.Time.Format("2006-01-02 15:04")))
	}
	// The latest session names the best variant and measured what an
	// evaluation of it costs.
	var sessState *session.State
	active, err := session.ActiveSession(j)
	if err == nil {
		if sessState, err = active.State(); err != nil {
			return nil, err
		}
	}
	sessID := ""
	id := req.Variant
	if id == "" || id == "best" {
		id = string(variant.Baseline)
		if sessState != nil {
			id, sessID = string(sessState.Incumbent), active.ID()
		}
	}
	vs, err := w.variants(t)
	if err != nil {
		return nil, err
	}
	v, err := w.getVariant(t, vs, nil, id)
	if err != nil {
		return nil, err
	}
	total, err := w.splitSize(t, dataset.Test)
	if err != nil {
		return nil, err
	}
	// The test split is evaluated the way validation decided: on every
	// task model, each case as many times. The one shot is one final over
	// all of them: it is used only when every model's run is a result.
	acc := t.Config.Acceptance
	models := acc.TaskModels
	if len(models) == 0 {
		models = []string{""}
	}
	repeats := max(acc.Repeats, 1)
	if req.OnPlan != nil {
		req.OnPlan(w.finalPlan(t, sessState, v.ID, total, repeats, models))
	}
	res := &FinalResult{Variant: string(v.ID), Previous: len(previous)}
	for _, m := range models {
		// A test run that did not become a result (interrupted, or cases
		// that errored) is continued: its scored cases stand, only the
		// rest run.
		sum, err := w.executeHeldOut(ctx, t, v, RunRequest{Split: dataset.Test, Progress: req.Progress,
			Labels: heldOutLabels(map[string]string{"purpose": "final"}, m, repeats), TaskModel: m, Repeats: repeats}, "purpose")
		if err != nil {
			return nil, refusal.Wrap(refusal.RunFinal, t.Name(), fmt.Sprintf("the test run of %s%s did not finish, so the one shot is not used; the final evaluation run again continues it", v.ID, onModel(m)), err)
		}
		if inc := sum.Incomplete(total * repeats); inc != nil {
			inc.Consequence = "the test split's one shot is not used, and running the final evaluation again re-runs only those cases"
			_, _ = j.Append(session.Entry{Kind: session.KindFinalRun, Session: sessID, Variant: string(v.ID),
				Data: map[string]any{"incomplete": true, "run": sum.RunID, "cases": inc.Cases, "errored": inc.Errored}})
			return nil, inc
		}
		res.PerModel = append(res.PerModel, ModelFinal{Model: m, Summary: sum})
		res.ScoreMean += sum.ScoreMean / float64(len(models))
	}
	res.Summary = res.PerModel[0].Summary
	sum := res.Summary
	data := map[string]any{"run": sum.RunID, "score_mean": res.ScoreMean, "cases": sum.Cases / repeats, "forced": len(previous) > 0}
	if len(res.PerModel) > 1 {
		per := map[string]any{}
		for _, pm := range res.PerModel {
			per[pm.Model] = map[string]any{"run": pm.Summary.RunID, "score_mean": pm.Summary.ScoreMean}
		}
		data["per_model"] = per
	}
	if _, err := j.Append(session.Entry{Kind: session.KindFinalRun, Session: sessID, Variant: string(v.ID), Data: data}); err != nil {
		return nil, err
	}
	return res, nil
}

// onModel names a task model in a message, "" for [model].
func onModel(m string) string {
	if m == "" {
		return ""
	}
	return " on task model " + m
}

// finalPlan is what a final run of v will evaluate, with the calls and
// cost per evaluation measured on the session's runs of v: its validation
// results (on the task models, at list price) or, without one, its train
// runs (on [model], calls only).
func (w *Workspace) finalPlan(t *tenant.Tenant, st *session.State, v variant.ID, cases, repeats int, models []string) FinalPlan {
	p := FinalPlan{Variant: string(v), Cases: cases, Repeats: repeats, Models: models, Evaluations: cases * repeats * len(models)}
	if st == nil {
		return p
	}
	measure := func(aggs []session.Aggregate, store *run.Store, split string) {
		var calls, usd float64
		n := 0
		for _, a := range aggs {
			if a.Variant != v || a.Run == "" {
				continue
			}
			sum, err := store.Summary(a.Run)
			if err != nil || sum.Cases == 0 {
				continue
			}
			calls += float64(sum.Usage.Calls) / float64(sum.Cases)
			usd += a.USDPerCase
			n++
		}
		if n > 0 {
			p.CallsPerEvaluation, p.USDPerEvaluation = calls/float64(n), usd/float64(n)
			p.MeasuredOn = fmt.Sprintf("%d %s run(s) of %s", n, split, v)
		}
	}
	if store, err := w.heldOutRuns(t); err == nil {
		measure(st.History, store, string(dataset.Validation))
	}
	if p.MeasuredOn == "" {
		measure(st.Train, trainRuns(t), string(dataset.Train))
	}
	p.ModelCalls = int(math.Round(p.CallsPerEvaluation * float64(p.Evaluations)))
	p.USD = p.USDPerEvaluation * float64(p.Evaluations)
	return p
}
