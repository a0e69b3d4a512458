package loop

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/tenant"
	"github.com/fapo-dev/fapo/engine/variant"
)

// CompareResult is a compare decision as the agent sees it: aggregates and
// statistics, never a case.
type CompareResult struct {
	Candidate      string           `json:"candidate" jsonschema:"the candidate"`
	Incumbent      string           `json:"incumbent" jsonschema:"the incumbent it was compared with"`
	CandidateScore float64          `json:"candidate_score" jsonschema:"candidate's validation mean"`
	IncumbentScore float64          `json:"incumbent_score" jsonschema:"incumbent's validation mean"`
	Decision       session.Decision `json:"decision" jsonschema:"the paired statistics and the decision"`
	NewIncumbent   string           `json:"new_incumbent" jsonschema:"the incumbent after the decision"`
	TargetMet      bool             `json:"target_met" jsonschema:"the new incumbent reaches the target"`
	// Caution says why the decision is weak evidence: too few paired
	// cases, or a confidence interval that includes no difference.
	Caution string     `json:"caution,omitempty" jsonschema:"why the decision is weak evidence: too few paired cases, or a confidence interval that includes 0"`
	Budget  BudgetView `json:"budget_left" jsonschema:"what is left of the session's budget"`
	Next    []string   `json:"next" jsonschema:"what to do now, from the session's state"`
	// PerModel is each task model's figures (one entry without several):
	// scores, $ and tokens per case, latency per case, pass^k.
	PerModel []ModelComparison `json:"per_model" jsonschema:"each task model's figures: scores, dollars and tokens per case, latency, pass^k"`
}

// minPairedCases is the number of paired validation cases below which a
// compare is reported as too small to tell a real difference from noise.
const minPairedCases = 30

// caution words the weakness of a decision's evidence, "" when there is
// none to report.
func caution(d session.Decision) string {
	var parts []string
	if d.N < minPairedCases {
		parts = append(parts, fmt.Sprintf("decided on only %d paired validation cases (fewer than %d): one case more or less can flip the decision", d.N, minPairedCases))
	}
	if d.Reusable == nil && d.Resamples > 0 && d.CILow <= 0 && d.CIHigh >= 0 {
		parts = append(parts, fmt.Sprintf("the 95%% confidence interval of the difference [%.3g, %.3g] includes 0, and the sign test gives p = %.3g (Holm-adjusted %.3g over %d compares): the difference may be noise",
			d.CILow, d.CIHigh, d.SignTestP, d.AdjustedP, d.Comparisons))
	}
	if len(parts) == 0 {
		return ""
	}
	what := "accepted"
	if !d.Accept {
		what = "rejected"
	}
	return what + " on weak evidence: " + strings.Join(parts, "; and ")
}

// Compare evaluates candidate and incumbent on the same validation cases
// (each charged once, then cached) and records the decision: the only way
// the incumbent moves.
func (w *Workspace) Compare(ctx context.Context, tenantName, candidateID string, progress func(run.Progress)) (*CompareResult, error) {
	o, err := w.begin(tenantName)
	if err != nil {
		return nil, err
	}
	defer o.close()
	t, sess, st := o.t, o.sess, o.st
	cand, err := o.variant(candidateID)
	if err != nil {
		return nil, err
	}
	if st.Locked != nil {
		return nil, &session.LockedSessionError{Session: sess.ID(), Lock: *st.Locked, Tenant: t.Name()}
	}
	if cand.ID == st.Incumbent {
		return nil, fmt.Errorf("%s is already the incumbent: compare a new reviewed variant against it", cand.ID)
	}
	if r, ok := st.LatestReview(cand.ID); !ok || !r.Passed {
		// Checked before any validation run is charged for the incumbent.
		return nil, refusal.New(refusal.Review, string(cand.ID), fmt.Sprintf("variant %s has not passed review; only reviewed variants reach validation", cand.ID))
	}
	inc, err := o.variant(string(st.Incumbent))
	if err != nil {
		return nil, err
	}
	if err := budgetCoversCompare(st, cand.ID, inc.ID); err != nil {
		return nil, err
	}
	incEval, err := w.validate(ctx, t, sess, inc, progress)
	if err != nil {
		return nil, fmt.Errorf("validation of the incumbent %s: %w", inc.ID, err)
	}
	candEval, err := w.validate(ctx, t, sess, cand, progress)
	if err != nil {
		return nil, fmt.Errorf("validation of %s: %w", cand.ID, err)
	}
	st, err = sess.State()
	if err != nil {
		return nil, err
	}
	acc := st.Scope.Acceptance
	pairs, err := w.pairModels(t, st, acc, cand.ID, inc.ID)
	if err != nil {
		return nil, err
	}
	candScores, incScores := pooled(pairs)
	var d session.Decision
	if mech := st.Reusable(); mech != nil {
		if mech.Seed, err = w.thresholdoutSeed(t, sess.ID()); err != nil {
			return nil, err
		}
		d, err = reusableDecision(st, mech, cand.ID, inc.ID, candScores, incScores)
		// The exact validation means would bypass the mechanism.
		candEval.ScoreMean, incEval.ScoreMean = 0, 0
	} else {
		d, err = session.CompareModels(modelScores(pairs), acc.ModelsRule, acc.Rule, acc.Bootstrap, acc.Seed, st.PriorPValues())
	}
	if err != nil {
		return nil, err
	}
	perModel := applyBounds(&d, acc, pairs, st.Reusable() != nil)
	if err := sess.RecordDecision(cand.ID, inc.ID, d); err != nil {
		return nil, err
	}
	st, err = sess.State()
	if err != nil {
		return nil, err
	}
	status, err := w.status(t, sess)
	if err != nil {
		return nil, err
	}
	return &CompareResult{Candidate: string(cand.ID), Incumbent: string(inc.ID), CandidateScore: candEval.ScoreMean,
		IncumbentScore: incEval.ScoreMean, Decision: d, NewIncumbent: string(st.Incumbent), TargetMet: targetMetForAgent(st),
		Caution: caution(d), Budget: budgetView(st), Next: status.Next, PerModel: perModel}, nil
}

