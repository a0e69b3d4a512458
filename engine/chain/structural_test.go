package chain

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
)

// fakeModels starts the chat-completions test double with opts and returns
// Models that reach it through the real OpenAI-compatible client.
func fakeModels(t *testing.T, opts ...fakellm.Option) (*fakellm.Server, Models) {
	t.Helper()
	srv := fakellm.New(opts...)
	t.Cleanup(srv.Close)
	client, err := provider.New(provider.Spec{Provider: provider.ProviderOpenAICompatible, Name: "fake-model", BaseURL: srv.URL(), APIKeyEnv: "FAKE_KEY"},
		provider.Options{Getenv: func(string) string { return "test-key" }})
	require.NoError(t, err)
	return srv, staticModels{client: client, model: "fake-model"}
}

func capitalCase(id, country string) dataset.Case {
	return dataset.Case{CaseID: id, Context: map[string]any{"country": country}, Expected: map[string]any{"answer": "SECRET"}}
}

func lastRole(r fakellm.Request) string {
	if len(r.Messages) == 0 {
		return ""
	}
	return r.Messages[len(r.Messages)-1].Role
}

const answerOnlyTOML = `
[[steps]]
id = "answer"
kind = "llm"
prompt = "prompts/answer.md"
`

const reflectTOML = answerOnlyTOML + `
[[steps]]
id = "check"
kind = "reflect"
target = "answer"
critique = "prompts/critique.md"
revise = "prompts/revise.md"
max_rounds = 3
`

func reflectFiles(toml string) map[string]string {
	return map[string]string{
		"chain.toml":          toml,
		"prompts/answer.md":   "Name the capital of {{.context.country}}.",
		"prompts/critique.md": "Critique this answer about {{.context.country}}. Reply DONE if it is right.\nDraft: {{.draft}}",
		"prompts/revise.md":   "Revise the answer about {{.context.country}}.\nDraft: {{.draft}}\nCritique: {{.critique}}",
	}
}

var capitals = map[string]string{"France": "Paris", "Japan": "Tokyo", "Peru": "Lima", "Kenya": "Nairobi"}

// criticalModel answers wrongly at first and correctly only once it has
// been critiqued; it approves a correct draft.
func criticalModel() []fakellm.Option {
	country := regexp.MustCompile(`about (\w+)`)
	return []fakellm.Option{
		fakellm.WithRuleFunc(fakellm.LastUserContains("Critique this answer"), func(r fakellm.Request) fakellm.Reply {
			c := country.FindStringSubmatch(r.LastUser())[1]
			if strings.Contains(r.LastUser(), "Draft: "+capitals[c]) {
				return fakellm.Reply{Content: "**Done.**"}
			}
			return fakellm.Reply{Content: "That is not the capital of " + c + "."}
		}),
		fakellm.WithRuleFunc(fakellm.LastUserContains("Revise the answer"), func(r fakellm.Request) fakellm.Reply {
			return fakellm.Reply{Content: capitals[country.FindStringSubmatch(r.LastUser())[1]]}
		}),
		fakellm.WithRule(fakellm.LastUserContains("Name the capital"), fakellm.Reply{Content: "Springfield"}),
	}
}

// TestReflectVariantRaisesScore is the structural acceptance test: on a
// model that is right only after a critique, adding a reflect step to the
// chain turns every wrong answer into a right one.
func TestReflectVariantRaisesScore(t *testing.T) {
	_, m := fakeModels(t, criticalModel()...)
	accuracy := func(toml string) float64 {
		c, err := Load(writeDir(t, reflectFiles(toml)))
		require.NoError(t, err)
		right := 0
		for country, capital := range capitals {
			tr := c.Run(context.Background(), capitalCase(country, country), m)
			require.Empty(t, tr.Error)
			if strings.EqualFold(tr.Final, capital) {
				right++
			}
		}
		return float64(right) / float64(len(capitals))
	}
	base, variant := accuracy(answerOnlyTOML), accuracy(reflectTOML)
	require.Equal(t, 0.0, base)
	require.Equal(t, 1.0, variant)
}

