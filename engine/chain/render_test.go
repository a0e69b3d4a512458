package chain

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
)

// TestTemplatesSeeInputsNotIdentities: a template may not read the case id
// or metadata, nor build strings from literals with print and its kin; each
// refusal says why and what to use instead.
func TestTemplatesSeeInputsNotIdentities(t *testing.T) {
	tests := []struct {
		name, prompt, want string
	}{
		{"case id", `{{if eq .case_id "c1"}}Paris{{end}} {{.context.question}}`, "reads .case_id: templates see inputs, not identities"},
		{"case id via $", `{{range .context.items}}{{$.case_id}}{{end}}`, "reads .case_id"},
		{"metadata", `{{.metadata.source}} {{.context.question}}`, "reads .metadata.source: templates see inputs, not identities"},
		{"print split", `Answer {{print "CWE-25" "7"}}. {{.context.question}}`, "calls print, which prompt templates may not use"},
		{"printf", `{{printf "%s-%d" "CWE" 257}} {{.context.question}}`, "calls printf"},
		{"println", `{{println "Par" "is"}} {{.context.question}}`, "calls println"},
		{"html", `{{html "Par" "is"}} {{.context.question}}`, "calls html"},
		{"in a define", `{{define "t"}}{{print "a" "b"}}{{end}}{{template "t"}} {{.context.question}}`, "calls print"},
	}
	for _, tt := range tests {
		dir := writeDir(t, map[string]string{"chain.toml": llmStep("a", ""), "p.md": tt.prompt})
		_, err := Load(dir)
		require.ErrorContains(t, err, tt.want, tt.name)
	}
	// What the refusal points to works: .case_token is an opaque id, the
	// same across steps of a run and different in another load.
	files := map[string]string{"chain.toml": llmStep("a", "") + llmStep("b", ""), "p.md": "{{.case_token}} {{.context.question}}"}
	c := dataset.Case{CaseID: "c1", Context: map[string]any{"question": "q"}}
	ch1, err := Load(writeDir(t, files))
	require.NoError(t, err)
	r := ch1.Render(c, 0)
	require.Len(t, r.Prompts, 2)
	require.Equal(t, r.Prompts[0], r.Prompts[1])
	require.NotContains(t, r.Prompts[0], "c1")
	ch2, err := Load(writeDir(t, files))
	require.NoError(t, err)
	require.NotEqual(t, r.Prompts[0], ch2.Render(c, 0).Prompts[0], "a token means nothing outside its run")
}

// TestModelFreeOutput: a chain whose answer comes from no model call is
// found by the graph walk, and one wired to a model but ignoring it by the
// two-stand-in render.
func TestModelFreeOutput(t *testing.T) {
	c := dataset.Case{CaseID: "c1", Context: map[string]any{"question": "What is the capital of France?"}}
	tests := []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"parse only", map[string]string{"chain.toml": "[[steps]]\nid = \"answer\"\nkind = \"parse\"\ninput = \"{{.context.question}}\"\nregex = 'of (\\w+)'\n"},
			`output step "answer" depends on no model call`},
		{"llm then parse of the input", map[string]string{"chain.toml": llmStep("think", "") +
			"[[steps]]\nid = \"answer\"\nkind = \"parse\"\ninput = \"{{.context.question}}\"\nregex = 'of (\\w+)'\n", "p.md": "{{.context.question}}"},
			`output step "answer" depends on no model call`},
		{"wired to the model but ignoring it", map[string]string{"chain.toml": llmStep("think", "") +
			"[[steps]]\nid = \"answer\"\nkind = \"parse\"\ninput = \"{{.steps.think.output}}|{{.context.question}}\"\nregex = '\\|.*of (\\w+)'\n", "p.md": "{{.context.question}}"},
			"gives the same value whatever its models answer"},
		{"model answer parsed", map[string]string{"chain.toml": llmStep("think", "") +
			"[[steps]]\nid = \"answer\"\nkind = \"parse\"\ninput = \"{{.steps.think.output}}\"\nregex = '(.+)'\n", "p.md": "{{.context.question}}"}, ""},
		{"llm output", map[string]string{"chain.toml": llmStep("answer", ""), "p.md": "{{.context.question}}"}, ""},
	}
	for _, tt := range tests {
		ch, err := Load(writeDir(t, tt.files))
		require.NoError(t, err, tt.name)
		got := ch.ModelFreeOutput(c)
		if tt.want == "" {
			require.Empty(t, got, tt.name)
			continue
		}
		require.Contains(t, got, tt.want, tt.name)
	}
}

// TestRenderRunsModelFreeSteps: the review's rendering runs parse and
// retrieve for real and records every rendered template.
func TestRenderRunsModelFreeSteps(t *testing.T) {
	ch, err := Load(writeDir(t, threeStepFiles()))
	require.NoError(t, err)
	r := ch.Render(hotpotCase(), 0)
	all := strings.Join(r.Prompts, "\n")
	require.Contains(t, all, "Question: "+hotpotCase().Context["question"].(string))
	require.Contains(t, all, "<output 0 of step answer>")
	require.NotEmpty(t, r.Sourced, "retrieved passages are input, kept apart")
	require.False(t, r.FinalFromModel)
}
