package loop

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/internal/fsx"
	"github.com/fapo-dev/fapo/engine/review"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/tenant"
	"github.com/fapo-dev/fapo/engine/variant"
)

// ReviewResult is the gate's verdict as the agent sees it.
type ReviewResult struct {
	Variant string         `json:"variant" jsonschema:"the reviewed variant"`
	Verdict review.Verdict `json:"verdict" jsonschema:"the gate's decision"`
	Next    string         `json:"next" jsonschema:"what to do now"`
	Budget  BudgetView     `json:"budget_left" jsonschema:"what is left of the session's budget"`
}

// Review runs the review gate on a proposed variant and journals the
// verdict. Leakage is computed here, server-side, from the sealed store;
// the verdict never quotes held-out text.
func (w *Workspace) Review(ctx context.Context, tenantName, variantID string) (*ReviewResult, error) {
	o, err := w.begin(tenantName)
	if err != nil {
		return nil, err
	}
	defer o.close()
	t, sess, st := o.t, o.sess, o.st
	cand, err := o.variant(variantID)
	if err != nil {
		return nil, err
	}
	if st.Locked != nil {
		return nil, &session.LockedSessionError{Session: sess.ID(), Lock: *st.Locked, Tenant: t.Name()}
	}
	if st.LevelOf(cand.ID) == "" {
		return nil, fmt.Errorf("variant %s was not proposed in session %s: only this session's proposals are reviewed", cand.ID, sess.ID())
	}
	parent, err := o.variant(string(cand.Manifest.Parent))
	if err != nil {
		return nil, err
	}
	in, err := w.reviewInput(ctx, t, st, parent, cand)
	if err != nil {
		return nil, err
	}
	gate := &review.Gate{}
	if name := t.Config.Review.Model; name != "" {
		e, err := w.envFor(t)
		if err != nil {
			return nil, err
		}
		c, model, err := e.Client(name)
		if err != nil {
			return nil, fmt.Errorf("review.model: %w", err)
		}
		if w.opts.NewReviewer == nil {
			return nil, fmt.Errorf("review.model is %q but no model reviewer is configured in this server", name)
		}
		gate.Reviewer = w.opts.NewReviewer(c, model)
	}
	v := gate.Review(ctx, in)
	summary := fmt.Sprintf("%d findings", len(v.Findings))
	if len(v.Findings) > 0 {
		var msgs []string
		for _, f := range v.Findings {
			msgs = append(msgs, f.Check+": "+f.Message)
		}
		summary = strings.Join(msgs, " | ")
	}
	if err := sess.RecordReview(cand.ID, v.Pass, len(v.Findings), summary); err != nil {
		return nil, err
	}
	if v.LocksSession {
		reason := fmt.Sprintf("variant %s carries evaluation data in many places (leakage check)", cand.ID)
		if err := sess.LockForOperator(string(cand.ID), reason); err != nil {
			return nil, err
		}
	}
	st, err = sess.State()
	if err != nil {
		return nil, err
	}
	next := fmt.Sprintf("compare %s against the incumbent %s on validation", cand.ID, st.Incumbent)
	switch {
	case st.Locked != nil:
		next = (&session.LockedSessionError{Session: sess.ID(), Lock: *st.Locked, Tenant: t.Name()}).Error()
	case !v.Pass:
		next = fmt.Sprintf("%s failed review and will never reach validation: address the findings in a new proposal (parent %s)", cand.ID, parent.ID)
	}
	return &ReviewResult{Variant: string(cand.ID), Verdict: v, Next: next, Budget: budgetView(st)}, nil
}

func (w *Workspace) reviewInput(ctx context.Context, t *tenant.Tenant, st *session.State, parent, cand *variant.Variant) (review.Input, error) {
	train, err := w.trainAll(t)
	if err != nil {
		return review.Input{}, fmt.Errorf("read train split: %w", err)
	}
	in := review.Input{
		Level: cand.Manifest.Level, Rationale: cand.Manifest.Rationale, TargetCluster: cand.Manifest.TargetCluster,
		Parent: parent.Files(), Candidate: cand.Files(), AllowedLevels: st.Scope.AllowedLevels,
		FrozenFiles: st.Scope.FrozenFiles, Scope: scopeText(st.Scope),
		Train:          trainFacts(train),
		MaxPromptChars: t.Config.Review.MaxPromptChars, NgramSize: t.Config.Review.LeakageNgram,
		Validate: func(files map[string][]byte) error { return w.dryRun(t, files, train) },
	}
	fp, err := w.store.Fingerprints(ctx, t.Name())
	if err == nil {
		in.HeldOut = fingerprintOverlap{fp}
		if in.Rendered, err = w.renderHeldOut(ctx, t, cand); err != nil {
			return review.Input{}, err
		}
	}
	return in, nil
}