func TestReflectStopsWhenCritiqueSaysDone(t *testing.T) {
	srv, m := fakeModels(t, criticalModel()...)
	c, err := Load(writeDir(t, reflectFiles(reflectTOML)))
	require.NoError(t, err)
	tr := c.Run(context.Background(), capitalCase("c1", "Peru"), m)
	require.Empty(t, tr.Error)
	st := tr.Step("check")
	require.Equal(t, "Lima", st.Output)
	require.Equal(t, 2, st.Rounds, "round 1 revises, round 2 approves")
	require.Equal(t, 3, st.Calls)
	require.Equal(t, []string{"user", "assistant", "user", "assistant", "user", "assistant"}, roles(st.Messages))
	require.Contains(t, st.Messages[2].Content, "Critique: That is not the capital of Peru.")
	require.Equal(t, 4, srv.Count())
}

func TestReflectRoundsAreBounded(t *testing.T) {
	srv, m := fakeModels(t,
		fakellm.WithRule(fakellm.LastUserContains("Critique this answer"), fakellm.Reply{Content: "Still wrong."}),
		fakellm.WithRule(fakellm.LastUserContains("Revise the answer"), fakellm.Reply{Content: "Another guess"}),
		fakellm.WithRule(fakellm.LastUserContains("Name the capital"), fakellm.Reply{Content: "Springfield"}),
	)
	c, err := Load(writeDir(t, reflectFiles(reflectTOML)))
	require.NoError(t, err)
	tr := c.Run(context.Background(), capitalCase("c1", "Peru"), m)
	require.Empty(t, tr.Error)
	st := tr.Step("check")
	require.Equal(t, 3, st.Rounds)
	require.Equal(t, 6, st.Calls)
	require.Equal(t, "Another guess", st.Output)
	require.Equal(t, 7, srv.Count())
}

func TestReflectModelErrorFailsStep(t *testing.T) {
	_, m := fakeModels(t,
		fakellm.WithRule(fakellm.LastUserContains("Critique this answer"), fakellm.Reply{Fault: fakellm.Status(400)}),
		fakellm.WithRule(fakellm.LastUserContains("Name the capital"), fakellm.Reply{Content: "Springfield"}),
	)
	c, err := Load(writeDir(t, reflectFiles(reflectTOML)))
	require.NoError(t, err)
	tr := c.Run(context.Background(), capitalCase("c1", "Peru"), m)
	require.Contains(t, tr.Error, "round 1 critique")
}

func TestCritiqueDone(t *testing.T) {
	for _, tc := range []struct {
		text string
		done bool
	}{
		{"DONE", true},
		{"  done.\n", true},
		{"**Done!**", true},
		{"\n\n# DONE\nnothing to fix", true},
		{"Not done: the date is wrong.", false},
		{"The answer is DONE well but wrong", false},
		{"", false},
	} {
		require.Equal(t, tc.done, critiqueDone(tc.text, "DONE"), "%q", tc.text)
	}
	require.True(t, critiqueDone("LGTM.", "lgtm"))
}

func roles(msgs []provider.Message) []string {
	out := make([]string, len(msgs))
	for i, m := range msgs {
		out[i] = m.Role
	}
	return out
}

// recordingTool is a declared tool for tests; it fails on "boom".
type recordingTool struct {
	name  string
	calls atomic.Int32
}

func (r *recordingTool) Def(context.Context) (provider.ToolDef, error) {
	return provider.ToolDef{Name: r.name, Description: "look things up", Parameters: queryParams}, nil
}

func (r *recordingTool) Call(_ context.Context, args string) (string, error) {
	r.calls.Add(1)
	if strings.Contains(args, "boom") {
		return "", errors.New("backend down")
	}
	return "result for " + args, nil
}

const reactTOML = `
[[steps]]
id = "agent"
kind = "react"
system = "prompts/agent.system.md"
prompt = "prompts/agent.md"
tools = ["search", "lookup"]
max_iterations = 3
max_tool_calls = 2
`

func reactFiles() map[string]string {
	return map[string]string{
		"chain.toml":              reactTOML,
		"prompts/agent.system.md": "Use the tools.",
		"prompts/agent.md":        "Question: {{.context.question}}",
	}
}

func writeCorpus(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "docs.jsonl")
	require.NoError(t, os.WriteFile(p, []byte(`{"id":"a","title":"Tinted Windows","text":"Their first performance was in Austin, Texas."}
{"id":"b","title":"Weather","text":"It rains often in Seattle."}
`), 0o644))
	return p
}

