package scoring

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider"
)

func toolTrace(calls ...chain.ToolCallTrace) *chain.Trace {
	return &chain.Trace{Steps: []chain.StepTrace{{StepID: "plan", Kind: "llm"}, {StepID: "agent", Kind: "react", ToolCalls: calls}}}
}

func call(name, args string) chain.ToolCallTrace {
	return chain.ToolCallTrace{Name: name, Arguments: args}
}

func TestTrajectory(t *testing.T) {
	c := dataset.Case{CaseID: "c", Expected: map[string]any{"tools": []any{"search", "calc"}}}
	for _, tc := range []struct {
		name  string
		spec  Spec
		calls []chain.ToolCallTrace
		want  float64
		bd    map[string]float64
	}{
		{"all in order", Spec{Order: "in_order"}, []chain.ToolCallTrace{call("search", `{"q":1}`), call("calc", `{}`)}, 100,
			map[string]float64{"tool_recall": 100, "tool_precision": 100, "in_order": 100, "non_redundant": 100, "tool_success": 100}},
		{"wrong order counts half in order", Spec{Order: "in_order"}, []chain.ToolCallTrace{call("calc", `{}`), call("search", `{}`)}, 50,
			map[string]float64{"tool_recall": 100, "tool_precision": 100, "in_order": 0, "non_redundant": 100, "tool_success": 100}},
		{"wrong order is fine with any", Spec{}, []chain.ToolCallTrace{call("calc", `{}`), call("search", `{}`)}, 100, nil},
		{"missing tool and an extra one", Spec{}, []chain.ToolCallTrace{call("search", `{}`), call("weather", `{}`)}, 50,
			map[string]float64{"tool_recall": 50, "tool_precision": 50, "in_order": 0, "non_redundant": 100, "tool_success": 100}},
		{"redundant calls cost points", Spec{RedundancyPenalty: 20}, []chain.ToolCallTrace{call("search", `{"q":1}`), call("search", `{"q":1}`), call("search", `{"q":1}`), call("calc", `{}`)}, 60, nil},
		{"penalty stops at zero", Spec{RedundancyPenalty: 80}, []chain.ToolCallTrace{call("search", `{}`), call("search", `{}`), call("calc", `{}`), call("calc", `{}`)}, 0, nil},
		{"no calls", Spec{}, nil, 0, map[string]float64{"tool_recall": 0, "tool_precision": 0, "in_order": 0, "non_redundant": 100, "tool_success": 100}},
		{"errors are reported", Spec{}, []chain.ToolCallTrace{call("search", `{}`), {Name: "calc", Error: "boom"}}, 100, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.spec.Kind = "trajectory"
			s, err := New(tc.spec, Env{})
			require.NoError(t, err)
			require.NoError(t, s.Validate(c))
			r, err := s.Score(context.Background(), c, Output{Trace: toolTrace(tc.calls...)})
			require.NoError(t, err)
			require.NoError(t, CheckResult(r))
			require.InDelta(t, tc.want, r.Composite, 1e-9)
			if tc.bd != nil {
				require.Equal(t, tc.bd, r.Breakdown)
			}
		})
	}
	s, _ := New(Spec{Kind: "trajectory"}, Env{})
	r, _ := s.Score(context.Background(), c, Output{Trace: toolTrace(call("search", ""), chain.ToolCallTrace{Name: "calc", Error: "boom"})})
	require.Equal(t, 50.0, r.Breakdown["tool_success"])
}

func TestTrajectoryErrors(t *testing.T) {
	s, err := New(Spec{Kind: "trajectory", Step: "agent"}, Env{})
	require.NoError(t, err)
	ok := dataset.Case{CaseID: "c", Expected: map[string]any{"tools": []any{"search"}}}
	for _, tc := range []struct {
		c    dataset.Case
		out  Output
		want string
	}{
		{dataset.Case{CaseID: "c", Expected: map[string]any{}}, Output{Trace: toolTrace()}, "expected.tools is missing"},
		{dataset.Case{CaseID: "c", Expected: map[string]any{"tools": "search"}}, Output{Trace: toolTrace()}, "expected.tools is a string; want a list"},
		{dataset.Case{CaseID: "c", Expected: map[string]any{"tools": []any{1.0}}}, Output{Trace: toolTrace()}, "expected.tools[0] is not a tool name"},
		{ok, Output{Final: "x"}, "reads the step trace"},
		{ok, Output{Trace: &chain.Trace{}}, `scorer.step "agent": no such step`},
	} {
		_, err := s.Score(context.Background(), tc.c, tc.out)
		require.ErrorContains(t, err, tc.want)
	}
}

// TestTrajectoryInCompositeWithJudge combines the trajectory with an LLM
// judge of the answer, as the reference's ReAct extension does.
func TestTrajectoryInCompositeWithJudge(t *testing.T) {
	judgeModel := provider.ClientFunc(func(context.Context, provider.Request) (provider.Response, error) {
		return provider.Response{Content: `{"score": 80, "reason": "mostly right"}`}, nil
	})
	spec := Spec{Kind: "composite", Components: []Component{
		{Name: "path", Weight: 1, Spec: Spec{Kind: "trajectory", Order: "in_order"}},
		{Name: "answer", Weight: 1, Spec: Spec{Kind: "llm_judge", Model: "judge", Rubric: "Is the answer right?"}},
	}}
	s, err := New(spec, Env{Model: func(string) (provider.Client, string, error) { return judgeModel, "j", nil }})
	require.NoError(t, err)
	c := dataset.Case{CaseID: "c", Context: map[string]any{"question": "q"}, Expected: map[string]any{"tools": []any{"search"}, "answer": "a"}}
	r, err := s.Score(context.Background(), c, Output{Final: "a", Trace: toolTrace(call("search", "{}"))})
	require.NoError(t, err)
	require.InDelta(t, 90, r.Composite, 1e-9)
	require.Equal(t, 100.0, r.Breakdown["path"])
	require.Equal(t, 80.0, r.Breakdown["answer"])
}
