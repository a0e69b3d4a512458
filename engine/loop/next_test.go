package loop

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/variant"
)

// TestNextStepsFollowTheState: what every tool's next says is computed
// from the session's state, one case per state an agent meets.
func TestNextStepsFollowTheState(t *testing.T) {
	const run = "r20260101T000000Z-aaaaaa"
	base := func() *session.State {
		return &session.State{
			Scope: session.Scope{Target: session.Target{Metric: "composite_score", Min: 95},
				Budget:        session.Budget{MaxVariants: 6, MaxValidationEvals: 6},
				AllowedLevels: []variant.Level{variant.LevelPrompt, variant.LevelParameter, variant.LevelStructural}, Patience: 2},
			Incumbent: variant.Baseline, Reviews: map[variant.ID][]session.Review{}, NonImproving: map[variant.Level]int{},
			Unlocked: map[variant.Level]bool{}, AttributedRuns: map[string]bool{},
		}
	}
	trained := func(st *session.State, v variant.ID, errored int) {
		st.Train = append(st.Train, session.Aggregate{Variant: v, Split: "train", Value: 40, Cases: 36, Errored: errored, Run: run})
	}
	attributed := func(st *session.State, d session.Dominant) {
		d.Run, d.Variant = run, string(st.Incumbent)
		st.Dominant, st.AttributedRuns[run] = &d, true
	}
	tests := []struct {
		name  string
		state func() *session.State
		want  string
		not   string
	}{
		{"no train run yet", base, "evaluate the incumbent v0000 on train", "attribute"},
		{"train run not attributed", func() *session.State {
			st := base()
			trained(st, variant.Baseline, 0)
			return st
		}, "attribute run " + run, "inspect_cases"},
		{"attribution in result", func() *session.State {
			st := base()
			trained(st, variant.Baseline, 0)
			attributed(st, session.Dominant{Class: "truncation", Step: "summarize", Level: "parameter",
				Clusters: []string{"truncation@summarize", "format@classify"}})
			return st
		}, "inspect_cases run " + run + " cluster truncation@summarize (a few cases), then propose_variant at level parameter with target_cluster truncation@summarize", "attribute run"},
		{"all failures infrastructure", func() *session.State {
			st := base()
			trained(st, variant.Baseline, 36)
			attributed(st, session.Dominant{Class: "infrastructure", Step: "summarize", Clusters: []string{"infrastructure@summarize"}})
			return st
		}, "every failure of run " + run + " is infrastructure (36 errored cases", "propose_variant"},
		{"every case errored, no aggregate", func() *session.State {
			st := base()
			attributed(st, session.Dominant{Class: "infrastructure", Step: "summarize", Clusters: []string{"infrastructure@summarize"}})
			return st
		}, "every failure of run " + run + " is infrastructure (every case errored", "evaluate the incumbent"},
		{"new incumbent without a train run", func() *session.State {
			st := base()
			trained(st, variant.Baseline, 0)
			attributed(st, session.Dominant{Class: "truncation", Step: "summarize", Level: "parameter", Clusters: []string{"truncation@summarize"}})
			st.Proposed = []session.Proposed{{ID: "v0001", Parent: variant.Baseline, Level: "parameter"}}
			st.Reviews["v0001"] = []session.Review{{Passed: true}}
			st.Comparisons = []session.Comparison{{Candidate: "v0001", Incumbent: variant.Baseline, Decision: session.Decision{Accept: true}}}
			st.Incumbent = "v0001"
			return st
		}, "v0001 is the new incumbent and has no train run yet: evaluate it on train", "attribute"},
		{"target met", func() *session.State {
			st := base()
			st.History = []session.Aggregate{{Variant: variant.Baseline, Split: "validation", Value: 96, Cases: 12}}
			return st
		}, "holds on validation for v0000: stop and report", "evaluate"},
		{"variant budget spent", func() *session.State {
			st := base()
			st.Used.Variants = 6
			return st
		}, "the variant budget is spent", "evaluate"},
		{"validation budget spent", func() *session.State {
			st := base()
			st.Used.ValidationEvals = 6
			return st
		}, "the validation budget is spent", "evaluate"},
		{"nothing failed", func() *session.State {
			st := base()
			trained(st, variant.Baseline, 0)
			attributed(st, session.Dominant{})
			return st
		}, "no train case of v0000 failed", "propose_variant"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := tt.state()
			s := &Status{Target: st.Scope.Target.String(), TargetMet: st.TargetMet(), Incumbent: string(st.Incumbent),
				OpenLevels: st.OpenLevels(), Budget: budgetView(st)}
			for _, p := range st.Proposed {
				s.Proposed = append(s.Proposed, ProposedView{ID: string(p.ID), Review: "passed", Decision: "accepted"})
			}
			next := strings.Join(nextSteps(st, s), "\n")
			require.Contains(t, next, tt.want)
			require.NotContains(t, next, tt.not)
			require.NotContains(t, next, "[", "levels print as words, not Go slices")
		})
	}
}
