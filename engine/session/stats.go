package session

import (
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/fapo-dev/fapo/engine/internal/suggest"
)

// Acceptance rules.
const (
	// RuleImproves accepts any positive mean difference (the reference
	// system's rule): cheap, but noisy on small validation sets.
	RuleImproves = "improves"
	// RuleSignificant accepts only when the bootstrap 95% CI of the mean
	// difference lies entirely above zero.
	RuleSignificant = "significant"
	// RuleSignificantAdjusted accepts only when the mean difference is
	// positive and the sign test's p-value, Holm-adjusted over every
	// comparison of the session, is below Alpha: the more candidates are
	// tried on the same validation cases, the stronger each must be.
	RuleSignificantAdjusted = "significant_adjusted"
)

// Rules lists the acceptance rules.
var Rules = []string{RuleImproves, RuleSignificant, RuleSignificantAdjusted}

// Alpha is the family-wise error rate of RuleSignificantAdjusted.
const Alpha = 0.05

// MinResamples is the fewest bootstrap resamples that give a usable 95% CI.
const MinResamples = 100

// tieEpsilon treats per-case differences this small as ties: scores that
// went through float arithmetic are not exactly equal when they "are".
const tieEpsilon = 1e-12

// Decision is the outcome of comparing a candidate with the incumbent on the
// same validation cases.
type Decision struct {
	// N is the number of paired cases.
	N int `json:"n" jsonschema:"paired validation cases (both variants scored)"`
	// Delta is the mean of candidate minus incumbent over the cases.
	Delta  float64 `json:"delta" jsonschema:"mean of candidate minus incumbent, in score points"`
	CILow  float64 `json:"ci_low" jsonschema:"lower bound of the paired bootstrap 95% confidence interval of delta"`
	CIHigh float64 `json:"ci_high" jsonschema:"upper bound of that interval"`
	// SignTestP is the exact two-sided sign-test p-value, ties dropped.
	SignTestP float64 `json:"sign_test_p" jsonschema:"exact two-sided sign-test p-value, ties dropped"`
	Wins      int     `json:"wins" jsonschema:"cases the candidate scored higher"`
	Losses    int     `json:"losses" jsonschema:"cases the candidate scored lower"`
	Ties      int     `json:"ties" jsonschema:"cases scored the same"`
	Accept    bool    `json:"accept" jsonschema:"the candidate became the incumbent"`
	Rule      string  `json:"rule" jsonschema:"the acceptance rule: improves (delta > 0) or significant (CI lower bound > 0)"`
	Resamples int     `json:"resamples" jsonschema:"bootstrap resamples"`
	Seed      int64   `json:"seed" jsonschema:"bootstrap seed"`
	// Comparisons counts validation comparisons made in the session,
	// this one included: the more are made, the likelier one wins by chance.
	Comparisons int `json:"comparisons" jsonschema:"validation comparisons in the session so far, this one included"`
	// AdjustedP is SignTestP Holm-adjusted over the session's comparisons
	// so far, this one included (family-wise error control for reusing the
	// same validation cases).
	AdjustedP float64 `json:"adjusted_p" jsonschema:"sign-test p Holm-adjusted over the session's comparisons"`
	// Reusable is set when the session answers compares through the
	// reusable holdout (Thresholdout): then Delta is the mechanism's noisy
	// answer and the exact statistics are withheld.
	Reusable *ReusableAnswer `json:"reusable_holdout,omitempty" jsonschema:"the reusable holdout's answer, when the session uses one (then the exact statistics are withheld)"`
	// ModelsRule and PerModel are set when the session validates on
	// several task models: the rule across them and each model's own
	// comparison (the fields above are over per-case means across models).
	ModelsRule string          `json:"models_rule,omitempty" jsonschema:"how the per-model decisions combine across task models"`
	PerModel   []ModelDecision `json:"per_model,omitempty" jsonschema:"each task model's own comparison"`
	// BoundsBroken lists the tenant's cost and latency bounds the
	// candidate broke; any one rejects it.
	BoundsBroken []BoundBroken `json:"bounds_broken,omitempty" jsonschema:"cost or latency bounds the candidate broke; any one rejects it"`
	Reason       string        `json:"reason" jsonschema:"the decision in one sentence"`
}

