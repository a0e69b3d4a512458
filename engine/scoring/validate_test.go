package scoring

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidateSpec(t *testing.T) {
	judgeOK := Spec{Kind: "llm_judge", Model: "judge", Rubric: "be fair"}
	tests := []struct {
		name string
		spec Spec
		want []string // every message, in order; nil means valid
	}{
		{name: "exact_match", spec: Spec{Kind: "exact_match", Field: "expected.answer", Normalize: Normalizers}},
		{name: "f1 with step", spec: Spec{Kind: "f1", Step: "answer"}},
		{name: "regex", spec: Spec{Kind: "regex", Pattern: `(?P<answer>\d+)`}},
		{name: "numeric", spec: Spec{Kind: "numeric", Tolerance: 0.01}},
		{name: "label", spec: Spec{Kind: "label", Labels: []string{"a", "b"}}},
		{name: "label field", spec: Spec{Kind: "label", LabelsField: "context.labels"}},
		{name: "json_field", spec: Spec{Kind: "json_field", Path: "answer", Inner: &Spec{Kind: "exact_match"}}},
		{name: "command", spec: Spec{Kind: "command", Command: []string{"python3", "score.py"}, Batch: true, TimeoutSeconds: 5}},
		{name: "llm_judge", spec: judgeOK},
		{name: "composite", spec: Spec{Kind: "composite", Components: []Component{
			{Name: "em", Weight: 1, Spec: Spec{Kind: "exact_match"}},
			{Name: "judge", Weight: 2, Spec: judgeOK},
		}}},

		{name: "missing kind", spec: Spec{}, want: []string{"scorer.kind: missing; set one of exact_match, f1, contains, regex, numeric, label, json_field, command, llm_judge, composite"}},
		{name: "typo kind", spec: Spec{Kind: "exat_match"}, want: []string{`scorer.kind: unknown "exat_match"; did you mean "exact_match"?`}},
		{name: "unknown kind no hint", spec: Spec{Kind: "bleu_score"}, want: []string{`scorer.kind: unknown "bleu_score"`}},
		{name: "unknown normalizer", spec: Spec{Kind: "exact_match", Normalize: []string{"lower", "lowr", "stem"}}, want: []string{
			`scorer.normalize[1]: unknown normalizer "lowr"; did you mean "lower"? (known: lower, strip, punctuation, articles, whitespace, nfkc)`,
			`scorer.normalize[2]: unknown normalizer "stem" (known: lower, strip, punctuation, articles, whitespace, nfkc)`,
		}},
		{name: "bad field path", spec: Spec{Kind: "exact_match", Field: "a..b"}, want: []string{`scorer.field: "a..b" is not a path`}},
		{name: "field on wrong kind", spec: Spec{Kind: "command", Command: []string{"x"}, Pattern: "x", Tolerance: 1, Model: "m"}, want: []string{
			`scorer.pattern: does not apply to kind "command" (it is read by regex); remove it`,
			`scorer.tolerance: does not apply to kind "command"`,
			`scorer.model: does not apply to kind "command"`,
		}},
		{name: "regex empty", spec: Spec{Kind: "regex"}, want: []string{"scorer.pattern: missing"}},
		{name: "regex bad", spec: Spec{Kind: "regex", Pattern: "(a"}, want: []string{"scorer.pattern: does not compile: error parsing regexp: missing closing ): `(a`"}},
		{name: "numeric negative tolerance", spec: Spec{Kind: "numeric", Tolerance: -1}, want: []string{"scorer.tolerance: must be a finite number >= 0, got -1"}},
		{name: "numeric NaN tolerance", spec: Spec{Kind: "numeric", Tolerance: math.NaN()}, want: []string{"scorer.tolerance: must be a finite number >= 0, got NaN"}},
		{name: "label no set", spec: Spec{Kind: "label"}, want: []string{"scorer.labels: missing"}},
		{name: "label both", spec: Spec{Kind: "label", Labels: []string{"a"}, LabelsField: "context.labels"}, want: []string{"scorer.labels_field: set either labels or labels_field, not both"}},
		{name: "label field root", spec: Spec{Kind: "label", LabelsField: "labels"}, want: []string{`scorer.labels_field: "labels" must start with context., expected. or metadata.`}},
		{name: "label duplicates", spec: Spec{Kind: "label", Labels: []string{"Tech", "", "tech "}}, want: []string{
			"scorer.labels[1]: empty label",
			`scorer.labels[2]: "tech " is the same label as labels[0] after normalization`,
		}},
		{name: "json_field empty", spec: Spec{Kind: "json_field"}, want: []string{"scorer.path: missing", "scorer.inner: missing; add a [scorer.inner] block"}},
		{name: "json_field inner typo", spec: Spec{Kind: "json_field", Path: "a", Inner: &Spec{Kind: "exact_mach"}}, want: []string{`scorer.inner.kind: unknown "exact_mach"; did you mean "exact_match"?`}},
		{name: "json_field inner step", spec: Spec{Kind: "json_field", Path: "a", Inner: &Spec{Kind: "f1", Step: "x"}}, want: []string{"scorer.inner.step: does not apply inside json_field"}},
		{name: "command empty", spec: Spec{Kind: "command"}, want: []string{"scorer.command: empty"}},
		{name: "command empty argv0", spec: Spec{Kind: "command", Command: []string{""}}, want: []string{"scorer.command: empty"}},
		{name: "command bad timeout", spec: Spec{Kind: "command", Command: []string{"x"}, TimeoutSeconds: -2}, want: []string{"scorer.timeout_seconds: must be a finite number > 0 (0 means the default 60), got -2"}},
		{name: "judge empty", spec: Spec{Kind: "llm_judge"}, want: []string{"scorer.model: missing", "scorer.rubric: missing"}},
		{name: "judge both rubrics", spec: Spec{Kind: "llm_judge", Model: "m", Rubric: "r", RubricFile: "r.md"}, want: []string{"scorer.rubric_file: set either rubric or rubric_file, not both"}},
		{name: "composite empty", spec: Spec{Kind: "composite", Step: "x"}, want: []string{`scorer.step: does not apply to kind "composite"`, "scorer.components: missing"}},
		{name: "composite components", spec: Spec{Kind: "composite", Components: []Component{
			{Name: "a", Weight: 1, Spec: Spec{Kind: "exact_match"}},
			{Name: "b", Weight: 0, Spec: Spec{Kind: "f1"}},
			{Name: "a", Weight: -1, Spec: Spec{Kind: "contans"}},
			{Name: "", Weight: math.Inf(1), Spec: Spec{Kind: "regex"}},
			{Name: "x.y", Weight: math.NaN(), Spec: Spec{Kind: "json_field", Path: "p", Inner: &Spec{Kind: "numeric", Tolerance: -1}}},
		}}, want: []string{
			"scorer.components[1].weight: must be > 0, got 0",
			`scorer.components[2].name: "a" is already the name of components[0]`,
			"scorer.components[2].weight: must be > 0, got -1",
			`scorer.components[2].scorer.kind: unknown "contans"; did you mean "contains"?`,
			"scorer.components[3].name: missing",
			"scorer.components[3].weight: must be > 0, got +Inf",
			"scorer.components[3].scorer.pattern: missing",
			`scorer.components[4].name: "x.y" contains a dot`,
			"scorer.components[4].weight: must be > 0, got NaN",
			"scorer.components[4].scorer.inner.tolerance: must be a finite number >= 0, got -1",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := ValidateSpec(tt.spec)
			require.Len(t, errs, len(tt.want), "%v", errs)
			for i, w := range tt.want {
				require.ErrorContains(t, errs[i], w)
			}
			_, err := New(tt.spec, Env{Model: scriptedModel(t)})
			if tt.want == nil {
				require.NoError(t, err)
				return
			}
			for _, w := range tt.want {
				require.ErrorContains(t, err, w, "New reports every spec problem")
			}
		})
	}
}
