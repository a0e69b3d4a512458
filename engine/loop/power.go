package loop

import (
	"context"
	"fmt"
	"math"
	"slices"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/scoring"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/tenant"
	"github.com/fapo-dev/fapo/engine/variant"
)

// PowerView says how small a gain the validation split can tell from
// noise, before money is spent on looking for one.
type PowerView struct {
	ValidationCases int `json:"validation_cases" jsonschema:"cases in the validation split"`
	// MinDetectableEffect is the true mean gain (score points) a paired
	// comparison on the validation split detects with 80 % power at
	// two-sided α = 0.05: (z_0.975 + z_0.8)·σ_d/√n, the normal approximation.
	MinDetectableEffect float64 `json:"min_detectable_effect" jsonschema:"the true mean gain, in score points, a paired compare on validation detects with 80% power at two-sided alpha 0.05"`
	// PairedSD is the σ_d it assumes, from Basis: "baseline train run"
	// (√2 × the per-case standard deviation of the baseline on train) or
	// "bound" (the largest σ_d scores in [0, 100] allow, before any run).
	PairedSD float64 `json:"paired_sd" jsonschema:"the standard deviation of paired differences the estimate assumes"`
	Basis    string  `json:"basis" jsonschema:"where paired_sd comes from: baseline train run, or bound (the largest scores in 0..100 allow)"`
	// Run is the baseline's train run the estimate comes from, with its
	// scored cases and mean.
	Run               string   `json:"run,omitempty" jsonschema:"the baseline's train run the estimate comes from"`
	RunCases          int      `json:"run_cases,omitempty" jsonschema:"scored cases of that run"`
	BaselineTrainMean *float64 `json:"baseline_train_mean,omitempty" jsonschema:"the baseline's mean score on that run"`
	// TargetGain is the gain the session aims for: tenant.toml's
	// target.gain, else the target minus the baseline's train mean.
	TargetGain *float64 `json:"target_gain,omitempty" jsonschema:"the gain the session aims for: target.gain, else the target minus the baseline's train mean"`
	// Warning is set when TargetGain is below MinDetectableEffect.
	Warning string `json:"warning,omitempty" jsonschema:"set when target_gain is below min_detectable_effect: tell the user before spending"`
	Summary string `json:"summary" jsonschema:"the power figures in words"`
}

const (
	basisRun   = "baseline train run"
	basisBound = "bound"
	// minPowerCases is the fewest scored train cases a standard deviation
	// is estimated from; a short (limited) run says too little.
	minPowerCases = 10
)

// Power reports the validation split's minimum detectable effect for the
// operator (fapo seal), with the target of tenant.toml.
func (w *Workspace) Power(ctx context.Context, tenantName string) (*PowerView, error) {
	t, err := w.tenant(tenantName)
	if err != nil {
		return nil, err
	}
	var st *session.State
	if s, err := w.activeSession(t); err == nil {
		if st, err = s.State(); err != nil {
			return nil, err
		}
	}
	return w.power(ctx, t, st)
}