// Compare decides whether candidate beats incumbent. The slices hold
// per-case scores paired by index (the same validation case at the same
// index). prior are the sign-test p-values of the session's earlier
// comparisons, for the Holm adjustment. The bootstrap is seeded, so the
// same inputs always give the same decision.
func Compare(candidate, incumbent []float64, rule string, resamples int, seed int64, prior []float64) (Decision, error) {
	comparisonsSoFar := len(prior)
	switch {
	case len(candidate) != len(incumbent):
		return Decision{}, fmt.Errorf("compare: %d candidate scores but %d incumbent scores: both must be scored on the same validation cases", len(candidate), len(incumbent))
	case len(candidate) == 0:
		return Decision{}, fmt.Errorf("compare: no validation cases to compare on: evaluate both variants on validation first")
	case !slices.Contains(Rules, rule):
		return Decision{}, fmt.Errorf("compare: unknown acceptance rule %q: use %s%s", rule, strings.Join(Rules, " or "), suggest.Hint(rule, Rules))
	case resamples < MinResamples:
		return Decision{}, fmt.Errorf("compare: %d bootstrap resamples is too few: use at least %d (2000 is typical)", resamples, MinResamples)
	}
	diffs := make([]float64, len(candidate))
	d := Decision{N: len(diffs), Rule: rule, Resamples: resamples, Seed: seed, Comparisons: comparisonsSoFar + 1}
	for i := range candidate {
		if math.IsNaN(candidate[i]) || math.IsInf(candidate[i], 0) || math.IsNaN(incumbent[i]) || math.IsInf(incumbent[i], 0) {
			return Decision{}, fmt.Errorf("compare: case %d has a non-finite score (candidate %v, incumbent %v): fix the scorer output", i, candidate[i], incumbent[i])
		}
		diffs[i] = candidate[i] - incumbent[i]
		switch {
		case diffs[i] > tieEpsilon:
			d.Wins++
		case diffs[i] < -tieEpsilon:
			d.Losses++
		default:
			d.Ties++
		}
	}
	d.Delta = mean(diffs)
	d.CILow, d.CIHigh = bootstrapCI(diffs, resamples, seed, 0.95)
	d.SignTestP = SignTest(d.Wins, d.Losses)
	adj := HolmAdjusted(append(slices.Clone(prior), d.SignTestP))
	d.AdjustedP = adj[len(adj)-1]
	switch rule {
	case RuleImproves:
		d.Accept = d.Delta > 0
	case RuleSignificant:
		d.Accept = d.CILow > 0
	case RuleSignificantAdjusted:
		d.Accept = d.Delta > 0 && d.AdjustedP < Alpha
	}
	d.Reason = d.reason()
	return d, nil
}

func (d Decision) reason() string {
	verdict := "accepted"
	if !d.Accept {
		verdict = "rejected"
	}
	var why string
	switch {
	case d.Rule == RuleImproves && d.Accept:
		why = "the mean difference is above 0"
	case d.Rule == RuleImproves:
		why = "the mean difference is not above 0"
	case d.Rule == RuleSignificantAdjusted && d.Accept:
		why = fmt.Sprintf("the mean difference is above 0 and the Holm-adjusted p = %.4g is below %g", d.AdjustedP, Alpha)
	case d.Rule == RuleSignificantAdjusted:
		why = fmt.Sprintf("it needs a mean difference above 0 and a Holm-adjusted p below %g (adjusted p = %.4g over %d comparisons)", Alpha, d.AdjustedP, d.Comparisons)
	case d.Accept:
		why = "the 95% CI lies above 0"
	default:
		why = fmt.Sprintf("the 95%% CI lower bound %+.4f is not above 0", d.CILow)
	}
	return fmt.Sprintf("%s by rule %q: %s (mean difference %+.4f over %d paired validation cases, 95%% CI [%+.4f, %+.4f], sign test p = %.4g with %d wins, %d losses, %d ties, Holm-adjusted p = %.4g); validation comparison %d of this session",
		verdict, d.Rule, why, d.Delta, d.N, d.CILow, d.CIHigh, d.SignTestP, d.Wins, d.Losses, d.Ties, d.AdjustedP, d.Comparisons)
}

// HolmAdjusted returns Holm's step-down adjusted p-values of ps, in the
// order given: sorted ascending, the k-th smallest (from 0) is multiplied
// by m-k, made monotone by a running maximum and capped at 1. Rejecting
// where the adjusted p is below alpha keeps the chance of any false
// acceptance in the family at alpha, whatever the dependence between tests.
func HolmAdjusted(ps []float64) []float64 {
	m := len(ps)
	order := make([]int, m)
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case ps[a] < ps[b]:
			return -1
		case ps[a] > ps[b]:
			return 1
		}
		return 0
	})
	out := make([]float64, m)
	running := 0.0
	for k, i := range order {
		running = max(running, min(1, float64(m-k)*ps[i]))
		out[i] = running
	}
	return out
}

// PriorPValues are the sign-test p-values of the session's comparisons so
// far, for the Holm adjustment of the next one.
func (st *State) PriorPValues() []float64 {
	out := make([]float64, len(st.Comparisons))
	for i, c := range st.Comparisons {
		out[i] = c.Decision.SignTestP
	}
	return out
}

