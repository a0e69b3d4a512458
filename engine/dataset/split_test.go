package dataset

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAllocateIsControlledRounding(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ratioSets := [][3]float64{{0.6, 0.2, 0.2}, {0.7, 0.15, 0.15}, {0.5, 0.5, 0}, {1.0 / 3, 1.0 / 3, 1.0 / 3}, {0.8, 0.1, 0.1}, {0.05, 0.9, 0.05}}
	for trial := range 500 {
		ratios := ratioSets[trial%len(ratioSets)]
		sizes := make([]int, 1+rng.IntN(40))
		total := 0
		for i := range sizes {
			sizes[i] = rng.IntN(30)
			total += sizes[i]
		}
		cells := allocate(sizes, ratios)
		totals := largestRemainder(total, ratios)
		var cols [3]int
		for i, row := range cells {
			sum := 0
			for j, n := range row {
				q := float64(sizes[i]) * ratios[j]
				require.Less(t, math.Abs(float64(n)-q), 1.0, "trial %d stratum %d split %d: %d for quota %.3f", trial, i, j, n, q)
				sum += n
				cols[j] += n
			}
			require.Equal(t, sizes[i], sum, "trial %d row %d", trial, i)
		}
		require.Equal(t, totals, cols, "trial %d", trial)
		for j := range 3 {
			require.Less(t, math.Abs(float64(totals[j])-float64(total)*ratios[j]), 1.0)
		}
	}
}

func TestLargestRemainder(t *testing.T) {
	require.Equal(t, [3]int{6, 2, 2}, largestRemainder(10, [3]float64{0.6, 0.2, 0.2}))
	require.Equal(t, [3]int{4, 4, 3}, largestRemainder(11, [3]float64{1.0 / 3, 1.0 / 3, 1.0 / 3}))
	require.Equal(t, [3]int{1, 1, 0}, largestRemainder(2, [3]float64{0.5, 0.5, 0}))
	require.Equal(t, [3]int{0, 0, 0}, largestRemainder(0, [3]float64{0.6, 0.2, 0.2}))
}

func testCases(n int, label func(i int) string, group func(i int) string) []Case {
	out := make([]Case, n)
	for i := range out {
		out[i] = Case{CaseID: fmt.Sprintf("c%04d", i), TaskType: "t", Context: map[string]any{}, Expected: map[string]any{"label": label(i)}}
		if g := group(i); g != "" {
			out[i].Metadata = map[string]any{"group": g}
		}
	}
	return out
}

func planFor(t *testing.T, cfg SplitConfig, cs []Case) plan {
	t.Helper()
	_, pl := planner2(t, cfg, cs)
	return pl
}

func planOf(t *testing.T, cfg SplitConfig, cs []Case) map[string]Split {
	t.Helper()
	pl := planFor(t, cfg, cs)
	out := map[string]Split{}
	for i, c := range cs {
		out[c.CaseID] = pl.caseSplit[i]
	}
	return out
}

func TestSplitDeterministicAndOrderIndependent(t *testing.T) {
	cfg := SplitConfig{Train: 0.6, Validation: 0.2, Test: 0.2, Seed: 7, Stratify: "expected.label"}
	cs := testCases(301, func(i int) string { return fmt.Sprint("L", i%7) }, func(int) string { return "" })
	first := planOf(t, cfg, cs)
	require.Equal(t, first, planOf(t, cfg, cs), "same inputs, same split")
	shuffled := append([]Case(nil), cs...)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
	require.Equal(t, first, planOf(t, cfg, shuffled), "input order must not change membership")
	cfg.Seed = 8
	require.NotEqual(t, first, planOf(t, cfg, cs), "another seed, another split")
}

func TestSplitStrataWithinOneCase(t *testing.T) {
	cfg := SplitConfig{Train: 0.7, Validation: 0.15, Test: 0.15, Seed: 1, Stratify: "expected.label"}
	// Skewed strata: one large, several tiny.
	cs := testCases(400, func(i int) string {
		switch {
		case i%50 == 0:
			return "rare"
		case i%3 == 0:
			return "mid"
		}
		return "common"
	}, func(int) string { return "" })
	pl := planFor(t, cfg, cs)
	sizes := map[string]int{}
	for _, c := range cs {
		sizes[c.Expected["label"].(string)]++
	}
	for label, counts := range pl.strata {
		for j, r := range cfg.ratios() {
			require.Less(t, math.Abs(float64(counts[j])-float64(sizes[label])*r), 1.0, "%s %s", label, splits[j])
		}
	}
	require.Equal(t, [3]int{280, 60, 60}, pl.counts)
}