// power computes the PowerView of t; st, when there is a session, gives its
// target and its journaled train aggregates to check the run against.
func (w *Workspace) power(ctx context.Context, t *tenant.Tenant, st *session.State) (*PowerView, error) {
	m, err := w.store.Manifest(t.Name())
	if err != nil {
		return nil, err
	}
	n := m.Counts.Validation
	pv := &PowerView{ValidationCases: n, Basis: basisBound, PairedSD: session.MaxPairedSD(scoring.MaxScore)}
	if b, ok := w.baselineTrain(ctx, t, st); ok {
		pv.Basis, pv.Run, pv.RunCases = basisRun, b.run, b.cases
		pv.PairedSD = session.PairedSDFromBaseline(b.sd, scoring.MaxScore)
		mean := b.mean
		pv.BaselineTrainMean = &mean
	}
	pv.MinDetectableEffect = session.MinDetectableEffect(pv.PairedSD, n, session.Alpha, session.PlannedPower)
	target := t.Config.Target.Min
	if st != nil {
		target = st.Scope.Target.Min
	}
	gainFrom := ""
	switch {
	case t.Config.Target.Gain > 0:
		g := t.Config.Target.Gain
		pv.TargetGain, gainFrom = &g, "tenant.toml's target.gain"
	case pv.BaselineTrainMean != nil && t.Config.Target.Metric == tenant.DefaultTargetMetric:
		g := target - *pv.BaselineTrainMean
		pv.TargetGain, gainFrom = &g, fmt.Sprintf("the target %g minus the baseline's train mean %.1f", target, *pv.BaselineTrainMean)
	}
	mde := pv.MinDetectableEffect
	pv.Summary = fmt.Sprintf("with %d validation cases a paired comparison detects a true gain of about %.1f points 80%% of the time (two-sided α = 0.05, normal approximation, σ_d = %.1f from %s)",
		n, mde, pv.PairedSD, pv.basisText())
	switch g := pv.TargetGain; {
	case g == nil:
	case *g <= 0:
		pv.Summary += fmt.Sprintf("; the target gain (%s) is %.1f: the baseline already meets the target on train", gainFrom, *g)
	case *g < mde:
		pv.Warning = fmt.Sprintf("the target gain of %.1f points (%s) is below the %.1f points the %d validation cases can detect: a variant that truly gains that much is accepted less than 80%% of the time, and an accepted one may be noise. "+
			"The operator can enlarge data.validation and re-seal, or set a target the split can resolve", *g, gainFrom, mde, n)
		if pv.Basis == basisBound {
			pv.Warning += "; the figure is a worst-case bound: evaluate the baseline on train for an estimate from its own spread"
		}
	default:
		pv.Summary += fmt.Sprintf("; the target gain (%s) is %.1f points, above it", gainFrom, *g)
	}
	return pv, nil
}

func (pv *PowerView) basisText() string {
	if pv.Basis == basisRun {
		return fmt.Sprintf("the baseline's train run %s over %d cases", pv.Run, pv.RunCases)
	}
	return "the worst case for scores in [0, 100]; evaluate the baseline on train for an estimate"
}

type trainStats struct {
	run      string
	cases    int
	mean, sd float64
}

// baselineTrain returns the per-case spread of the newest train run of the
// baseline that this server recorded (the run index, never a directory
// found under runs/) with at least minPowerCases scored cases. The case
// log sits in the workspace, so a run whose log disagrees with its summary,
// or with the aggregate the session journaled for it, is passed over.
func (w *Workspace) baselineTrain(ctx context.Context, t *tenant.Tenant, st *session.State) (trainStats, bool) {
	recs, err := w.db.Runs(ctx, t.Name(), string(dataset.Train))
	if err != nil {
		return trainStats{}, false
	}
	for _, rec := range slices.Backward(recs) {
		if rec.Variant != string(variant.Baseline) {
			continue
		}
		sum, cases, err := w.trainRun(ctx, t, rec.ID)
		if err != nil {
			continue
		}
		scores := scoresOf(cases)
		if len(scores) < minPowerCases {
			continue
		}
		mean, sd := session.MeanSD(scores)
		// Scores that do not vary say nothing of how a difference would.
		if sd == 0 || len(scores) != sum.Scored || !near(mean, sum.ScoreMean) || !journalAgrees(st, rec.ID, len(scores), mean, sd) {
			continue
		}
		return trainStats{run: rec.ID, cases: len(scores), mean: mean, sd: sd}, true
	}
	return trainStats{}, false
}

// scoresOf are the composite scores of the scored cases.
func scoresOf(cases []run.CaseResult) []float64 {
	var scores []float64
	for _, cr := range cases {
		if !cr.Errored() {
			scores = append(scores, cr.Score)
		}
	}
	return scores
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*max(1, math.Abs(b)) }

// journalAgrees reports whether the session's journal, when it recorded
// run id, recorded the same count, mean and spread.
func journalAgrees(st *session.State, id string, cases int, mean, sd float64) bool {
	if st == nil {
		return true
	}
	for _, a := range st.Train {
		if a.Run == id && (a.Cases != cases || !near(a.Value, mean) || a.SD != nil && !near(*a.SD, sd)) {
			return false
		}
	}
	return true
}
