package scoring

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
)

type obj = map[string]any

func testCase(expected obj) dataset.Case {
	return dataset.Case{CaseID: "c1", TaskType: "qa", Context: obj{"question": "q?"}, Expected: expected}
}

func testTrace() *chain.Trace {
	return &chain.Trace{CaseID: "c1", Final: "final", Steps: []chain.StepTrace{
		{StepID: "retrieve", Output: "Paris is the capital of France."},
		{StepID: "answer", Output: "Answer: Paris"},
	}}
}

func TestBuiltinScorers(t *testing.T) {
	tests := []struct {
		name     string
		spec     Spec
		expected obj
		context  obj
		output   string
		trace    *chain.Trace
		want     float64
		// breakdown lists the breakdown entries that must be present.
		breakdown   map[string]float64
		validateErr string
		scoreErr    string
	}{
		// exact_match
		{name: "exact pass", spec: Spec{Kind: "exact_match"}, expected: obj{"answer": "Paris"}, output: " Paris\n", want: 100, breakdown: map[string]float64{"exact_match": 100}},
		{name: "exact fail case", spec: Spec{Kind: "exact_match"}, expected: obj{"answer": "Paris"}, output: "paris", want: 0},
		{name: "exact normalized", spec: Spec{Kind: "exact_match", Normalize: []string{"lower", "punctuation", "articles", "whitespace"}}, expected: obj{"answer": "The Paris"}, output: "paris!", want: 100},
		{name: "exact no normalization", spec: Spec{Kind: "exact_match", Normalize: []string{}}, expected: obj{"answer": "Paris"}, output: "Paris ", want: 0},
		{name: "exact list of golds", spec: Spec{Kind: "exact_match"}, expected: obj{"answer": []any{"NYC", "New York"}}, output: "New York", want: 100},
		{name: "exact number gold", spec: Spec{Kind: "exact_match"}, expected: obj{"answer": 42.0}, output: "42", want: 100},
		{name: "exact nested field", spec: Spec{Kind: "exact_match", Field: "expected.a.b"}, expected: obj{"a": obj{"b": "x"}}, output: "x", want: 100},
		{name: "exact list index field", spec: Spec{Kind: "exact_match", Field: "items.1"}, expected: obj{"items": []any{"x", "y"}}, output: "y", want: 100},
		{name: "exact nfkc", spec: Spec{Kind: "exact_match", Normalize: []string{"nfkc"}}, expected: obj{"answer": "ﬁne"}, output: "fine", want: 100},
		{name: "exact missing field", spec: Spec{Kind: "exact_match"}, expected: obj{"label": "x"}, validateErr: "case c1: expected.answer is missing"},
		{name: "exact null field", spec: Spec{Kind: "exact_match"}, expected: obj{"answer": nil}, validateErr: "expected.answer is missing"},
		{name: "exact empty list", spec: Spec{Kind: "exact_match"}, expected: obj{"answer": []any{}}, validateErr: "empty list"},
		{name: "exact object gold", spec: Spec{Kind: "exact_match"}, expected: obj{"answer": obj{"x": 1.0}}, validateErr: "expected.answer is an object"},
		{name: "exact list with object", spec: Spec{Kind: "exact_match"}, expected: obj{"answer": []any{"a", []any{}}}, validateErr: "expected.answer[1] is a list"},
		// step
		{name: "step pass", spec: Spec{Kind: "contains", Step: "retrieve"}, expected: obj{"answer": "Paris"}, output: "wrong", trace: testTrace(), want: 100},
		{name: "step without trace", spec: Spec{Kind: "exact_match", Step: "retrieve"}, expected: obj{"answer": "Paris"}, output: "Paris", scoreErr: `scorer.step "retrieve": the output has no step trace`},
		{name: "step unknown", spec: Spec{Kind: "exact_match", Step: "retrive"}, expected: obj{"answer": "Paris"}, trace: testTrace(), scoreErr: `no such step in the trace (steps: answer, retrieve)`},
		// f1
		{name: "f1 pass", spec: Spec{Kind: "f1"}, expected: obj{"answer": "The Eiffel Tower"}, output: "eiffel tower.", want: 100, breakdown: map[string]float64{"precision": 100, "recall": 100, "f1": 100}},
		{name: "f1 partial", spec: Spec{Kind: "f1"}, expected: obj{"answer": "Eiffel Tower"}, output: "the tower in Paris", want: 40, breakdown: map[string]float64{"precision": 100.0 / 3, "recall": 50, "f1": 40}},
		{name: "f1 best gold", spec: Spec{Kind: "f1"}, expected: obj{"answer": []any{"London", "Eiffel Tower"}}, output: "Eiffel Tower", want: 100},
		{name: "f1 fail", spec: Spec{Kind: "f1"}, expected: obj{"answer": "Paris"}, output: "London", want: 0},
		{name: "f1 both empty", spec: Spec{Kind: "f1"}, expected: obj{"answer": ""}, output: "the", want: 100},
		{name: "f1 empty output", spec: Spec{Kind: "f1"}, expected: obj{"answer": "Paris"}, output: "", want: 0},
		{name: "f1 repeated tokens", spec: Spec{Kind: "f1"}, expected: obj{"answer": "x y"}, output: "y y y y", want: 100 * 2 * 0.25 * 0.5 / 0.75},
		// contains
		{name: "contains pass", spec: Spec{Kind: "contains", Normalize: []string{"lower"}}, expected: obj{"answer": "Paris"}, output: "It is PARIS.", want: 100, breakdown: map[string]float64{"contains": 100}},
		{name: "contains fail", spec: Spec{Kind: "contains"}, expected: obj{"answer": "Paris"}, output: "London", want: 0},
		{name: "contains empty gold", spec: Spec{Kind: "contains"}, expected: obj{"answer": "  "}, validateErr: "the contains scorer would pass any output"},
		// regex
		{name: "regex group pass", spec: Spec{Kind: "regex", Pattern: `Answer:\s*(?P<answer>.+)`, Normalize: []string{"lower", "strip"}}, expected: obj{"answer": "paris"}, output: "Reasoning...\nAnswer: Paris ", want: 100, breakdown: map[string]float64{"match": 100, "answer": 100}},
		{name: "regex group wrong", spec: Spec{Kind: "regex", Pattern: `Answer:\s*(?P<answer>.+)`}, expected: obj{"answer": "Paris"}, output: "Answer: Lyon", want: 0, breakdown: map[string]float64{"match": 100, "answer": 0}},
		{name: "regex group no match", spec: Spec{Kind: "regex", Pattern: `Answer:\s*(?P<answer>.+)`}, expected: obj{"answer": "Paris"}, output: "Paris", want: 0, breakdown: map[string]float64{"match": 0, "answer": 0}},
		{name: "regex no group match", spec: Spec{Kind: "regex", Pattern: `^\d{4}-\d{2}-\d{2}$`}, expected: obj{}, output: "2024-01-05", want: 100, breakdown: map[string]float64{"match": 100}},
		{name: "regex no group fail", spec: Spec{Kind: "regex", Pattern: `^\d{4}$`}, expected: obj{}, output: "abcd", want: 0},
		{name: "regex group missing gold", spec: Spec{Kind: "regex", Pattern: `(?P<answer>\w+)`}, expected: obj{}, validateErr: "expected.answer is missing"},
		// numeric
		{name: "numeric pass", spec: Spec{Kind: "numeric"}, expected: obj{"answer": 1234.5}, output: "The total is $1,234.50", want: 100, breakdown: map[string]float64{"found": 100, "numeric": 100}},
		{name: "numeric last number", spec: Spec{Kind: "numeric"}, expected: obj{"answer": 18.0}, output: "3 + 5 = 8, times 2 is 16... no: 18", want: 100},
		{name: "numeric negative currency", spec: Spec{Kind: "numeric"}, expected: obj{"answer": "-$5"}, output: "a loss of -$5.00", want: 100},
		{name: "numeric range is not negative", spec: Spec{Kind: "numeric"}, expected: obj{"answer": 5.0}, output: "between 3-5", want: 100},
		{name: "numeric tolerance pass", spec: Spec{Kind: "numeric", Tolerance: 0.5}, expected: obj{"answer": 3.14}, output: "about 3.5", want: 100},
		{name: "numeric tolerance fail", spec: Spec{Kind: "numeric", Tolerance: 0.1}, expected: obj{"answer": 3.14}, output: "about 3.5", want: 0, breakdown: map[string]float64{"found": 100, "numeric": 0}},
		{name: "numeric float sum", spec: Spec{Kind: "numeric"}, expected: obj{"answer": 0.1 + 0.2}, output: "0.3", want: 100},
		{name: "numeric exponent", spec: Spec{Kind: "numeric"}, expected: obj{"answer": 1500.0}, output: "1.5e3", want: 100},
		{name: "numeric no number", spec: Spec{Kind: "numeric"}, expected: obj{"answer": 3.0}, output: "three", want: 0, breakdown: map[string]float64{"found": 0, "numeric": 0}},
		{name: "numeric gold not a number", spec: Spec{Kind: "numeric"}, expected: obj{"answer": "many"}, validateErr: `expected.answer "many" is not a number`},
		// label
		{name: "label pass", spec: Spec{Kind: "label", Labels: []string{"billing", "tech"}}, expected: obj{"label": "billing"}, output: " Billing", want: 100, breakdown: map[string]float64{"correct": 100, "valid_label": 100}},
		{name: "label wrong but valid", spec: Spec{Kind: "label", Labels: []string{"billing", "tech"}}, expected: obj{"label": "billing"}, output: "tech", want: 0, breakdown: map[string]float64{"correct": 0, "valid_label": 100}},
		{name: "label invalid output", spec: Spec{Kind: "label", Labels: []string{"billing", "tech"}}, expected: obj{"label": "billing"}, output: "Category: billing", want: 0, breakdown: map[string]float64{"correct": 0, "valid_label": 0}},
		{name: "label gold outside set", spec: Spec{Kind: "label", Labels: []string{"billing", "tech"}}, expected: obj{"label": "refund"}, validateErr: `expected.label "refund" is not an allowed label`},
		{name: "label from case", spec: Spec{Kind: "label", LabelsField: "context.labels"}, expected: obj{"label": "b"}, context: obj{"labels": []any{"a", "b"}}, output: "b", want: 100},
		{name: "label from case missing", spec: Spec{Kind: "label", LabelsField: "context.labels"}, expected: obj{"label": "b"}, context: obj{}, validateErr: "context.labels (scorer.labels_field) is missing"},
		{name: "label from case not list", spec: Spec{Kind: "label", LabelsField: "context.labels"}, expected: obj{"label": "b"}, context: obj{"labels": "a,b"}, validateErr: "must be a non-empty list"},
		{name: "label from case non-string", spec: Spec{Kind: "label", LabelsField: "context.labels"}, expected: obj{"label": "b"}, context: obj{"labels": []any{"a", 2.0}}, validateErr: "context.labels[1] is a number; labels must be strings"},
		{name: "label gold missing", spec: Spec{Kind: "label", Labels: []string{"a"}}, expected: obj{"answer": "a"}, validateErr: "expected.label is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.spec, Env{})
			require.NoError(t, err)
			c := testCase(tt.expected)
			if tt.context != nil {
				c.Context = tt.context
			}
			err = s.Validate(c)
			if tt.validateErr != "" {
				require.ErrorContains(t, err, tt.validateErr)
				_, err = s.Score(context.Background(), c, Output{Final: tt.output})
				require.ErrorContains(t, err, tt.validateErr, "Score must refuse what Validate refuses")
				return
			}
			require.NoError(t, err)
			r, err := s.Score(context.Background(), c, Output{Final: tt.output, Trace: tt.trace})
			if tt.scoreErr != "" {
				require.ErrorContains(t, err, tt.scoreErr)
				return
			}
			require.NoError(t, err)
			require.InDelta(t, tt.want, r.Composite, 1e-9)
			require.NoError(t, CheckResult(r))
			for k, v := range tt.breakdown {
				require.Contains(t, r.Breakdown, k)
				require.InDelta(t, v, r.Breakdown[k], 1e-9, k)
			}
		})
	}
}

