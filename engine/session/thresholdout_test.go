package session

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestThresholdoutResistsAdaptiveOverfitting replays the experiment of
// Dwork et al. (Science 2015, Fig. 2) at a smaller scale: labels are
// random, so no classifier can beat 50% on fresh data. An analyst picks
// the features whose correlation with the label agrees on train and on the
// holdout, and builds a classifier from the strongest. With the holdout
// reused plainly, its accuracy drifts upward with the number of features
// (the analyst has fit the holdout); answered through Thresholdout it stays
// at chance, as it does on fresh data.
func TestThresholdoutResistsAdaptiveOverfitting(t *testing.T) {
	// The paper's scale and parameters: n = 10,000 cases in each split,
	// d = 10,000 features, T = 0.04, σ = 0.01. Features are drawn again
	// from their seed when needed instead of stored (800 MB per split).
	const n, d = 10000, 10000
	type split struct {
		seed uint64
		y    []float64
	}
	newSplit := func(seed uint64) split {
		rng := rand.New(rand.NewPCG(seed, 0))
		y := make([]float64, n)
		for i := range y {
			y[i] = float64(rng.IntN(2)*2 - 1)
		}
		return split{seed: seed, y: y}
	}
	feature := func(s split, j int, buf []float64) []float64 {
		rng := rand.New(rand.NewPCG(s.seed, uint64(j)+1))
		for i := range buf {
			buf[i] = rng.NormFloat64()
		}
		return buf
	}
	train, hold, fresh := newSplit(1), newSplit(2), newSplit(3)
	buf := make([]float64, n)
	corr := func(s split, j int) float64 {
		var sum float64
		for i, v := range feature(s, j, buf) {
			sum += v * s.y[i]
		}
		return sum / n
	}
	ct, chExact := make([]float64, d), make([]float64, d)
	for j := range d {
		ct[j], chExact[j] = corr(train, j), corr(hold, j)
	}
	ks := []int{10, 100, 250, 500}
	// accuracy of the classifier sign(Σ sign(c_j)·x_j) over the top-k
	// features of picked, for every k at once.
	accuracies := func(s split, picked []int) []float64 {
		sums := make([][]float64, len(ks))
		for i := range sums {
			sums[i] = make([]float64, n)
		}
		for r, j := range picked[:min(ks[len(ks)-1], len(picked))] {
			sign := math.Copysign(1, ct[j])
			for i, v := range feature(s, j, buf) {
				for ki, k := range ks {
					if r < k {
						sums[ki][i] += sign * v
					}
				}
			}
		}
		out := make([]float64, len(ks))
		for ki := range ks {
			right := 0
			for i, y := range s.y {
				if sums[ki][i]*y > 0 {
					right++
				}
			}
			out[ki] = float64(right) / n
		}
		return out
	}
	analyst := func(ask func(train, hold float64) float64) (reported, onFresh []float64) {
		ch := make([]float64, d)
		for j := range d {
			ch[j] = ask(ct[j], chExact[j])
		}
		cut := 1 / math.Sqrt(n)
		var picked []int
		for j := range d {
			if math.Abs(ct[j]) > cut && math.Abs(ch[j]) > cut && ct[j]*ch[j] > 0 {
				picked = append(picked, j)
			}
		}
		slices.SortFunc(picked, func(a, b int) int { return cmpDesc(math.Abs(ct[a]), math.Abs(ct[b])) })
		tr, ho := accuracies(train, picked), accuracies(hold, picked)
		for i := range ks {
			reported = append(reported, ask(tr[i], ho[i]))
		}
		return reported, accuracies(fresh, picked)
	}

	plain, plainFresh := analyst(func(_, hold float64) float64 { return hold })
	mech := &ThresholdoutState{Config: Thresholdout{Threshold: 0.04, Sigma: 0.01, Budget: d}, Seed: 7}
	reusable, reusableFresh := analyst(func(train, hold float64) float64 {
		a, err := mech.Ask(train, hold)
		require.NoError(t, err)
		return a.Answer
	})
	t.Logf("k %v: plain holdout %.3f (fresh %.3f); thresholdout %.3f (fresh %.3f); %d of %d answers from the holdout",
		ks, plain, plainFresh, reusable, reusableFresh, mech.Spent, mech.Queries)

	last := len(ks) - 1
	require.Greater(t, plain[last], 0.55, "plain reuse drifts upward: the analyst fit the holdout")
	require.Greater(t, plain[last], plain[0]+0.02, "and drifts further the more features it picks")
	for i := range ks {
		require.InDelta(t, 0.5, plainFresh[i], 0.025, "fresh data shows the truth: chance")
		require.InDelta(t, 0.5, reusableFresh[i], 0.025)
	}
	require.InDelta(t, 0.5, reusable[last], 0.03, "Thresholdout reports chance: it does not drift")
	require.Less(t, reusable[last], plain[last]-0.03)
}

func cmpDesc(a, b float64) int {
	switch {
	case a > b:
		return -1
	case a < b:
		return 1
	}
	return 0
}

// TestThresholdoutBudgetAndDeterminism: releases spend the budget and stop
// at it; the same seed gives the same answers.
func TestThresholdoutBudgetAndDeterminism(t *testing.T) {
	cfg := Thresholdout{Threshold: 4, Sigma: 1, Budget: 2}
	a := &ThresholdoutState{Config: cfg, Seed: 3}
	got, err := a.Ask(50, 50.5)
	require.NoError(t, err)
	require.False(t, got.FromHoldout, "agreement within the threshold answers with the train value")
	require.Equal(t, 50.0, got.Answer)
	for range 2 {
		got, err = a.Ask(50, 90)
		require.NoError(t, err)
		require.True(t, got.FromHoldout)
		require.InDelta(t, 90, got.Answer, 15)
	}
	require.Equal(t, 0, got.BudgetLeft)
	_, err = a.Ask(50, 90)
	require.ErrorIs(t, err, ErrHoldoutSpent)

	b := &ThresholdoutState{Config: cfg, Seed: 3}
	_, _ = b.Ask(50, 50.5)
	again, err := b.Ask(50, 90)
	require.NoError(t, err)
	first := &ThresholdoutState{Config: cfg, Seed: 3}
	_, _ = first.Ask(50, 50.5)
	want, _ := first.Ask(50, 90)
	require.Equal(t, want, again)
	require.ErrorContains(t, (&ThresholdoutState{Config: Thresholdout{Threshold: 0, Sigma: 1, Budget: 1}}).Config.Valid(), "threshold")
}