func TestReactCallsDeclaredToolsAndTracesThem(t *testing.T) {
	srv, m := fakeModels(t,
		fakellm.WithRuleFunc(func(r fakellm.Request) bool { return lastRole(r) == "tool" }, func(r fakellm.Request) fakellm.Reply {
			return fakellm.Reply{Content: "Final: " + r.Messages[len(r.Messages)-1].Content}
		}),
		fakellm.WithRule(fakellm.LastUserContains("Question:"), fakellm.Reply{ToolCalls: []fakellm.ToolCall{
			{ID: "call_1", Name: "search", Arguments: `{"query":"Tinted Windows first performance"}`},
		}}),
	)
	lookup := &recordingTool{name: "lookup"}
	tools := map[string]Tool{"search": corpusToolAt("search", writeCorpus(t), 1, ""), "lookup": lookup}
	c, err := Load(writeDir(t, reactFiles()), WithTools(tools))
	require.NoError(t, err)
	tr := c.Run(context.Background(), hotpotCase(), m)
	require.Empty(t, tr.Error)
	st := tr.Step("agent")
	require.Equal(t, "Final: [Tinted Windows] Their first performance was in Austin, Texas.", st.Output)
	require.Equal(t, 2, st.Rounds)
	require.Equal(t, 2, st.Calls)
	require.Len(t, st.ToolCalls, 1)
	call := st.ToolCalls[0]
	require.Equal(t, "search", call.Name)
	require.JSONEq(t, `{"query":"Tinted Windows first performance"}`, call.Arguments)
	require.Equal(t, len("[Tinted Windows] Their first performance was in Austin, Texas."), call.ResultChars)
	require.Empty(t, call.Error)
	require.GreaterOrEqual(t, call.LatencyMS, 0.0)
	require.Equal(t, []string{"system", "user", "assistant", "tool", "assistant"}, roles(st.Messages))

	reqs := srv.Requests()
	require.Len(t, reqs, 2)
	require.Contains(t, string(reqs[0].Chat.Tools), `"search"`)
	require.Contains(t, string(reqs[0].Chat.Tools), `"lookup"`)
	require.Equal(t, "call_1", reqs[1].Chat.Messages[3].ToolCallID)
	require.Zero(t, lookup.calls.Load())
}

func TestReactBounds(t *testing.T) {
	threeCalls := fakellm.Reply{ToolCalls: []fakellm.ToolCall{
		{ID: "1", Name: "lookup", Arguments: `{"query":"a"}`},
		{ID: "2", Name: "lookup", Arguments: `{"query":"boom"}`},
		{ID: "3", Name: "lookup", Arguments: `{"query":"c"}`},
	}}
	t.Run("tool calls past max_tool_calls are not run", func(t *testing.T) {
		_, m := fakeModels(t,
			fakellm.WithRuleFunc(func(r fakellm.Request) bool { return lastRole(r) == "tool" }, func(fakellm.Request) fakellm.Reply { return fakellm.Reply{Content: "answer"} }),
			fakellm.WithRule(fakellm.LastUserContains("Question:"), threeCalls),
		)
		lookup := &recordingTool{name: "lookup"}
		c, err := Load(writeDir(t, reactFiles()), WithTools(map[string]Tool{"search": lookup, "lookup": lookup}))
		require.NoError(t, err)
		tr := c.Run(context.Background(), hotpotCase(), m)
		require.Empty(t, tr.Error)
		st := tr.Step("agent")
		require.Len(t, st.ToolCalls, 3)
		require.Equal(t, int32(2), lookup.calls.Load())
		require.Empty(t, st.ToolCalls[0].Error)
		require.Equal(t, "backend down", st.ToolCalls[1].Error)
		require.Contains(t, st.ToolCalls[2].Error, "tool-call limit of this step (2)")
		require.Equal(t, "answer", st.Output)
	})
	t.Run("a model that never stops calling tools fails at max_iterations", func(t *testing.T) {
		srv, m := fakeModels(t, fakellm.WithDefault(func(fakellm.Request) fakellm.Reply {
			return fakellm.Reply{ToolCalls: []fakellm.ToolCall{{ID: "x", Name: "nope", Arguments: `{}`}}}
		}))
		c, err := Load(writeDir(t, reactFiles()), WithTools(map[string]Tool{"search": &recordingTool{name: "search"}, "lookup": &recordingTool{name: "lookup"}}))
		require.NoError(t, err)
		tr := c.Run(context.Background(), hotpotCase(), m)
		require.Contains(t, tr.Error, "no final answer after 3 iterations")
		require.Equal(t, 3, srv.Count())
		st := tr.Step("agent")
		require.Len(t, st.ToolCalls, 3)
		require.Contains(t, st.ToolCalls[0].Error, `unknown tool "nope"`)
		require.Contains(t, st.ToolCalls[2].Error, "tool-call limit")
	})
}