func TestNormalizers(t *testing.T) {
	tests := []struct {
		names []string
		in    string
		want  string
	}{
		{[]string{"lower"}, "ÉCOLE Paris", "école paris"},
		{[]string{"strip"}, "\t x y \n", "x y"},
		{[]string{"punctuation"}, `a.b,c!d$e+f «g» 日本`, "abcdef g 日本"},
		{[]string{"articles"}, "The cat ate an apple", "  cat ate   apple"},
		{[]string{"articles"}, "theatre", "theatre"},
		{[]string{"whitespace"}, "  a \t b\n\nc ", "a b c"},
		{[]string{"nfkc"}, "ﬁ ①", "fi 1"},
		{squadNormalizers, "The  Quick, brown fox!", "quick brown fox"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, newNormalizer(tt.names, nil).apply(tt.in), "%v %q", tt.names, tt.in)
	}
}

func TestLastNumber(t *testing.T) {
	tests := []struct {
		in    string
		want  float64
		found bool
	}{
		{"42", 42, true},
		{"costs €1,000,000.25 total", 1000000.25, true},
		{"-7 degrees", -7, true},
		{"−3", -3, true},
		{"2024-01-05", 5, true},
		{"x-1", 1, true},
		{".5 of it", 0.5, true},
		{"1,23", 23, true},
		{"none", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, ok := lastNumber(tt.in)
		require.Equal(t, tt.found, ok, tt.in)
		require.InDelta(t, tt.want, got, 1e-9, tt.in)
	}
}
