package toolset

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/engine/tenant"
)

// serverEnv makes the test binary act as a tiny MCP server over stdio, so
// the tests start a real external process the way a tenant's server runs.
const serverEnv = "FAPO_TOOLS_TEST_MCP_SERVER"

func TestMain(m *testing.M) {
	if os.Getenv(serverEnv) == "1" {
		serveTestMCP()
		return
	}
	os.Exit(m.Run())
}

func serveTestMCP() {
	s := server.NewMCPServer("test-tools", "1")
	s.AddTool(mcp.NewTool("capital", mcp.WithDescription("The capital of a country."), mcp.WithString("country", mcp.Required())),
		func(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			caps := map[string]string{"France": "Paris", "Peru": "Lima"}
			c := req.GetString("country", "")
			if v, ok := caps[c]; ok {
				return mcp.NewToolResultText(v), nil
			}
			return mcp.NewToolResultError("unknown country " + c), nil
		})
	s.AddTool(mcp.NewTool("slow", mcp.WithDescription("Never answers in time.")),
		func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
			}
			return mcp.NewToolResultText("late"), nil
		})
	s.AddTool(mcp.NewTool("whoami", mcp.WithDescription("The server's environment and directory.")),
		func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			wd, _ := os.Getwd()
			return mcp.NewToolResultText(os.Getenv("TOOL_GREETING") + " " + filepath.Base(wd)), nil
		})
	if err := server.ServeStdio(s); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func testServer(remote string, timeout float64) tenant.ToolConfig {
	return tenant.ToolConfig{Kind: "mcp", Command: []string{os.Args[0]}, Tool: remote, TimeoutSeconds: timeout,
		Env: []string{serverEnv + "=1", "TOOL_GREETING=hello"}}
}

func TestMCPTool(t *testing.T) {
	dir := t.TempDir()
	set, err := FromConfig(dir, nil, map[string]tenant.ToolConfig{
		"capital": testServer("", 10),
		"slow":    testServer("slow", 0.3),
		"who":     testServer("whoami", 10),
		"missing": testServer("nope", 10),
	})
	require.NoError(t, err)
	defer func() { require.NoError(t, set.Close()) }()
	tools := set.Tools()
	ctx := context.Background()

	def, err := tools["capital"].Def(ctx)
	require.NoError(t, err)
	require.Equal(t, "capital", def.Name)
	require.Equal(t, "The capital of a country.", def.Description)
	require.Contains(t, string(def.Parameters), `"country"`)

	out, err := tools["capital"].Call(ctx, `{"country":"Peru"}`)
	require.NoError(t, err)
	require.Equal(t, "Lima", out)

	_, err = tools["capital"].Call(ctx, `{"country":"Atlantis"}`)
	require.EqualError(t, err, "MCP tool capital: unknown country Atlantis")

	_, err = tools["capital"].Call(ctx, `[1,2]`)
	require.ErrorContains(t, err, "arguments must be a JSON object")

	start := time.Now()
	_, err = tools["slow"].Call(ctx, `{}`)
	require.ErrorContains(t, err, "MCP tool slow did not answer within 300ms")
	require.Less(t, time.Since(start), 5*time.Second, "the per-call timeout cut the call short")

	out, err = tools["who"].Call(ctx, `{}`)
	require.NoError(t, err)
	require.Equal(t, "hello "+filepath.Base(dir), out, "the server runs in the tenant directory with the declared env")

	_, err = tools["missing"].Def(ctx)
	require.ErrorContains(t, err, `has no tool "nope" (it has: capital, slow, whoami); fix tools.missing.tool in tenant.toml`)
}

func TestMCPServerThatDoesNotStart(t *testing.T) {
	set, err := FromConfig(t.TempDir(), nil, map[string]tenant.ToolConfig{
		"x": {Kind: "mcp", Command: []string{filepath.Join(t.TempDir(), "no-such-server")}},
	})
	require.NoError(t, err)
	defer set.Close()
	_, err = set.Tools()["x"].Call(context.Background(), `{}`)
	require.ErrorContains(t, err, "start MCP server")
}

