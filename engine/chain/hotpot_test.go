package chain

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset/datasettest"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
)

func readCases(t testing.TB, path string, n int) []dataset.Case {
	t.Helper()
	cases, err := dataset.ReadAll(path)
	require.NoError(t, err)
	return cases[:min(n, len(cases))]
}

func hotpotChainDir(t testing.TB) string {
	return writeDir(t, map[string]string{
		"chain.toml": `
output = "answer"

[[steps]]
id = "retrieve"
kind = "retrieve"
query = "{{.context.question}}"
source = "context.paragraphs"
k = 4

[[steps]]
id = "extract"
kind = "llm"
system = "prompts/extract.system.md"
prompt = "prompts/extract.md"
[steps.params]
temperature = 0.0
max_tokens = 200

[[steps]]
id = "answer"
kind = "llm"
prompt = "prompts/answer.md"
[steps.params]
temperature = 0.0
max_tokens = 32
`,
		"prompts/extract.system.md": "Copy the sentences that help answer the question.",
		"prompts/extract.md":        "Passages:\n{{.steps.retrieve.output}}\n\nQuestion: {{.context.question}}",
		"prompts/answer.md":         "Facts:\n{{.steps.extract.output}}\n\nQuestion: {{.context.question}}\nAnswer with a short phrase.",
	})
}

func TestHotpotQAThreeStepChain(t *testing.T) {
	cases := readCases(t, datasettest.SharedFile(t, "hotpotqa.jsonl"), 20)
	require.Len(t, cases, 20)
	c, err := Load(hotpotChainDir(t))
	require.NoError(t, err)

	// The simulated model extracts the first retrieved passage and answers
	// with its title, so each step's output is traceable to its input.
	model := &script{reply: func(req provider.Request) (provider.Response, error) {
		user := req.Messages[len(req.Messages)-1].Content
		if strings.HasPrefix(user, "Passages:\n") {
			first, _, _ := strings.Cut(strings.TrimPrefix(user, "Passages:\n"), "\n\n")
			return provider.Response{Content: first, FinishReason: "stop"}, nil
		}
		title, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimPrefix(user, "Facts:\n"), "["), "]")
		return provider.Response{Content: title, FinishReason: "stop"}, nil
	}}
	for _, cs := range cases {
		require.NoError(t, c.DryRun(cs))
		tr := c.Run(context.Background(), cs, models{"": model})
		require.Empty(t, tr.Error, cs.CaseID)

		r := tr.Step("retrieve")
		require.NotEmpty(t, r.Retrieved, cs.CaseID)
		require.LessOrEqual(t, len(r.Retrieved), 4)
		titles := map[string]bool{}
		for _, p := range cs.Context["paragraphs"].([]any) {
			titles[p.(map[string]any)["title"].(string)] = true
		}
		for i, d := range r.Retrieved {
			require.True(t, titles[d.Title], "retrieved %q is not one of case %s's paragraphs", d.Title, cs.CaseID)
			if i > 0 {
				require.GreaterOrEqual(t, r.Retrieved[i-1].Score, d.Score)
			}
		}

		ex := tr.Step("extract")
		require.Len(t, ex.Messages, 2)
		for _, d := range r.Retrieved {
			require.Contains(t, ex.Messages[1].Content, "["+d.Title+"] "+d.Text, "the model saw every retrieved passage")
		}
		require.Equal(t, r.Retrieved[0].Title, tr.Final)
		require.Contains(t, tr.Step("answer").Messages[0].Content, ex.Output)
	}
	require.Len(t, model.requests(), 40)
}

// TestRunThroughOpenAICompatibleServer runs the chain through the real
// provider client against the HTTP test double.
func TestRunThroughOpenAICompatibleServer(t *testing.T) {
	cases := []dataset.Case{hotpotCase()}
	srv := fakellm.New(
		fakellm.WithRule(fakellm.LastUserContains("Passages:"), fakellm.Reply{Content: "[Tinted Windows] Their first performance was in Austin, Texas."}),
		fakellm.WithRule(fakellm.LastUserContains("Facts:"), fakellm.Reply{Content: "Austin, Texas", PromptTokens: 40, CompletionTokens: 3}),
	)
	defer srv.Close()
	client, err := provider.New(provider.Spec{Provider: provider.ProviderOpenAICompatible, Name: "fake-model", BaseURL: srv.URL(), APIKeyEnv: "FAKE_KEY"},
		provider.Options{Getenv: func(string) string { return "test-key" }})
	require.NoError(t, err)
	c, err := Load(hotpotChainDir(t))
	require.NoError(t, err)

	tr := c.Run(context.Background(), cases[0], staticModels{client: client, model: "fake-model"})
	require.Empty(t, tr.Error)
	require.Equal(t, "Austin, Texas", tr.Final)
	a := tr.Step("answer")
	require.Equal(t, "stop", a.FinishReason)
	require.Equal(t, 40, a.PromptTokens)
	require.Equal(t, 3, a.CompletionTokens)

	reqs := srv.Requests()
	require.Len(t, reqs, 2)
	require.Equal(t, "fake-model", reqs[0].Chat.Model)
	require.Equal(t, "system", reqs[0].Chat.Messages[0].Role)
	require.Contains(t, reqs[0].Chat.LastUser(), "[Tinted Windows] Tinted Windows is a supergroup.")
	require.Equal(t, 32, *reqs[1].Chat.MaxTokens)
}

type staticModels struct {
	client provider.Client
	model  string
}

func (s staticModels) Client(string) (provider.Client, string, error) { return s.client, s.model, nil }
