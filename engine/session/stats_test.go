package session

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSignTest(t *testing.T) {
	tests := []struct {
		wins, losses int
		want         float64
	}{
		{9, 1, 0.021484375},
		{1, 9, 0.021484375},
		{10, 0, 0.001953125},
		{8, 2, 0.109375},
		{5, 5, 1},
		{0, 0, 1},
		{1, 0, 1},
		{20, 5, 0.004077315330505371},
		{60, 40, 0.05688793364098079},
		{1000, 1100, 0.030720707864242296}, // far past where 0.5^n underflows a float64 product
	}
	for _, tt := range tests {
		require.InDelta(t, tt.want, SignTest(tt.wins, tt.losses), 1e-15, "%d wins, %d losses", tt.wins, tt.losses)
	}
}

func TestCompareKnownValues(t *testing.T) {
	// 9 cases the candidate gets right that the incumbent misses, 1 the
	// other way round, 10 both get right.
	var cand, inc []float64
	for range 9 {
		cand, inc = append(cand, 1), append(inc, 0)
	}
	cand, inc = append(cand, 0), append(inc, 1)
	for range 10 {
		cand, inc = append(cand, 1), append(inc, 1)
	}
	d, err := Compare(cand, inc, RuleImproves, 2000, 7, []float64{1, 1, 1})
	require.NoError(t, err)
	require.Equal(t, 20, d.N)
	require.InDelta(t, 0.4, d.Delta, 1e-12)
	require.Equal(t, 9, d.Wins)
	require.Equal(t, 1, d.Losses)
	require.Equal(t, 10, d.Ties)
	require.Equal(t, 0.021484375, d.SignTestP)
	require.True(t, d.Accept)
	require.Equal(t, 4, d.Comparisons, "this comparison is counted")
	require.Less(t, d.CILow, d.Delta)
	require.Greater(t, d.CIHigh, d.Delta)
	require.Contains(t, d.Reason, `accepted by rule "improves"`)
	require.Contains(t, d.Reason, "validation comparison 4 of this session")
	require.Contains(t, d.Reason, "9 wins, 1 losses, 10 ties")
}

func TestBootstrapExactDistribution(t *testing.T) {
	// Differences {0, 1}: resampled means are 0, 0.5, 1 with probabilities
	// 1/4, 1/2, 1/4, so the 2.5% and 97.5% quantiles are 0 and 1.
	d, err := Compare([]float64{0, 1}, []float64{0, 0}, RuleSignificant, 4000, 1, nil)
	require.NoError(t, err)
	require.Equal(t, 0.0, d.CILow)
	require.Equal(t, 1.0, d.CIHigh)
	require.InDelta(t, 0.5, d.Delta, 1e-12)
	require.False(t, d.Accept, "CI lower bound 0 is not above 0")
	require.Contains(t, d.Reason, "the 95% CI lower bound +0.0000 is not above 0")

	// Constant differences have a degenerate interval.
	d, err = Compare([]float64{0.7, 0.9, 0.5}, []float64{0.5, 0.7, 0.3}, RuleSignificant, 500, 1, nil)
	require.NoError(t, err)
	require.InDelta(t, 0.2, d.CILow, 1e-12)
	require.InDelta(t, 0.2, d.CIHigh, 1e-12)
	require.True(t, d.Accept)
	require.Contains(t, d.Reason, "the 95% CI lies above 0")
}

func TestBootstrapCIBracketsTrueMean(t *testing.T) {
	// Synthetic paired scores whose true mean difference is 0.05; across
	// independent datasets a 95% CI should bracket it about 95% of the time.
	const trueDelta, trials = 0.05, 40
	rng := rand.New(rand.NewPCG(42, 42))
	bracketed := 0
	for trial := range trials {
		inc := make([]float64, 200)
		cand := make([]float64, 200)
		for i := range inc {
			inc[i] = rng.Float64()
			cand[i] = inc[i] + trueDelta + rng.NormFloat64()*0.1
		}
		d, err := Compare(cand, inc, RuleSignificant, 1000, int64(trial), nil)
		require.NoError(t, err)
		require.Less(t, d.CILow, d.Delta)
		require.Greater(t, d.CIHigh, d.Delta)
		if d.CILow <= trueDelta && trueDelta <= d.CIHigh {
			bracketed++
		}
	}
	require.GreaterOrEqual(t, bracketed, 34, "coverage of the 95%% CI: %d of %d", bracketed, trials)
}

func TestCompareDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cand, inc := make([]float64, 50), make([]float64, 50)
	for i := range cand {
		cand[i], inc[i] = rng.Float64(), rng.Float64()
	}
	a, err := Compare(cand, inc, RuleImproves, 1000, 99, nil)
	require.NoError(t, err)
	b, err := Compare(cand, inc, RuleImproves, 1000, 99, nil)
	require.NoError(t, err)
	require.Equal(t, a, b)
	c, err := Compare(cand, inc, RuleImproves, 1000, 100, nil)
	require.NoError(t, err)
	require.NotEqual(t, a.CILow, c.CILow, "another seed draws other resamples")
	require.Equal(t, a.Delta, c.Delta)
}

