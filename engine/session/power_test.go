package session

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMinDetectableEffectClosedForm compares with the textbook values:
// z_0.975 = 1.959964, z_0.8 = 0.841621.
func TestMinDetectableEffectClosedForm(t *testing.T) {
	const factor = 1.959964 + 0.841621
	tests := []struct {
		name   string
		sd     float64
		n      int
		want   float64
		within float64
	}{
		{"sd 10, 40 cases", 10, 40, factor * 10 / math.Sqrt(40), 1e-4},
		{"four times the cases halve it", 10, 160, factor * 10 / math.Sqrt(160), 1e-4},
		{"bound on a 0-100 scale, 40 cases", MaxPairedSD(100), 40, 44.30, 0.01},
		{"bound on a 0-1 scale, 100 cases", MaxPairedSD(1), 100, 0.2802, 1e-4},
		{"no cases", 10, 0, math.Inf(1), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MinDetectableEffect(tt.sd, tt.n, Alpha, PlannedPower)
			if math.IsInf(tt.want, 1) {
				require.True(t, math.IsInf(got, 1))
				return
			}
			require.InDelta(t, tt.want, got, tt.within)
		})
	}
	require.InDelta(t, 1.644854, normalQuantile(0.95), 1e-6)
	require.InDelta(t, 14.142136, PairedSDFromBaseline(10, 100), 1e-6)
	require.Equal(t, 100.0, PairedSDFromBaseline(90, 100), "capped at the bound")
	m, sd := MeanSD([]float64{0, 100, 100, 0})
	require.InDelta(t, 50, m, 1e-12)
	require.InDelta(t, math.Sqrt(10000.0/3), sd, 1e-9)
}

// TestMinDetectableEffectSimulated draws, with a fixed seed, 1,000
// validation sets of 40 paired cases whose true mean difference is the
// MDE, and runs the paired test compare uses (rule "significant": the
// bootstrap 95 % CI above 0) on each: about 80 % must be detected. With
// 1,000 trials the detected share's standard error is 1.3 points; the
// tolerance of ±5 points covers it and the normal approximation's small
// bias at 40 cases (a t test there has 78 % power).
func TestMinDetectableEffectSimulated(t *testing.T) {
	const n, sd, trials = 40, 20.0, 1000
	mde := MinDetectableEffect(sd, n, Alpha, PlannedPower)
	rng := rand.New(rand.NewPCG(2026, 12))
	detected := 0
	for trial := range trials {
		cand, inc := make([]float64, n), make([]float64, n)
		for i := range cand {
			inc[i] = 50
			cand[i] = 50 + mde + sd*rng.NormFloat64()
		}
		d, err := Compare(cand, inc, RuleSignificant, 1000, int64(trial), nil)
		require.NoError(t, err)
		if d.Accept {
			detected++
		}
	}
	share := float64(detected) / trials
	t.Logf("MDE %.2f points at sd %.0f, %d cases: detected %.1f %% of %d trials", mde, sd, n, 100*share, trials)
	require.InDelta(t, PlannedPower, share, 0.05)

	// Half the MDE is detected far less often: the figure is not loose.
	detected = 0
	for trial := range trials {
		cand, inc := make([]float64, n), make([]float64, n)
		for i := range cand {
			inc[i] = 50
			cand[i] = 50 + mde/2 + sd*rng.NormFloat64()
		}
		d, err := Compare(cand, inc, RuleSignificant, 1000, int64(trial), nil)
		require.NoError(t, err)
		if d.Accept {
			detected++
		}
	}
	require.Less(t, float64(detected)/trials, 0.4)
}
