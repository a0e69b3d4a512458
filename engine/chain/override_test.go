package chain

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/provider"
)

func overrideChainDir(t *testing.T) string {
	return writeDir(t, map[string]string{
		"chain.toml": `
output = "final"

[[steps]]
id = "retrieve"
kind = "retrieve"
query = "{{.context.question}}"
source = "context.paragraphs"
k = 1

[[steps]]
id = "answer"
kind = "llm"
prompt = "prompts/answer.md"

[[steps]]
id = "final"
kind = "parse"
input = "{{.steps.answer.output}}"
regex = 'Answer:\s*(.+)'
on_fail = "error"
`,
		"prompts/answer.md": "Passages:\n{{.steps.retrieve.output}}\nQuestion: {{.context.question}}",
	})
}

// echoFirstTitle answers with the title of the first passage it was shown,
// so the final output tells which passages reached the model.
func echoFirstTitle() *script {
	return &script{reply: func(req provider.Request) (provider.Response, error) {
		user := req.Messages[len(req.Messages)-1].Content
		title, _, _ := strings.Cut(strings.TrimPrefix(user, "Passages:\n["), "]")
		return provider.Response{Content: "Answer: " + title, FinishReason: "stop"}, nil
	}}
}

func TestRunWithOverrides(t *testing.T) {
	c, err := Load(overrideChainDir(t))
	require.NoError(t, err)
	gold := []RetrievedDoc{{ID: "1", Title: "Tinted Windows", Text: "Their first performance was in Austin, Texas."}}

	tests := []struct {
		name      string
		overrides map[string]StepOverride
		final     string
		calls     int
		check     func(t *testing.T, tr *Trace)
	}{
		{name: "none runs every step", final: "Weather", calls: 1},
		{name: "gold passages replace retrieval", overrides: map[string]StepOverride{"retrieve": {Retrieved: gold}},
			final: "Tinted Windows", calls: 1, check: func(t *testing.T, tr *Trace) {
				r := tr.Step("retrieve")
				require.Equal(t, gold, r.Retrieved)
				require.Equal(t, "[Tinted Windows] Their first performance was in Austin, Texas.", r.Output)
				require.Contains(t, tr.Step("answer").Messages[0].Content, r.Output, "the downstream step saw the gold passages")
			}},
		{name: "an llm output replaced, parse runs on it", overrides: map[string]StepOverride{"answer": {Output: "Answer: Austin"}},
			final: "Austin", calls: 0, check: func(t *testing.T, tr *Trace) {
				a := tr.Step("answer")
				require.Zero(t, a.Calls)
				require.Empty(t, a.Messages)
				require.Equal(t, "Austin", tr.Step("final").Parsed)
			}},
		{name: "a parse step's parsed value defaults to its output", overrides: map[string]StepOverride{"final": {Output: "Seattle"}},
			final: "Seattle", calls: 1, check: func(t *testing.T, tr *Trace) {
				require.Equal(t, "Seattle", tr.Step("final").Parsed)
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			model := echoFirstTitle()
			cs := hotpotCase()
			// The question words favour the Weather passage with k=1 only if
			// we ask about it; make the plain run deterministic.
			cs.Context["question"] = "Where does it rain often?"
			tr := c.RunWithOverrides(context.Background(), cs, models{"": model}, tt.overrides)
			require.Empty(t, tr.Error)
			require.Equal(t, tt.final, tr.Final)
			require.Len(t, model.requests(), tt.calls)
			require.Len(t, tr.Steps, 3)
			if tt.check != nil {
				tt.check(t, tr)
			}
		})
	}

	// The copy must not leak into the chain: a plain run searches again.
	cs := hotpotCase()
	cs.Context["question"] = "Where does it rain often?"
	tr := c.Run(context.Background(), cs, models{"": echoFirstTitle()})
	require.Equal(t, "Weather", tr.Step("retrieve").Retrieved[0].Title)
}

func TestRunWithOverridesErrors(t *testing.T) {
	c, err := Load(overrideChainDir(t))
	require.NoError(t, err)
	model := echoFirstTitle()
	tr := c.RunWithOverrides(context.Background(), hotpotCase(), models{"": model}, map[string]StepOverride{"retriev": {Output: "x"}})
	require.Contains(t, tr.Error, "override for unknown step retriev")
	require.Contains(t, tr.Error, "retrieve, answer, final")
	require.Empty(t, model.requests(), "no call before the overrides are checked")

	// An override whose output the downstream parse cannot read fails the
	// case the same way a real output would.
	tr = c.RunWithOverrides(context.Background(), hotpotCase(), models{"": model}, map[string]StepOverride{"answer": {Output: "no marker"}})
	require.Contains(t, tr.Error, `step "final"`)
	require.Empty(t, tr.Final)

	schemaDir := writeDir(t, map[string]string{
		"chain.toml": `
[[steps]]
id = "answer"
kind = "llm"
prompt = "p.md"
json_schema = { type = "object", properties = { answer = { type = "string" } } }

[[steps]]
id = "final"
kind = "parse"
input = "{{.steps.answer.parsed.answer}}"
regex = '(.+)'
`,
		"p.md": "Q",
	})
	sc, err := Load(schemaDir)
	require.NoError(t, err)
	tr = sc.RunWithOverrides(context.Background(), hotpotCase(), models{"": model}, map[string]StepOverride{"answer": {Output: `{"answer": "Austin"}`}})
	require.Empty(t, tr.Error)
	require.Equal(t, "Austin", tr.Final, "parsed is decoded from the override's JSON output")

	tr = sc.RunWithOverrides(context.Background(), hotpotCase(), models{"": model}, map[string]StepOverride{"answer": {Output: "not json"}})
	require.Contains(t, tr.Error, "override of step answer is not the JSON its schema asks for")
	require.True(t, tr.Step("final").Skipped)
}

func TestPassagesFromValue(t *testing.T) {
	got, err := PassagesFromValue([]any{
		"plain text",
		map[string]any{"title": "A", "sentences": []any{"One.", " Two."}},
		[]any{"B", []any{"Three."}},
	})
	require.NoError(t, err)
	require.Equal(t, []RetrievedDoc{{ID: "0", Text: "plain text"}, {ID: "1", Title: "A", Text: "One. Two."}, {ID: "2", Title: "B", Text: "Three."}}, got)

	_, err = PassagesFromValue("not a list")
	require.ErrorContains(t, err, "want a list of passages")
}