type brokenTool struct{}

func (brokenTool) Def(context.Context) (provider.ToolDef, error) {
	return provider.ToolDef{}, errors.New("server did not start")
}
func (brokenTool) Call(context.Context, string) (string, error) { return "", nil }

func TestReactUnavailableToolFailsStep(t *testing.T) {
	_, m := fakeModels(t)
	c, err := Load(writeDir(t, reactFiles()), WithTools(map[string]Tool{"search": brokenTool{}, "lookup": brokenTool{}}))
	require.NoError(t, err)
	tr := c.Run(context.Background(), hotpotCase(), m)
	require.Contains(t, tr.Error, "tool search is unavailable: server did not start")
}

func TestCorpusToolArguments(t *testing.T) {
	tool := corpusToolAt("search", writeCorpus(t), 2, "")
	_, err := tool.Call(context.Background(), `not json`)
	require.ErrorContains(t, err, `{"query": "..."}`)
	_, err = tool.Call(context.Background(), `{"query":"  "}`)
	require.ErrorContains(t, err, "query is empty")
	out, err := tool.Call(context.Background(), `{"query":"zzzz"}`)
	require.NoError(t, err)
	require.Equal(t, "no passage matches the query", out)
	_, err = corpusToolAt("s", filepath.Join(t.TempDir(), "missing.jsonl"), 2, "").Call(context.Background(), `{"query":"x"}`)
	require.Error(t, err)
}

const voteTOML = `
[[steps]]
id = "answer"
kind = "vote"
prompt = "prompts/answer.md"
extract = 'Answer:\s*(.+)'
%s
[steps.params]
n = 5
temperature = 0.8
`

func voteFiles(extra string) map[string]string {
	return map[string]string{
		"chain.toml":        fmt.Sprintf(voteTOML, extra),
		"prompts/answer.md": "Capital of {{.context.country}}?",
		"prompts/judge.md":  "Pick the best sample.\n{{numbered .samples}}",
	}
}

// sequence answers the i-th request with replies[i % len].
func sequence(replies ...string) fakellm.Option {
	var n atomic.Int32
	return fakellm.WithRuleFunc(fakellm.LastUserContains("Capital of"), func(fakellm.Request) fakellm.Reply {
		i := int(n.Add(1)-1) % len(replies)
		return fakellm.Reply{Content: replies[i]}
	})
}

func TestVoteMajority(t *testing.T) {
	srv, m := fakeModels(t, sequence("Answer: Paris", "Answer: Lyon", "Answer: paris.", "no idea", "Answer: **PARIS**"))
	c, err := Load(writeDir(t, voteFiles("")))
	require.NoError(t, err)
	tr := c.Run(context.Background(), capitalCase("c1", "France"), m)
	require.Empty(t, tr.Error)
	st := tr.Step("answer")
	require.Len(t, st.Samples, 5)
	require.Equal(t, "paris", voteKey(st.Output))
	require.Equal(t, 5, st.Calls)
	require.Equal(t, 5, srv.Count())
	for _, r := range srv.Requests() {
		require.InDelta(t, 0.8, *r.Chat.Temperature, 1e-6)
	}
}