func TestSplitGroupsNeverSpan(t *testing.T) {
	cfg := SplitConfig{Train: 0.6, Validation: 0.2, Test: 0.2, Seed: 3}
	cs := testCases(500, func(int) string { return "x" }, func(i int) string {
		if i%5 == 0 {
			return "" // some cases are not grouped
		}
		return fmt.Sprint("g", i%37)
	})
	got := planOf(t, cfg, cs)
	groupSplit := map[string]Split{}
	counts := map[Split]int{}
	for _, c := range cs {
		counts[got[c.CaseID]]++
		g, ok := c.Metadata["group"]
		if !ok {
			continue
		}
		if prev, seen := groupSplit[g.(string)]; seen {
			require.Equal(t, prev, got[c.CaseID], "group %v spans splits", g)
		}
		groupSplit[g.(string)] = got[c.CaseID]
	}
	for _, sp := range []Split{Train, Validation, Test} {
		require.Positive(t, counts[sp], "split %s is empty", sp)
	}
	// Groups are ~11 cases each, so counts are near, not exactly at, the ratios.
	require.InDelta(t, 300, counts[Train], 30)
}

func TestSplitZeroTestRatio(t *testing.T) {
	cfg := SplitConfig{Train: 0.5, Validation: 0.5, Seed: 1}
	got := planOf(t, cfg, testCases(11, func(int) string { return "" }, func(int) string { return "" }))
	n := map[Split]int{}
	for _, s := range got {
		n[s]++
	}
	require.Zero(t, n[Test])
	require.Equal(t, 11, n[Train]+n[Validation])
}

func TestSplitConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  SplitConfig
		want string
	}{
		{"ok", SplitConfig{Train: 0.6, Validation: 0.2, Test: 0.2, Stratify: "expected.label"}, ""},
		{"task_type stratify", SplitConfig{Train: 0.6, Validation: 0.2, Test: 0.2, Stratify: "task_type"}, ""},
		{"negative", SplitConfig{Train: 1.2, Validation: -0.2}, "data.train = 1.2"},
		{"nan", SplitConfig{Train: math.NaN(), Validation: 0.5, Test: 0.5}, "data.train = NaN"},
		{"sum", SplitConfig{Train: 0.6, Validation: 0.2, Test: 0.1}, "must sum to 1"},
		{"all zero", SplitConfig{}, "must sum to 1"},
		{"no validation", SplitConfig{Train: 0.8, Test: 0.2}, "data.validation = 0"},
		{"bad root", SplitConfig{Train: 0.6, Validation: 0.2, Test: 0.2, Stratify: "expectd.label"}, `did you mean "expected"?`},
		{"root only", SplitConfig{Train: 0.6, Validation: 0.2, Test: 0.2, Stratify: "expected"}, "want a case path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestPlannerMissingStratum(t *testing.T) {
	p := newPlanner(SplitConfig{Train: 0.6, Validation: 0.2, Test: 0.2, Stratify: "expected.label"})
	err := p.add(Case{CaseID: "x", Expected: map[string]any{"answer": "a"}})
	require.ErrorContains(t, err, `case "x" has no expected.label to stratify on`)
}

func TestStringify(t *testing.T) {
	require.Equal(t, "a", stringify("a"))
	require.Equal(t, "3", stringify(float64(3)))
	require.Equal(t, "true", stringify(true))
	require.Equal(t, `["x"]`, stringify([]any{"x"}))
	require.Equal(t, "null", stringify(nil))
}

func TestSplitMixedGroupFollowsMajorityStratum(t *testing.T) {
	cfg := SplitConfig{Train: 0.6, Validation: 0.2, Test: 0.2, Seed: 1, Stratify: "expected.label"}
	cs := testCases(9, func(i int) string {
		if i == 0 {
			return "B"
		}
		return "A"
	}, func(i int) string {
		if i < 3 {
			return "g" // one B and two A: the group counts as A
		}
		return ""
	})
	p := newPlanner(cfg)
	for _, c := range cs {
		require.NoError(t, p.add(c))
	}
	require.Equal(t, map[int32]int32{0: 1, 1: 2}, p.units[0].mixed) // strata: B=0, A=1
	for _, c := range cs {
		p.addInput(c)
	}
	pl := p.assign()
	require.Equal(t, pl.caseSplit[0], pl.caseSplit[1])
	require.Equal(t, pl.caseSplit[1], pl.caseSplit[2])
	require.Equal(t, 9, pl.counts[0]+pl.counts[1]+pl.counts[2])
}