func mean(xs []float64) float64 {
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

// bootstrapCI is the percentile bootstrap interval of the mean of xs.
func bootstrapCI(xs []float64, resamples int, seed int64, level float64) (lo, hi float64) {
	// PCG is specified bit for bit, so a seed gives the same interval on
	// every platform and Go release.
	rng := rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15)) //nolint:gosec // G404: a reproducible bootstrap, not a secret
	means := make([]float64, resamples)
	n := len(xs)
	for b := range means {
		var s float64
		for range n {
			s += xs[rng.IntN(n)]
		}
		means[b] = s / float64(n)
	}
	slices.Sort(means)
	alpha := (1 - level) / 2
	return quantile(means, alpha), quantile(means, 1-alpha)
}

// quantile interpolates linearly between order statistics (type 7, the
// default of R and NumPy) over sorted xs.
func quantile(sorted []float64, p float64) float64 {
	h := float64(len(sorted)-1) * p
	i := int(math.Floor(h))
	if i+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	return sorted[i] + (h-float64(i))*(sorted[i+1]-sorted[i])
}

// SignTest is the exact two-sided binomial sign test of wins against losses
// under p = 1/2, computed with exact integers so small samples get exact
// values (9 wins, 1 loss → 22/1024).
func SignTest(wins, losses int) float64 {
	n := wins + losses
	if n == 0 {
		return 1
	}
	k := min(wins, losses)
	sum := new(big.Int)
	c := big.NewInt(1) // C(n, 0)
	for i := 0; i <= k; i++ {
		sum.Add(sum, c)
		c.Mul(c, big.NewInt(int64(n-i)))
		c.Quo(c, big.NewInt(int64(i+1)))
	}
	sum.Lsh(sum, 1) // two-sided
	p, _ := new(big.Rat).SetFrac(sum, new(big.Int).Lsh(big.NewInt(1), uint(n))).Float64()
	return min(p, 1)
}

// PlannedPower is the power the minimum detectable effect is reported at:
// the chance that a comparison detects a true gain of that size.
const PlannedPower = 0.8

// MinDetectableEffect is the smallest true mean difference that a paired
// comparison of n cases detects with probability power at two-sided level
// alpha, by the normal approximation to the paired test:
//
//	MDE = (z_{1−α/2} + z_{power}) · σ_d / √n
//
// where σ_d is the standard deviation of the per-case differences
// (candidate − incumbent). At α = 0.05 and 80 % power the factor is
// 1.960 + 0.842 = 2.802. The approximation ignores the t distribution's
// heavier tails, which matter below about 20 cases; the sign test (rule
// significant_adjusted) needs a larger effect than this, about √(π/2) ≈ 1.25
// times it for normal differences, and the Holm adjustment more still after
// several comparisons.
func MinDetectableEffect(sdDiff float64, n int, alpha, power float64) float64 {
	if n <= 0 || sdDiff < 0 {
		return math.Inf(1)
	}
	return (normalQuantile(1-alpha/2) + normalQuantile(power)) * sdDiff / math.Sqrt(float64(n))
}

// MaxPairedSD is the largest standard deviation a paired difference of two
// scores in [0, scale] can have: the difference lies in [−scale, scale], and
// its variance is largest, scale², when it is ±scale with probability ½
// each. It bounds σ_d before anything has been measured.
func MaxPairedSD(scale float64) float64 { return scale }

// PairedSDFromBaseline estimates σ_d from the per-case standard deviation s
// of the baseline's scores: two variants with that spread whose per-case
// scores were uncorrelated would differ with σ_d = √2·s. Variants of one
// pipeline are usually positively correlated (the same cases are hard for
// both), which makes the true σ_d smaller, so the estimate errs towards
// caution; it is capped at MaxPairedSD(scale).
func PairedSDFromBaseline(s, scale float64) float64 {
	return min(math.Sqrt2*s, MaxPairedSD(scale))
}

// normalQuantile is the inverse of the standard normal distribution
// function.
func normalQuantile(p float64) float64 { return math.Sqrt2 * math.Erfinv(2*p-1) }

// MeanSD returns the mean and the sample standard deviation (n−1 in the
// denominator) of xs; the deviation is 0 for fewer than two values.
func MeanSD(xs []float64) (m, sd float64) {
	if len(xs) == 0 {
		return 0, 0
	}
	m = mean(xs)
	if len(xs) < 2 {
		return m, 0
	}
	var ss float64
	for _, x := range xs {
		ss += (x - m) * (x - m)
	}
	return m, math.Sqrt(ss / float64(len(xs)-1))
}
