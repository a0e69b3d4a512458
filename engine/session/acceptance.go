package session

import (
	"fmt"
	"math"
	"strings"
)

// Rules across several task models.
const (
	// ModelsRuleEvery accepts only when the comparison on every task model
	// accepts: a prompt tuned to a strong model must not break a cheap one.
	ModelsRuleEvery = "every"
	// ModelsRuleMean accepts when the comparison of per-case scores
	// averaged over the task models accepts.
	ModelsRuleMean = "mean"
)

// ModelsRules lists the rules across task models.
var ModelsRules = []string{ModelsRuleEvery, ModelsRuleMean}

// ModelScores are one task model's per-case scores of candidate and
// incumbent, paired by index; with repeats, each is the case's mean.
type ModelScores struct {
	Model     string
	Candidate []float64
	Incumbent []float64
}

// ModelDecision is one task model's own comparison, reported beside the
// decision (aggregates only).
type ModelDecision struct {
	Model     string  `json:"model" jsonschema:"the task model ([models.NAME]; empty for [model])"`
	N         int     `json:"n" jsonschema:"paired validation cases on this model"`
	Delta     float64 `json:"delta" jsonschema:"mean of candidate minus incumbent on this model"`
	CILow     float64 `json:"ci_low" jsonschema:"lower bound of the 95% confidence interval of delta"`
	CIHigh    float64 `json:"ci_high" jsonschema:"upper bound of that interval"`
	SignTestP float64 `json:"sign_test_p" jsonschema:"exact two-sided sign-test p-value"`
	Wins      int     `json:"wins" jsonschema:"cases the candidate scored higher"`
	Losses    int     `json:"losses" jsonschema:"cases the candidate scored lower"`
	Ties      int     `json:"ties" jsonschema:"cases scored the same"`
	Accept    bool    `json:"accept" jsonschema:"the rule accepts the candidate on this model"`
}

// CompareModels decides over several task models. Every model's scores
// must be paired on the same cases in the same order. The decision's own
// statistics are those of the per-case scores averaged over the models, so
// a compare adds one p-value to the session's Holm family however many
// models it ran on; rule "every" also requires each model's own
// comparison, by the same acceptance rule, to accept. One model is plain
// Compare.
func CompareModels(ms []ModelScores, modelsRule, rule string, resamples int, seed int64, prior []float64) (Decision, error) {
	if len(ms) == 0 {
		return Decision{}, fmt.Errorf("compare: no task model to compare on")
	}
	if len(ms) == 1 {
		return Compare(ms[0].Candidate, ms[0].Incumbent, rule, resamples, seed, prior)
	}
	n := len(ms[0].Candidate)
	cand, inc := make([]float64, n), make([]float64, n)
	var per []ModelDecision
	every := true
	for _, m := range ms {
		if len(m.Candidate) != n || len(m.Incumbent) != n {
			return Decision{}, fmt.Errorf("compare: task model %s has %d paired cases, %s has %d: every model must be scored on the same validation cases", m.Model, len(m.Candidate), ms[0].Model, n)
		}
		d, err := Compare(m.Candidate, m.Incumbent, rule, resamples, seed, prior)
		if err != nil {
			return Decision{}, fmt.Errorf("task model %s: %w", m.Model, err)
		}
		per = append(per, ModelDecision{Model: m.Model, N: d.N, Delta: d.Delta, CILow: d.CILow, CIHigh: d.CIHigh,
			SignTestP: d.SignTestP, Wins: d.Wins, Losses: d.Losses, Ties: d.Ties, Accept: d.Accept})
		every = every && d.Accept
		for i := range n {
			cand[i] += m.Candidate[i] / float64(len(ms))
			inc[i] += m.Incumbent[i] / float64(len(ms))
		}
	}
	d, err := Compare(cand, inc, rule, resamples, seed, prior)
	if err != nil {
		return Decision{}, err
	}
	d.ModelsRule, d.PerModel = modelsRule, per
	var parts []string
	for _, p := range per {
		verdict := "accepts"
		if !p.Accept {
			verdict = "rejects"
		}
		parts = append(parts, fmt.Sprintf("%s %s (mean difference %+.4f)", p.Model, verdict, p.Delta))
	}
	switch modelsRule {
	case ModelsRuleEvery:
		d.Accept = every
		verdict := "accepted"
		if !every {
			verdict = "rejected"
		}
		d.Reason = fmt.Sprintf("%s by models rule %q over %d task models: %s; on the per-case mean over the models: %s",
			verdict, modelsRule, len(ms), strings.Join(parts, ", "), d.Reason)
	case ModelsRuleMean:
		d.Reason = fmt.Sprintf("decided by models rule %q on the per-case mean over %d task models (%s): %s",
			modelsRule, len(ms), strings.Join(parts, ", "), d.Reason)
	default:
		return Decision{}, fmt.Errorf("compare: unknown models rule %q: use %s", modelsRule, strings.Join(ModelsRules, " or "))
	}
	return d, nil
}

