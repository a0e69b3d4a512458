package variant

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const twoSteps = `# chain.toml — summarize, then classify.
output = "classify"

[[steps]]
id = "summarize"
kind = "llm"
prompt = "prompts/summarize.md"
[steps.params]
temperature = 0.0   # deterministic
max_tokens = 24     # short summaries

[[steps]]
id = "classify"
kind = "llm"
prompt = "prompts/classify.md"
`

func TestEditStepKeys(t *testing.T) {
	tests := []struct {
		name    string
		edits   []StepEdit
		changed []string // the lines of the result that differ, in order
		err     string
	}{
		{"integer keeps its comment", []StepEdit{{Step: "summarize", Table: "params", Key: "max_tokens", Kind: KindInteger, Value: 64.0}},
			[]string{"max_tokens = 64     # short summaries"}, ""},
		{"float from a whole JSON number", []StepEdit{{Step: "summarize", Table: "params", Key: "temperature", Kind: KindFloat, Value: 1.0}},
			[]string{"temperature = 1.0   # deterministic"}, ""},
		{"new key in an existing table", []StepEdit{{Step: "summarize", Table: "params", Key: "seed", Kind: KindInteger, Value: 7.0}},
			[]string{"seed = 7"}, ""},
		{"new sub-table", []StepEdit{{Step: "classify", Table: "params", Key: "max_tokens", Kind: KindInteger, Value: 8.0}},
			[]string{"[steps.params]", "max_tokens = 8"}, ""},
		{"key of the step itself", []StepEdit{{Step: "classify", Key: "model", Kind: KindString, Value: "small"}},
			[]string{`model = "small"`}, ""},
		{"stop list", []StepEdit{{Step: "summarize", Table: "params", Key: "stop", Kind: KindStrings, Value: []any{"\n"}}},
			[]string{`stop = ["\n"]`}, ""},
		{"fraction for an integer", []StepEdit{{Step: "summarize", Table: "params", Key: "max_tokens", Kind: KindInteger, Value: 6.5}},
			nil, "must be a whole number"},
		{"string for a number", []StepEdit{{Step: "summarize", Table: "params", Key: "temperature", Kind: KindFloat, Value: "hot"}},
			nil, `is a number, not the string "hot"`},
		{"unknown step", []StepEdit{{Step: "nope", Table: "params", Key: "max_tokens", Kind: KindInteger, Value: 1.0}},
			nil, `step "nope" has no [[steps]] table`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := EditStepKeys([]byte(twoSteps), tt.edits)
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			before := map[string]int{}
			for _, l := range strings.Split(twoSteps, "\n") {
				before[l]++
			}
			var changed []string
			for _, l := range strings.Split(string(out), "\n") {
				if before[l] > 0 {
					before[l]--
					continue
				}
				changed = append(changed, l)
			}
			require.Equal(t, tt.changed, changed, "result:\n%s", out)
			require.Contains(t, string(out), "# chain.toml — summarize, then classify.")
		})
	}
}

func TestEditStepKeysRefusesWhatItCannotEditInPlace(t *testing.T) {
	inline := "output = \"a\"\n\n[[steps]]\nid = \"a\"\nkind = \"llm\"\nprompt = \"prompts/a.md\"\nparams = { max_tokens = 8 }\n"
	_, err := EditStepKeys([]byte(inline), []StepEdit{{Step: "a", Table: "params", Key: "max_tokens", Kind: KindInteger, Value: 16.0}})
	require.ErrorContains(t, err, "propose the change as a whole chain_toml")
}

// TestEditStepKeysIsNotFooledByTextThatLooksLikeTOML: a parent chain may
// carry a multi-line string (an inline template) holding lines that look
// like a step table; an edit must never land inside it. The decoded
// result is compared with the intended document, so such an edit is
// refused rather than written.
func TestEditStepKeysIsNotFooledByTextThatLooksLikeTOML(t *testing.T) {
	src := `output = "a"

[[steps]]
id = "a"
kind = "parse"
input = """
[[steps]]
id = "b"
[steps.params]
max_tokens = 8
"""
regex = '(.*)'

[[steps]]
id = "b"
kind = "llm"
prompt = "prompts/b.md"
[steps.params]
max_tokens = 8
`
	out, err := EditStepKeys([]byte(src), []StepEdit{{Step: "b", Table: "params", Key: "max_tokens", Kind: KindInteger, Value: 16.0}})
	if err == nil {
		// Whatever the editor did, the string is intact and the key changed.
		require.Contains(t, string(out), "id = \"b\"\n[steps.params]\nmax_tokens = 8\n\"\"\"")
		require.Contains(t, string(out), "prompt = \"prompts/b.md\"\n[steps.params]\nmax_tokens = 16\n")
		return
	}
	require.ErrorContains(t, err, "propose the change as a whole chain_toml")
}