// budgetCoversCompare refuses a compare the validation budget cannot
// finish before anything runs: evaluating the incumbent and then finding
// no evaluation left for the candidate would spend one for nothing.
func budgetCoversCompare(st *session.State, ids ...variant.ID) error {
	need := 0
	for _, id := range ids {
		for _, m := range st.Scope.Acceptance.Models() {
			if _, ok := st.ValidationOn(id, m); !ok {
				need++
			}
		}
	}
	left := st.Left()
	// With nothing left, the validation gate's own refusal says so.
	if need > left.ValidationEvals && left.ValidationEvals > 0 {
		return fmt.Errorf("validation budget too small for this compare: it needs %s not yet recorded, and %s; the incumbent stands unless a new session grants more",
			evaluations(need), left.String())
	}
	return nil
}

func evaluations(n int) string {
	if n == 1 {
		return "1 validation evaluation"
	}
	return fmt.Sprintf("%d validation evaluations", n)
}

// reusableDecision answers a compare through the session's reusable
// holdout: the query is the mean score difference, its training value taken
// from the server's own full train runs of both variants.
func reusableDecision(st *session.State, mech *session.ThresholdoutState, cand, inc variant.ID, candScores, incScores []float64) (session.Decision, error) {
	ct, cn, okC := latestTrain(st, cand)
	it, in, okI := latestTrain(st, inc)
	if !okC || !okI || cn != in {
		return session.Decision{}, fmt.Errorf("this session answers compares through the reusable holdout, which needs both variants' train scores on the same cases: evaluate %s and %s on the full train split first (no limit), then compare again", cand, inc)
	}
	var h float64
	for i := range candScores {
		h += candScores[i] - incScores[i]
	}
	h /= float64(len(candScores))
	return session.CompareReusable(mech, ct-it, h, len(candScores), st.Scope.Acceptance.Rule, len(st.Comparisons))
}

// latestTrain is the newest train aggregate of v over the most cases.
func latestTrain(st *session.State, v variant.ID) (float64, int, bool) {
	best, n, ok := 0.0, 0, false
	for _, a := range st.Train {
		if a.Variant == v && a.Cases >= n {
			best, n, ok = a.Value, a.Cases, true
		}
	}
	return best, n, ok
}

// thresholdoutSeed is the reusable holdout's noise seed for a session: an
// HMAC of the session id under a key of the tenant's in the sealed store.
// tenant.toml's seed (the bootstrap's) is the agent's to read, and with it
// every noise draw, and so the exact validation difference, could be
// recomputed.
func (w *Workspace) thresholdoutSeed(t *tenant.Tenant, sessionID string) (int64, error) {
	key, err := w.secret(t.Name(), "thresholdout")
	if err != nil {
		return 0, err
	}
	m := hmac.New(sha256.New, key)
	m.Write([]byte(sessionID))
	return int64(binary.BigEndian.Uint64(m.Sum(nil)) >> 1), nil
}