func TestVoteJudgePicks(t *testing.T) {
	_, m := fakeModels(t,
		fakellm.WithRuleFunc(fakellm.LastUserContains("Pick the best"), func(r fakellm.Request) fakellm.Reply {
			for line := range strings.SplitSeq(r.LastUser(), "\n") {
				if strings.Contains(line, "Lyon") {
					return fakellm.Reply{Content: "Best is sample " + strings.SplitN(line, ".", 2)[0]}
				}
			}
			return fakellm.Reply{Content: "none"}
		}),
		sequence("Answer: Paris", "Answer: Lyon", "Answer: Paris"),
	)
	c, err := Load(writeDir(t, voteFiles(`method = "judge"`+"\n"+`judge = "prompts/judge.md"`)))
	require.NoError(t, err)
	tr := c.Run(context.Background(), capitalCase("c1", "France"), m)
	require.Empty(t, tr.Error)
	st := tr.Step("answer")
	require.Equal(t, "Lyon", st.Output, "the judge overrules the majority")
	require.Empty(t, st.ParseError)
	require.Equal(t, 6, st.Calls)
}

func TestVoteJudgeUnreadableFallsBackToMajority(t *testing.T) {
	_, m := fakeModels(t,
		fakellm.WithRule(fakellm.LastUserContains("Pick the best"), fakellm.Reply{Content: "They are all fine."}),
		sequence("Answer: Paris"),
	)
	c, err := Load(writeDir(t, voteFiles(`method = "judge"`+"\n"+`judge = "prompts/judge.md"`)))
	require.NoError(t, err)
	tr := c.Run(context.Background(), capitalCase("c1", "France"), m)
	require.Empty(t, tr.Error)
	st := tr.Step("answer")
	require.Equal(t, "Paris", st.Output)
	require.Contains(t, st.ParseError, "names no sample 1..5; majority used")
}

func TestMajorityTieGoesToEarliest(t *testing.T) {
	for _, tc := range []struct {
		answers []string
		win     int
		note    bool
	}{
		{[]string{"Lyon", "Paris", "paris", "LYON"}, 0, false},
		{[]string{"", "Paris", "Lyon", "lyon"}, 2, false},
		{[]string{"Nice", "Paris", "Lyon"}, 0, false},
		{[]string{"", ""}, 0, true},
	} {
		win, note := majority(tc.answers)
		require.Equal(t, tc.win, win, "%v", tc.answers)
		require.Equal(t, tc.note, note != "")
	}
}

const branchTOML = `
[[steps]]
id = "classify"
kind = "llm"
prompt = "prompts/classify.md"

[[steps]]
id = "route"
kind = "branch"
input = "{{.steps.classify.output}}"
else_skip = ["compute"]
[[steps.when]]
equals = "math"
skip = ["lookup"]

[[steps]]
id = "lookup"
kind = "llm"
prompt = "prompts/lookup.md"

[[steps]]
id = "compute"
kind = "llm"
prompt = "prompts/compute.md"

[[steps]]
id = "answer"
kind = "llm"
prompt = "prompts/answer.md"
`

func TestBranchSkipsSteps(t *testing.T) {
	files := map[string]string{
		"chain.toml":          branchTOML,
		"prompts/classify.md": "Classify: {{.context.q}}",
		"prompts/lookup.md":   "Look up: {{.context.q}}",
		"prompts/compute.md":  "Compute: {{.context.q}}",
		"prompts/answer.md":   "Answer using {{if .steps.lookup.output}}facts {{.steps.lookup.output}}{{else}}result {{.steps.compute.output}}{{end}}",
	}
	srv, m := fakeModels(t,
		fakellm.WithRuleFunc(fakellm.LastUserContains("Classify:"), func(r fakellm.Request) fakellm.Reply {
			if strings.Contains(r.LastUser(), "+") {
				return fakellm.Reply{Content: " Math\n"}
			}
			return fakellm.Reply{Content: "trivia"}
		}),
		fakellm.WithRule(fakellm.LastUserContains("Look up:"), fakellm.Reply{Content: "F"}),
		fakellm.WithRule(fakellm.LastUserContains("Compute:"), fakellm.Reply{Content: "4"}),
		fakellm.WithDefault(func(r fakellm.Request) fakellm.Reply { return fakellm.Reply{Content: r.LastUser()} }),
	)
	c, err := Load(writeDir(t, files))
	require.NoError(t, err)

	tr := c.Run(context.Background(), dataset.Case{CaseID: "m", Context: map[string]any{"q": "2+2"}}, m)
	require.Empty(t, tr.Error)
	require.Equal(t, "when[0]", tr.Step("route").Output)
	require.True(t, tr.Step("lookup").Skipped)
	require.Empty(t, tr.Step("lookup").Error)
	require.Zero(t, tr.Step("lookup").Calls)
	require.False(t, tr.Step("compute").Skipped)
	require.Equal(t, "Answer using result 4", tr.Final)
	require.Equal(t, 3, srv.Count())

	tr = c.Run(context.Background(), dataset.Case{CaseID: "t", Context: map[string]any{"q": "capital of Peru"}}, m)
	require.Empty(t, tr.Error)
	require.Equal(t, "else", tr.Step("route").Output)
	require.True(t, tr.Step("compute").Skipped)
	require.Equal(t, "Answer using facts F", tr.Final)
}