// maxRenderedCases bounds the held-out cases the gate renders: enough for
// every table to show, few enough that a review of a HotpotQA-sized tenant
// stays quick.
const maxRenderedCases = 2000

// renderHeldOut renders the candidate's chain on the held-out cases, in the
// server and without a model call, for the gate's rendered-answer checks.
// A chain that does not load renders nothing (the validity check says why);
// a case whose templates fail to render is skipped, since a template that
// fails shows a model nothing.
func (w *Workspace) renderHeldOut(ctx context.Context, t *tenant.Tenant, cand *variant.Variant) ([]review.RenderedCase, error) {
	ch, err := w.loadChain(t, cand.FS())
	if err != nil {
		return nil, nil
	}
	var out []review.RenderedCase
	for _, split := range []dataset.Split{dataset.Validation, dataset.Test} {
		err := w.store.ReadSplit(ctx, t.Name(), split, func(c dataset.Case) error {
			if len(out) >= maxRenderedCases {
				return nil
			}
			r := ch.Render(c, 0)
			input := append(stringLeaves(c.Context), r.Sourced...)
			out = append(out, review.RenderedCase{Expected: textLeaves(c.Expected),
				Input: strings.Join(input, "\n"), Prompts: strings.Join(r.Prompts, "\n")})
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("render the candidate on held-out cases: %w; nothing was recorded: review again, and tell the operator if it repeats", err)
		}
	}
	return out, nil
}

// textLeaves lists every scalar of an expected value as text: strings, and
// numbers and booleans as a prompt would spell them.
func textLeaves(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case float64, bool, int, int64:
		return []string{fmt.Sprint(x)}
	case map[string]any:
		var out []string
		for _, k := range slices.Sorted(maps.Keys(x)) {
			out = append(out, textLeaves(x[k])...)
		}
		return out
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, textLeaves(e)...)
		}
		return out
	}
	return nil
}

// fingerprintOverlap adapts the sealed store's fingerprints to the gate.
type fingerprintOverlap struct{ fp *dataset.Fingerprints }

func (f fingerprintOverlap) Overlap(text string) (int, int) { return f.fp.MatchText(text) }

// dryRun loads the candidate chain from its files in memory — the bytes
// the gate reviews, never a copy on disk that could change — and renders
// every template on a few train cases, with no model call.
func (w *Workspace) dryRun(t *tenant.Tenant, files map[string][]byte, train []dataset.Case) error {
	ch, err := w.loadChain(t, fsx.MapFS(files))
	if err != nil {
		return err
	}
	sample := train[:min(3, len(train))]
	for _, c := range sample {
		if err := ch.DryRun(c); err != nil {
			return fmt.Errorf("dry run on train case %s: %w", c.CaseID, err)
		}
	}
	if msg := ch.ModelFreeOutput(sample...); msg != "" {
		return errors.New(msg)
	}
	return nil
}

// trainFacts collects what identifies single train cases: their ids,
// expected values held by one case only (values shared by several cases,
// such as class labels, belong in prompts), and their input texts.
func trainFacts(cases []dataset.Case) review.TrainFacts {
	var f review.TrainFacts
	owners := map[string]map[string]bool{}
	for _, c := range cases {
		f.CaseIDs = append(f.CaseIDs, c.CaseID)
		for _, s := range stringLeaves(c.Expected) {
			n := dataset.Normalize(s)
			if owners[n] == nil {
				owners[n] = map[string]bool{}
			}
			owners[n][c.CaseID] = true
		}
		f.Inputs = append(f.Inputs, stringLeaves(c.Context)...)
	}
	for v, ids := range owners {
		if len(ids) == 1 && v != "" {
			f.Answers = append(f.Answers, v)
		}
	}
	return f
}

func stringLeaves(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case map[string]any:
		var out []string
		for _, k := range slices.Sorted(maps.Keys(x)) {
			out = append(out, stringLeaves(x[k])...)
		}
		return out
	case []any:
		var out []string
		for _, e := range x {
			out = append(out, stringLeaves(e)...)
		}
		return out
	}
	return nil
}

func scopeText(sc session.Scope) string {
	return fmt.Sprintf("target %s; allowed levels %v; frozen files %v; budget %d variants, %d validation evaluations, $%g",
		sc.Target, sc.AllowedLevels, sc.FrozenFiles, sc.Budget.MaxVariants, sc.Budget.MaxValidationEvals, sc.Budget.MaxUSD)
}
