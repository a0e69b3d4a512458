package scoring

import (
	"context"
	"fmt"
	"math"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/internal/jsontext"
)

var trajectoryOrders = []string{"any", "in_order"}

// trajectory scores how a react pipeline used its tools, from the step
// trace: whether the expected tools were called (expected.tools by default,
// a list of tool names), in order when order = "in_order", with points off
// per repeated identical call. It judges the path, not the answer; combine
// it with an answer scorer or llm_judge in a composite.
//
// Composite: 100 × (share of expected tools called; with in_order, the
// longest in-order match over the expected count) − redundancy_penalty ×
// repeated calls, not below 0. Breakdown: tool_recall, tool_precision,
// in_order (100 when the expected order holds), non_redundant (share of
// calls that repeat no earlier call), tool_success (share of calls without
// error); every breakdown value is on the 0..100 scale like the composite.
type trajectory struct {
	field   string
	step    string
	order   string
	penalty float64
}

func newTrajectory(spec Spec) *trajectory {
	return &trajectory{field: expectedPath(spec.Field, "tools"), step: spec.Step, order: spec.Order, penalty: spec.RedundancyPenalty}
}

func (s *trajectory) Validate(c dataset.Case) error {
	_, err := s.expected(c)
	return err
}

func (s *trajectory) expected(c dataset.Case) ([]string, error) {
	v, err := jsontext.Lookup(map[string]any(c.Expected), s.field)
	if err != nil {
		return nil, fmt.Errorf("case %s: expected.%s is missing; list the tool names the pipeline should call, e.g. \"tools\": [\"search\", \"calc\"]", c.CaseID, s.field)
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("case %s: expected.%s is %s; want a list of tool names", c.CaseID, s.field, jsontext.Kind(v))
	}
	out := make([]string, len(list))
	for i, e := range list {
		name, ok := e.(string)
		if !ok || name == "" {
			return nil, fmt.Errorf("case %s: expected.%s[%d] is not a tool name", c.CaseID, s.field, i)
		}
		out[i] = name
	}
	return out, nil
}

func (s *trajectory) calls(out Output) ([]chain.ToolCallTrace, error) {
	if out.Trace == nil {
		return nil, fmt.Errorf("the trajectory scorer reads the step trace, and this output has none; score a chain run")
	}
	if s.step != "" {
		st := out.Trace.Step(s.step)
		if st == nil {
			return nil, fmt.Errorf("scorer.step %q: no such step in the trace; fix scorer.step in tenant.toml", s.step)
		}
		return st.ToolCalls, nil
	}
	var calls []chain.ToolCallTrace
	for _, st := range out.Trace.Steps {
		calls = append(calls, st.ToolCalls...)
	}
	return calls, nil
}

func (s *trajectory) Score(_ context.Context, c dataset.Case, out Output) (Result, error) {
	want, err := s.expected(c)
	if err != nil {
		return Result{}, err
	}
	calls, err := s.calls(out)
	if err != nil {
		return Result{}, err
	}
	names := make([]string, len(calls))
	seen := map[string]bool{}
	redundant, errs := 0, 0
	for i, call := range calls {
		names[i] = call.Name
		key := call.Name + "\x00" + call.Arguments
		if seen[key] {
			redundant++
		}
		seen[key] = true
		if call.Error != "" {
			errs++
		}
	}
	called := map[string]bool{}
	for _, n := range names {
		called[n] = true
	}
	wanted := map[string]bool{}
	hit := 0
	for _, w := range want {
		wanted[w] = true
		if called[w] {
			hit++
		}
	}
	relevant := 0
	for _, n := range names {
		if wanted[n] {
			relevant++
		}
	}
	recall, precision := 1.0, 1.0
	if len(want) > 0 {
		recall = float64(hit) / float64(len(want))
	}
	if len(names) > 0 {
		precision = float64(relevant) / float64(len(names))
	} else if len(want) > 0 {
		precision = 0
	}
	inOrder := lcs(want, names)
	orderShare := 1.0
	if len(want) > 0 {
		orderShare = float64(inOrder) / float64(len(want))
	}
	base := recall
	if s.order == "in_order" {
		base = orderShare
	}
	composite := math.Max(0, MaxScore*base-s.penalty*float64(redundant))
	return Result{Composite: composite, Breakdown: map[string]float64{
		"tool_recall":    MaxScore * recall,
		"tool_precision": MaxScore * precision,
		"in_order":       boolScore(inOrder == len(want)),
		"non_redundant":  share(len(calls)-redundant, len(calls)),
		"tool_success":   share(len(calls)-errs, len(calls)),
	}}, nil
}

// lcs is the length of the longest common subsequence: how many expected
// tools were called in the expected order, other calls in between allowed.
func lcs(a, b []string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for i := range a {
		for j := range b {
			switch {
			case a[i] == b[j]:
				cur[j+1] = prev[j] + 1
			case cur[j] > prev[j+1]:
				cur[j+1] = cur[j]
			default:
				cur[j+1] = prev[j+1]
			}
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// share is n/total on the 0..100 scale; no calls at all is a clean record.
func share(n, total int) float64 {
	if total == 0 {
		return MaxScore
	}
	return MaxScore * float64(n) / float64(total)
}