func TestCompareRules(t *testing.T) {
	tests := []struct {
		name       string
		cand, inc  []float64
		rule       string
		wantAccept bool
		wantReason string
	}{
		{"improves, small gain", []float64{1, 0, 1, 0}, []float64{0, 1, 0, 0}, RuleImproves, true, "mean difference is above 0"},
		{"improves, no gain", []float64{1, 0}, []float64{1, 0}, RuleImproves, false, "mean difference is not above 0"},
		{"improves, loss", []float64{0, 0}, []float64{1, 0}, RuleImproves, false, `rejected by rule "improves"`},
		{"significant, noisy gain", []float64{1, 0, 1, 0}, []float64{0, 1, 0, 0}, RuleSignificant, false, "lower bound"},
		{"significant, clear gain", []float64{1, 1, 1, 1, 1, 1, 1, 1}, []float64{0, 0, 0, 0, 0, 0, 0, 0}, RuleSignificant, true, "CI lies above 0"},
	}
	for _, tt := range tests {
		d, err := Compare(tt.cand, tt.inc, tt.rule, 1000, 1, nil)
		require.NoError(t, err, tt.name)
		require.Equal(t, tt.wantAccept, d.Accept, tt.name)
		require.Contains(t, d.Reason, tt.wantReason, tt.name)
	}
}

func TestCompareErrors(t *testing.T) {
	tests := []struct {
		name      string
		cand, inc []float64
		rule      string
		resamples int
		wantErr   string
	}{
		{"length mismatch", []float64{1}, []float64{1, 2}, RuleImproves, 1000, "same validation cases"},
		{"empty", nil, nil, RuleImproves, 1000, "no validation cases"},
		{"rule typo", []float64{1}, []float64{1}, "signifcant", 1000, `did you mean "significant"`},
		{"few resamples", []float64{1}, []float64{1}, RuleImproves, 10, "at least 100"},
		{"NaN", []float64{math.NaN()}, []float64{1}, RuleImproves, 1000, "non-finite"},
		{"Inf", []float64{1}, []float64{math.Inf(1)}, RuleImproves, 1000, "non-finite"},
	}
	for _, tt := range tests {
		_, err := Compare(tt.cand, tt.inc, tt.rule, tt.resamples, 1, nil)
		require.ErrorContains(t, err, tt.wantErr, tt.name)
	}
}

func BenchmarkCompare(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	cand, inc := make([]float64, 500), make([]float64, 500)
	for i := range cand {
		cand[i], inc[i] = rng.Float64(), rng.Float64()
	}
	for b.Loop() {
		if _, err := Compare(cand, inc, RuleSignificant, 2000, 1, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHolmAdjusted checks Holm's step-down adjustment against values
// computed by hand: sorted p (1)..(m) times m, m-1, …, 1, made monotone,
// capped at 1, returned in the input order.
func TestHolmAdjusted(t *testing.T) {
	tests := []struct {
		name string
		ps   []float64
		want []float64
	}{
		{"single", []float64{0.03}, []float64{0.03}},
		// sorted 0.005·4 = 0.02, 0.01·3 = 0.03, 0.03·2 = 0.06, 0.04·1 = 0.04 → max 0.06
		{"four", []float64{0.01, 0.04, 0.03, 0.005}, []float64{0.03, 0.06, 0.06, 0.02}},
		// 0.5·2 = 1 capped, 0.6·1 = 0.6 → monotone 1
		{"capped", []float64{0.5, 0.6}, []float64{1, 1}},
		// ties keep their order: 0.02·3 = 0.06, 0.02·2 = 0.04 → 0.06, 0.9·1 → 0.9
		{"ties", []float64{0.02, 0.9, 0.02}, []float64{0.06, 0.9, 0.06}},
		{"empty", nil, []float64{}},
	}
	for _, tt := range tests {
		got := HolmAdjusted(tt.ps)
		require.Len(t, got, len(tt.want), tt.name)
		for i := range got {
			require.InDelta(t, tt.want[i], got[i], 1e-12, "%s[%d]", tt.name, i)
		}
	}
}

// TestSignificantAdjustedCountsTheSessionsComparisons: the same 9-wins,
// 1-loss result (sign test p = 22/1024) is accepted as the session's first
// comparison and rejected as its fourth after three null ones, where Holm
// multiplies it by 4; improves accepts both.
func TestSignificantAdjustedCountsTheSessionsComparisons(t *testing.T) {
	cand := []float64{1, 1, 1, 1, 1, 1, 1, 1, 1, 0}
	inc := []float64{0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	first, err := Compare(cand, inc, RuleSignificantAdjusted, 500, 1, nil)
	require.NoError(t, err)
	require.InDelta(t, 0.021484375, first.AdjustedP, 1e-12)
	require.True(t, first.Accept, first.Reason)

	fourth, err := Compare(cand, inc, RuleSignificantAdjusted, 500, 1, []float64{0.5, 0.7, 1})
	require.NoError(t, err)
	require.Equal(t, 4, fourth.Comparisons)
	require.InDelta(t, 4*0.021484375, fourth.AdjustedP, 1e-12)
	require.False(t, fourth.Accept, fourth.Reason)
	require.Contains(t, fourth.Reason, "Holm-adjusted p")

	plain, err := Compare(cand, inc, RuleImproves, 500, 1, []float64{0.5, 0.7, 1})
	require.NoError(t, err)
	require.True(t, plain.Accept)
	require.InDelta(t, 4*0.021484375, plain.AdjustedP, 1e-12, "every compare reports the adjusted p")
}