// TestReactWithMCPTool runs a react step whose model calls a tool served by
// the external MCP server, through the chat-completions test double.
func TestReactWithMCPTool(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"chain.toml": `
[[steps]]
id = "agent"
kind = "react"
prompt = "prompts/agent.md"
tools = ["capital", "calc"]
`,
		"prompts/agent.md": "What is the capital of {{.context.country}}?",
	}
	for p, c := range files {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, p), []byte(c), 0o644))
	}
	set, err := FromConfig(dir, nil, map[string]tenant.ToolConfig{"capital": testServer("", 10), "calc": {Kind: "calculator"}})
	require.NoError(t, err)
	defer set.Close()
	ch, err := chain.Load(dir, chain.WithTools(set.Tools()))
	require.NoError(t, err)

	srv := fakellm.New(
		fakellm.WithRuleFunc(func(r fakellm.Request) bool { return r.Messages[len(r.Messages)-1].Role == "tool" },
			func(r fakellm.Request) fakellm.Reply {
				return fakellm.Reply{Content: r.Messages[len(r.Messages)-1].Content}
			}),
		fakellm.WithRule(fakellm.LastUserContains("capital of"), fakellm.Reply{ToolCalls: []fakellm.ToolCall{{ID: "c1", Name: "capital", Arguments: `{"country":"France"}`}}}),
	)
	defer srv.Close()
	client, err := provider.New(provider.Spec{Provider: provider.ProviderOpenAICompatible, Name: "m", BaseURL: srv.URL(), APIKeyEnv: "K"},
		provider.Options{Getenv: func(string) string { return "k" }})
	require.NoError(t, err)
	tr := ch.Run(context.Background(), dataset.Case{CaseID: "c", Context: map[string]any{"country": "France"}}, oneModel{client})
	require.Empty(t, tr.Error)
	require.Equal(t, "Paris", tr.Final)
	calls := tr.Step("agent").ToolCalls
	require.Len(t, calls, 1)
	require.Equal(t, "capital", calls[0].Name)
	require.Equal(t, 5, calls[0].ResultChars)
}

type oneModel struct{ c provider.Client }

func (m oneModel) Client(string) (provider.Client, string, error) { return m.c, "m", nil }

func TestFromConfig(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "docs.jsonl"), []byte(`{"id":"1","title":"Lima","text":"Lima is the capital of Peru."}`+"\n"), 0o644))
	set, err := FromConfig(dir, nil, map[string]tenant.ToolConfig{
		"search": {Kind: "retrieval", Corpus: "docs.jsonl", K: 2},
		"calc":   {Kind: "calculator", Description: "math"},
	})
	require.NoError(t, err)
	require.Equal(t, []string{"calc", "search"}, set.Names())
	out, err := set.Tools()["search"].Call(context.Background(), `{"query":"capital of Peru"}`)
	require.NoError(t, err)
	require.Equal(t, "[Lima] Lima is the capital of Peru.", out)
	def, err := set.Tools()["calc"].Def(context.Background())
	require.NoError(t, err)
	require.Equal(t, "math", def.Description)
	require.NoError(t, set.Close())

	_, err = FromConfig(dir, nil, map[string]tenant.ToolConfig{"s": {Kind: "retrieval", Corpus: "../escape.jsonl"}})
	require.ErrorContains(t, err, "tools.s.corpus")
	_, err = FromConfig(dir, nil, map[string]tenant.ToolConfig{"s": {Kind: "shell"}})
	require.ErrorContains(t, err, `tools.s.kind: unknown "shell"`)
	var nilSet *Set
	require.NoError(t, nilSet.Close())
	require.Nil(t, nilSet.Tools())
}

func TestCalculator(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want float64
		err  string
	}{
		{"1 + 2 * 3", 7, ""},
		{"(1 + 2) * 3", 9, ""},
		{"-2^2", -4, ""},
		{"2^3^2", 512, ""},
		{"2 ** 10", 1024, ""},
		{"10 % 4", 2, ""},
		{"7 / 2", 3.5, ""},
		{"1.5e3 - 500", 1000, ""},
		{"sqrt(16) + abs(-3) + round(2.5) + floor(2.9) + ceil(2.1)", 4 + 3 + 3 + 2 + 3, ""},
		{"max(1, 5, 3) - min(4, 2)", 3, ""},
		{"--3", 3, ""},
		{"1 / 0", 0, "division by zero"},
		{"5 % 0", 0, "modulo by zero"},
		{"", 0, "expression is empty"},
		{"2 +", 0, "expression ends where a number was expected"},
		{"(1 + 2", 0, "missing )"},
		{"1 2", 0, `unexpected "2"`},
		{"os.exit(1)", 0, `unknown name "os"`},
		{"sqrt 4", 0, "sqrt needs arguments"},
		{"sqrt(-1)", 0, "sqrt of a negative number"},
		{"abs(1, 2)", 0, "takes 1 argument"},
		{"10 ^ 400", 0, "not a finite number"},
		{"1..2", 0, "bad number"},
		{"2 $ 3", 0, `unexpected "$ 3"`},
	} {
		got, err := Eval(tc.expr)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err, tc.expr)
			continue
		}
		require.NoError(t, err, tc.expr)
		require.InDelta(t, tc.want, got, 1e-9, tc.expr)
	}
	deep := ""
	for range 100 {
		deep += "("
	}
	_, err := Eval(deep + "1")
	require.ErrorContains(t, err, "nests deeper")
	long := make([]byte, 1001)
	for i := range long {
		long[i] = '1'
	}
	_, err = Eval(string(long))
	require.ErrorContains(t, err, "at most 1000")

	c := Calculator("calc", "")
	out, err := c.Call(context.Background(), `{"expression":"(3 + 4) * 2"}`)
	require.NoError(t, err)
	require.Equal(t, "14", out)
	_, err = c.Call(context.Background(), `"3+4"`)
	require.ErrorContains(t, err, `{"expression": "..."}`)
}