func TestBranchConditions(t *testing.T) {
	re := regexp.MustCompile(`^\d+$`)
	for _, tc := range []struct {
		rule branchRule
		v    string
		want bool
	}{
		{branchRule{cfg: whenConfig{Equals: "Yes"}}, " yes\n", true},
		{branchRule{cfg: whenConfig{Equals: "yes"}}, "yes!", false},
		{branchRule{cfg: whenConfig{Contains: "refund"}}, "Category: REFUND request", true},
		{branchRule{cfg: whenConfig{Contains: "refund"}}, "card", false},
		{branchRule{cfg: whenConfig{Matches: `^\d+$`}, re: re}, "42", true},
		{branchRule{cfg: whenConfig{Matches: `^\d+$`}, re: re}, "42a", false},
	} {
		require.Equal(t, tc.want, tc.rule.holds(tc.v), "%+v on %q", tc.rule.cfg, tc.v)
	}
}

// TestMultiHopRetrieve checks that a retrieve step's query can come from an
// earlier step's output: the second hop finds what only the first hop's
// answer names.
func TestMultiHopRetrieve(t *testing.T) {
	files := map[string]string{
		"chain.toml": `
[[steps]]
id = "hop1"
kind = "retrieve"
query = "{{.context.question}}"
source = "context.paragraphs"
k = 1

[[steps]]
id = "bridge"
kind = "llm"
prompt = "prompts/bridge.md"

[[steps]]
id = "hop2"
kind = "retrieve"
query = "{{.steps.bridge.output}}"
source = "context.paragraphs"
k = 1
`,
		"prompts/bridge.md": "Which entity do these passages point to next?\n{{.steps.hop1.output}}",
	}
	_, m := fakeModels(t, fakellm.WithRule(fakellm.LastUserContains("point to next"), fakellm.Reply{Content: "Seattle weather"}))
	c, err := Load(writeDir(t, files))
	require.NoError(t, err)
	tr := c.Run(context.Background(), hotpotCase(), m)
	require.Empty(t, tr.Error)
	require.Equal(t, "Tinted Windows", tr.Step("hop1").Retrieved[0].Title)
	require.Equal(t, "Weather", tr.Step("hop2").Retrieved[0].Title)
	require.Equal(t, []string{"bridge"}, c.Steps()[2].Reads)
}

func TestStructuralKindsDryRun(t *testing.T) {
	files := reflectFiles(reflectTOML + `
[[steps]]
id = "pick"
kind = "vote"
prompt = "prompts/answer.md"
method = "judge"
judge = "prompts/judge.md"

[[steps]]
id = "route"
kind = "branch"
input = "{{.steps.pick.output}}"
[[steps.when]]
contains = "x"
skip = ["agent"]

[[steps]]
id = "agent"
kind = "react"
prompt = "prompts/answer.md"
tools = ["search"]
`)
	files["prompts/judge.md"] = "{{range .samples}}{{.}}{{end}} {{.steps.check.output}}"
	c, err := Load(writeDir(t, files), WithTools(map[string]Tool{"search": &recordingTool{name: "search"}}))
	require.NoError(t, err)
	require.NoError(t, c.DryRun(capitalCase("c", "Peru")))
	infos := c.Steps()
	require.Equal(t, []string{"prompts/critique.md", "prompts/revise.md"}, infos[1].Files)
	require.Equal(t, 5, infos[2].N)
}