// Costs are a variant's per-case cost and latency on one task model, from
// its validation run: what the bounds compare.
type Costs struct {
	USDPerCase   float64
	LatencyP50MS float64
}

// BoundBroken is a cost or latency bound a candidate broke.
type BoundBroken struct {
	// Bound is "max_cost_ratio" or "max_latency_ratio".
	Bound string  `json:"bound" jsonschema:"max_cost_ratio or max_latency_ratio"`
	Model string  `json:"model,omitempty" jsonschema:"the task model (empty for [model])"`
	Limit float64 `json:"limit" jsonschema:"the tenant's bound"`
	// Ratio is candidate over incumbent (+Inf when the incumbent's is 0).
	Ratio     float64 `json:"ratio" jsonschema:"candidate over incumbent"`
	Candidate float64 `json:"candidate" jsonschema:"the candidate's figure"`
	Incumbent float64 `json:"incumbent" jsonschema:"the incumbent's figure"`
}

func (b BoundBroken) String() string {
	what, unit := "$ per case", func(v float64) string { return fmt.Sprintf("$%.6f", v) }
	if b.Bound == "max_latency_ratio" {
		what, unit = "median latency per case", func(v float64) string { return fmt.Sprintf("%.0f ms", v) }
	}
	on := ""
	if b.Model != "" {
		on = " on " + b.Model
	}
	ratio := fmt.Sprintf("%.2f×", b.Ratio)
	if math.IsInf(b.Ratio, 1) {
		ratio = "infinitely many times"
	}
	return fmt.Sprintf("%s%s is %s the incumbent's (%s against %s), above %s = %g by %.0f%%",
		what, on, ratio, unit(b.Candidate), unit(b.Incumbent), b.Bound, b.Limit, (b.Ratio/b.Limit-1)*100)
}

// ApplyBounds refuses d when the candidate's costs on model break a bound
// of a: whatever the scores say, a candidate that costs or waits more than
// the tenant allows does not become the incumbent. A ratio over nothing
// (both 0: unpriced models, or no figures) breaks no bound.
func (d *Decision) ApplyBounds(a Acceptance, model string, cand, inc Costs) {
	check := func(bound string, limit, c, i float64) {
		if limit <= 0 || c <= 0 {
			return
		}
		ratio := math.Inf(1)
		if i > 0 {
			ratio = c / i
		}
		if ratio > limit {
			d.BoundsBroken = append(d.BoundsBroken, BoundBroken{Bound: bound, Model: model, Limit: limit, Ratio: ratio, Candidate: c, Incumbent: i})
		}
	}
	check("max_cost_ratio", a.MaxCostRatio, cand.USDPerCase, inc.USDPerCase)
	check("max_latency_ratio", a.MaxLatencyRatio, cand.LatencyP50MS, inc.LatencyP50MS)
}

// FinishBounds rejects d when any bound was broken, saying which and by
// how much, after the scores' own verdict.
func (d *Decision) FinishBounds() {
	if len(d.BoundsBroken) == 0 {
		return
	}
	var parts []string
	for _, b := range d.BoundsBroken {
		parts = append(parts, b.String())
	}
	d.Accept = false
	d.Reason = fmt.Sprintf("rejected by the tenant's bounds: %s; the scores alone: %s", strings.Join(parts, "; "), d.Reason)
}

// PassK is pass^k over cases with n repeats each: the mean over cases of
// C(c, k) / C(n, k), c the case's passing repeats — the unbiased estimate
// of the chance that k fresh repeats of a case all pass (τ-bench's
// pass^k). It is 0 with no cases, and needs 1 <= k <= n.
func PassK(passes []int, n, k int) (float64, error) {
	if k < 1 || k > n {
		return 0, fmt.Errorf("pass^%d needs between 1 and %d repeats per case", k, n)
	}
	if len(passes) == 0 {
		return 0, nil
	}
	var s float64
	for _, c := range passes {
		if c < 0 || c > n {
			return 0, fmt.Errorf("pass^%d: a case passed %d of %d repeats", k, c, n)
		}
		s += choose(c, k) / choose(n, k)
	}
	return s / float64(len(passes)), nil
}

// choose is the binomial coefficient C(n, k) as a float (0 when k > n).
func choose(n, k int) float64 {
	if k > n {
		return 0
	}
	r := 1.0
	for i := range k {
		r = r * float64(n-i) / float64(i+1)
	}
	return r
}
