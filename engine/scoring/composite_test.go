package scoring

import (
	"context"
	"errors"
	"math"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
)

// fixed is a scorer that answers from a table keyed by case id.
type fixed struct {
	results  map[string]Result
	errs     map[string]error
	validate error
	inFlight atomic.Int32
	maxSeen  atomic.Int32
	delay    time.Duration
}

func (f *fixed) Validate(dataset.Case) error { return f.validate }

func (f *fixed) Score(_ context.Context, c dataset.Case, _ Output) (Result, error) {
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for {
		m := f.maxSeen.Load()
		if n <= m || f.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(f.delay)
	return f.results[c.CaseID], f.errs[c.CaseID]
}

// shortBatch is a broken BatchScorer that drops the last result.
type shortBatch struct{ fixed }

func (s *shortBatch) ScoreBatch(_ context.Context, items []Item) []ItemResult {
	return make([]ItemResult, len(items)-1)
}

func (s *shortBatch) ValidateBatch(_ context.Context, cases []dataset.Case) []error {
	return make([]error, len(cases)+1)
}

func items(ids ...string) []Item {
	out := make([]Item, len(ids))
	for i, id := range ids {
		c := testCase(obj{"answer": "Paris"})
		c.CaseID = id
		out[i] = Item{Case: c, Output: Output{Final: "Paris"}}
	}
	return out
}

func TestScoreAll(t *testing.T) {
	s := &fixed{
		results: map[string]Result{
			"ok":       {Composite: 100, Breakdown: map[string]float64{"a": 0}},
			"high":     {Composite: 101.5},
			"negative": {Composite: -0.5},
			"nan":      {Composite: math.NaN()},
			"inf":      {Composite: math.Inf(1)},
			"bd":       {Composite: 50, Breakdown: map[string]float64{"a": 1, "z": math.NaN()}},
		},
		errs:  map[string]error{"err": errors.New("boom")},
		delay: 5 * time.Millisecond,
	}
	res := ScoreAll(context.Background(), s, items("ok", "high", "negative", "nan", "inf", "bd", "err", "ok"), 2)
	require.NoError(t, res[0].Err)
	require.Equal(t, 100.0, res[0].Result.Composite)
	require.EqualError(t, res[1].Err, "scorer returned 101.5; scores must lie in [0, 100]")
	require.EqualError(t, res[2].Err, "scorer returned -0.5; scores must lie in [0, 100]")
	require.EqualError(t, res[3].Err, "scorer returned NaN; scores must lie in [0, 100]")
	require.EqualError(t, res[4].Err, "scorer returned +Inf; scores must lie in [0, 100]")
	require.EqualError(t, res[5].Err, `scorer returned NaN for score_breakdown "z"; scores must lie in [0, 100]`)
	require.EqualError(t, res[6].Err, "boom")
	require.NoError(t, res[7].Err)
	require.LessOrEqual(t, s.maxSeen.Load(), int32(2), "at most concurrency Score calls at a time")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, r := range ScoreAll(ctx, s, items("ok", "ok"), 0) {
		require.ErrorIs(t, r.Err, context.Canceled)
	}

	broken := &shortBatch{}
	for _, r := range ScoreAll(context.Background(), broken, items("a", "b"), 1) {
		require.EqualError(t, r.Err, "scorer returned 1 results for 2 items; this is a bug in the scorer")
	}
	for _, err := range ValidateAll(context.Background(), broken, []dataset.Case{testCase(nil)}) {
		require.EqualError(t, err, "scorer returned 2 validation results for 1 cases; this is a bug in the scorer")
	}
	errs := ValidateAll(context.Background(), &fixed{validate: errors.New("bad case")}, []dataset.Case{testCase(nil)})
	require.EqualError(t, errs[0], "bad case")
	errs = ValidateAll(ctx, &fixed{}, []dataset.Case{testCase(nil)})
	require.ErrorIs(t, errs[0], context.Canceled)
}

func TestComposite(t *testing.T) {
	judgeReply := `{"score": 60, "reason": "vague"}`
	env := Env{Model: modelEnv(replying(judgeReply, "", nil, nil))}
	spec := Spec{Kind: "composite", Components: []Component{
		{Name: "em", Weight: 1, Spec: Spec{Kind: "exact_match"}},
		{Name: "overlap", Weight: 2, Spec: Spec{Kind: "f1"}},
		{Name: "judge", Weight: 1, Spec: Spec{Kind: "llm_judge", Model: "judge", Rubric: "r"}},
	}}
	s, err := New(spec, env)
	require.NoError(t, err)
	c := testCase(obj{"answer": "Eiffel Tower"})
	out := Output{Final: "the tower in Paris"}
	want := Result{
		Composite: (0*1 + 40*2 + 60*1) / 4.0,
		Breakdown: map[string]float64{
			"em": 0, "em.exact_match": 0,
			"overlap": 40, "overlap.precision": 100.0 / 3, "overlap.recall": 50, "overlap.f1": 40,
			"judge": 60, "judge.judge": 60,
		},
		Reason: "judge: vague",
	}
	r, err := s.Score(context.Background(), c, out)
	require.NoError(t, err)
	requireResult(t, want, r)

	// The batch path gives the same answer.
	res := ScoreAll(context.Background(), s, []Item{{Case: c, Output: out}}, 1)
	require.NoError(t, res[0].Err)
	requireResult(t, want, res[0].Result)

	// Validation reports every component's problem.
	bad := testCase(obj{"label": "x"})
	err = s.Validate(bad)
	require.ErrorContains(t, err, "component em: case c1: expected.answer is missing")
	require.ErrorContains(t, err, "component overlap: case c1: expected.answer is missing")
	require.NotContains(t, err.Error(), "component judge", "the judge falls back to the whole expected object")
	errs := ValidateAll(context.Background(), s, []dataset.Case{c, bad})
	require.NoError(t, errs[0])
	require.EqualError(t, errs[1], err.Error())

	// A failing component fails the case, in both paths.
	failing, err := New(spec, Env{Model: modelEnv(replying("no idea", "", nil, nil))})
	require.NoError(t, err)
	_, err = failing.Score(context.Background(), c, out)
	require.ErrorContains(t, err, "component judge: llm_judge (model judge): case c1: the answer is not the JSON object")
	res = ScoreAll(context.Background(), failing, []Item{{Case: c, Output: out}}, 1)
	require.ErrorContains(t, res[0].Err, "component judge: llm_judge (model judge): case c1")

	// A component scored through the batch path keeps the caller's bound.
	slow := &fixed{results: map[string]Result{"a": {Composite: 1}, "b": {Composite: 1}, "c": {Composite: 1}}, delay: 5 * time.Millisecond}
	wrapped := &composite{total: 1, parts: []part{{name: "slow", weight: 1, s: slow}}}
	for _, r := range ScoreAll(context.Background(), wrapped, items("a", "b", "c"), 1) {
		require.NoError(t, r.Err)
	}
	require.Equal(t, int32(1), slow.maxSeen.Load())

	// An out-of-range component is named, not folded into the sum.
	direct := &composite{total: 2, parts: []part{
		{name: "ok", weight: 1, s: &fixed{results: map[string]Result{"c1": {Composite: 100}}}},
		{name: "broken", weight: 1, s: &fixed{results: map[string]Result{"c1": {Composite: 150}}}},
	}}
	_, err = direct.Score(context.Background(), c, out)
	require.EqualError(t, err, "component broken: scorer returned 150; scores must lie in [0, 100]")
	res = ScoreAll(context.Background(), direct, []Item{{Case: c, Output: out}}, 1)
	require.EqualError(t, res[0].Err, "component broken: scorer returned 150; scores must lie in [0, 100]")
}

func requireResult(t *testing.T, want, got Result) {
	t.Helper()
	require.InDelta(t, want.Composite, got.Composite, 1e-9)
	require.Equal(t, want.Reason, got.Reason)
	require.Len(t, got.Breakdown, len(want.Breakdown), "%v", got.Breakdown)
	for k, v := range want.Breakdown {
		require.InDelta(t, v, got.Breakdown[k], 1e-9, k)
	}
}

func TestJSONField(t *testing.T) {
	tests := []struct {
		name      string
		spec      Spec
		expected  obj
		output    string
		trace     bool
		want      float64
		breakdown map[string]float64
		wantErr   string
	}{
		{name: "pass", spec: Spec{Path: "answer", Inner: &Spec{Kind: "exact_match"}}, expected: obj{"answer": "Paris"}, output: `{"answer": "Paris", "why": "..."}`, want: 100,
			breakdown: map[string]float64{"json_valid": 100, "path_found": 100, "exact_match": 100}},
		{name: "fenced", spec: Spec{Path: "answer", Inner: &Spec{Kind: "exact_match"}}, expected: obj{"answer": "Paris"}, output: "```json\n{\"answer\": \"Paris\"}\n```", want: 100},
		{name: "bare fence", spec: Spec{Path: "answer", Inner: &Spec{Kind: "exact_match"}}, expected: obj{"answer": "Paris"}, output: "```\n{\"answer\": \"Paris\"}```", want: 100},
		{name: "wrong value", spec: Spec{Path: "answer", Inner: &Spec{Kind: "exact_match"}}, expected: obj{"answer": "Paris"}, output: `{"answer": "Lyon"}`, want: 0,
			breakdown: map[string]float64{"json_valid": 100, "path_found": 100, "exact_match": 0}},
		{name: "not json", spec: Spec{Path: "answer", Inner: &Spec{Kind: "exact_match"}}, expected: obj{"answer": "Paris"}, output: `answer: Paris`, want: 0,
			breakdown: map[string]float64{"json_valid": 0, "path_found": 0}},
		{name: "trailing text", spec: Spec{Path: "answer", Inner: &Spec{Kind: "exact_match"}}, expected: obj{"answer": "Paris"}, output: `{"answer": "Paris"} hope this helps`, want: 0,
			breakdown: map[string]float64{"json_valid": 0, "path_found": 0}},
		{name: "path missing", spec: Spec{Path: "answer", Inner: &Spec{Kind: "exact_match"}}, expected: obj{"answer": "Paris"}, output: `{"city": "Paris"}`, want: 0,
			breakdown: map[string]float64{"json_valid": 100, "path_found": 0}},
		{name: "nested numeric", spec: Spec{Path: "result.items.1", Inner: &Spec{Kind: "numeric"}}, expected: obj{"answer": 2.5}, output: `{"result": {"items": [1, 2.50]}}`, want: 100},
		{name: "number text kept", spec: Spec{Path: "n", Inner: &Spec{Kind: "exact_match"}}, expected: obj{"answer": "2.50"}, output: `{"n": 2.50}`, want: 100},
		{name: "object value", spec: Spec{Path: "a", Inner: &Spec{Kind: "contains"}}, expected: obj{"answer": `"b":1`}, output: `{"a": {"b": 1}}`, want: 100},
		{name: "inner label", spec: Spec{Path: "label", Inner: &Spec{Kind: "label", Labels: []string{"x", "y"}}}, expected: obj{"label": "x"}, output: `{"label": "X"}`, want: 100,
			breakdown: map[string]float64{"json_valid": 100, "path_found": 100, "correct": 100, "valid_label": 100}},
		{name: "inner validate", spec: Spec{Path: "label", Inner: &Spec{Kind: "label", Labels: []string{"x", "y"}}}, expected: obj{"label": "z"}, output: `{"label": "z"}`, wantErr: `expected.label "z" is not an allowed label`},
		{name: "step", spec: Spec{Path: "answer", Step: "json", Inner: &Spec{Kind: "exact_match"}}, expected: obj{"answer": "Paris"}, output: "not json", trace: true, want: 100},
		{name: "step without trace", spec: Spec{Path: "answer", Step: "json", Inner: &Spec{Kind: "exact_match"}}, expected: obj{"answer": "Paris"}, output: "{}", wantErr: `scorer.step "json"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			spec.Kind = "json_field"
			s, err := New(spec, Env{})
			require.NoError(t, err)
			c := testCase(tt.expected)
			out := Output{Final: tt.output}
			if tt.trace {
				out.Trace = testTrace()
				out.Trace.Steps = append(out.Trace.Steps, testTrace().Steps[0])
				out.Trace.Steps[2].StepID, out.Trace.Steps[2].Output = "json", `{"answer": "Paris"}`
			}
			r, err := s.Score(context.Background(), c, out)
			batch := ScoreAll(context.Background(), s, []Item{{Case: c, Output: out}}, 1)[0]
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.ErrorContains(t, batch.Err, tt.wantErr)
				return
			}
			require.NoError(t, s.Validate(c))
			require.NoError(t, err)
			require.NoError(t, batch.Err)
			require.Equal(t, tt.want, r.Composite)
			require.Equal(t, r, batch.Result, "the batch path scores the same")
			for k, v := range tt.breakdown {
				require.Contains(t, r.Breakdown, k)
				require.Equal(t, v, r.Breakdown[k], k)
			}
		})
	}
}