func TestStructuralKindsValidation(t *testing.T) {
	base := map[string]string{
		"prompts/answer.md":   "Q {{.context.country}}",
		"prompts/critique.md": "C {{.draft}}",
		"prompts/revise.md":   "R {{.draft}} {{.critique}}",
	}
	tools := WithTools(map[string]Tool{"search": &recordingTool{name: "search"}, "calc": &recordingTool{name: "calc"}})
	for _, tc := range []struct {
		name  string
		toml  string
		opts  []Option
		wants []string
	}{
		{"reflect target later", `
[[steps]]
id = "check"
kind = "reflect"
target = "answer"
critique = "prompts/critique.md"
revise = "prompts/revise.md"
[[steps]]
id = "answer"
kind = "llm"
prompt = "prompts/answer.md"`, nil, []string{`target = "answer" runs later`}},
		{"reflect missing files and bad rounds", answerOnlyTOML + `
[[steps]]
id = "check"
kind = "reflect"
target = "anser"
max_rounds = 9
[steps.params]
n = 3`, nil, []string{`target = "anser" names no step; did you mean "answer"?`, "critique is empty", "revise is empty", "max_rounds = 9 is out of range; use 1 to 5", "params.n applies to llm and vote steps"}},
		{"reflect reads draft in an llm step", `
[[steps]]
id = "answer"
kind = "llm"
prompt = "prompts/critique.md"`, nil, []string{"reads unknown field .draft"}},
		{"react without declared tools", `
[[steps]]
id = "agent"
kind = "react"
prompt = "prompts/answer.md"
tools = ["search"]`, nil, []string{`tool "search" is not declared: the tenant declares no tools`}},
		{"react undeclared tool and bounds", `
[[steps]]
id = "agent"
kind = "react"
prompt = "prompts/answer.md"
tools = ["serch", "calc", "calc"]
max_iterations = 21
max_tool_calls = -1`, []Option{tools}, []string{`tool "serch" is not declared in tenant.toml; did you mean "search"? (declared: calc, search)`, `tool "calc" is listed twice`, "max_iterations = 21 is out of range", "max_tool_calls = -1 is out of range"}},
		{"react with no tools listed", `
[[steps]]
id = "agent"
kind = "react"
prompt = "prompts/answer.md"`, []Option{tools}, []string{"tools is empty; list the tools the model may call (declared in tenant.toml: calc, search)"}},
		{"vote bad method and n", `
[[steps]]
id = "v"
kind = "vote"
prompt = "prompts/answer.md"
method = "mode"
extract = "("
[steps.params]
n = 1`, nil, []string{`method = "mode"; use one of majority, judge`, "params.n = 1: a vote needs at least 2 samples", "extract \"(\""}},
		{"vote judge without file", `
[[steps]]
id = "v"
kind = "vote"
prompt = "prompts/answer.md"
method = "judge"`, nil, []string{"method = \"judge\" needs judge"}},
		{"vote judge with majority", `
[[steps]]
id = "v"
kind = "vote"
prompt = "prompts/answer.md"
judge = "prompts/answer.md"`, nil, []string{"judge is set but method is majority"}},
		{"branch problems", answerOnlyTOML + `
[[steps]]
id = "route"
kind = "branch"
input = "{{.steps.answer.output}}"
else_skip = ["answer", "nowhere"]
[[steps.when]]
equals = "a"
contains = "b"
skip = []
[[steps.when]]
matches = "("
skip = ["route"]`, nil, []string{"when[0]: set exactly one of equals, contains or matches", "when[0].skip is empty", `else_skip names step "answer", which runs before the branch`, `else_skip names no step "nowhere"`, "when[1].matches", `when[1].skip names step "route", which runs before`}},
		{"branch empty", `
[[steps]]
id = "route"
kind = "branch"`, nil, []string{"input is empty", "no [[steps.when]] conditions"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"chain.toml": tc.toml}
			for k, v := range base {
				files[k] = v
			}
			_, err := Load(writeDir(t, files), tc.opts...)
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
			for _, w := range tc.wants {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

// corpusToolAt is CorpusToolFS over the corpus file at path.
func corpusToolAt(name, path string, k int, description string) Tool {
	return CorpusToolFS(name, os.DirFS(filepath.Dir(path)), filepath.Base(path), path, k, description)
}
