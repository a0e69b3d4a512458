package tenant

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestToolsParse(t *testing.T) {
	cfg, err := Parse([]byte(minimal+`
[tools.search]
kind = "retrieval"
corpus = "corpus/docs.jsonl"
k = 3

[tools.calc]
kind = "calculator"

[tools.wiki]
kind = "mcp"
command = ["wiki-mcp", "--stdio"]
tool = "search_wiki"
env = ["WIKI_LANG=en"]
timeout_seconds = 5
`), "demo")
	require.NoError(t, err)
	require.Equal(t, ToolConfig{Kind: "retrieval", Corpus: "corpus/docs.jsonl", K: 3}, cfg.Tools["search"])
	require.Equal(t, "calculator", cfg.Tools["calc"].Kind)
	require.Equal(t, ToolConfig{Kind: "mcp", Command: []string{"wiki-mcp", "--stdio"}, Tool: "search_wiki", Env: []string{"WIKI_LANG=en"}, TimeoutSeconds: 5}, cfg.Tools["wiki"])
}

func TestToolsValidation(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"missing kind", "[tools.a]\ndescription = \"x\"", []string{"tools.a.kind: missing"}},
		{"unknown kind", "[tools.a]\nkind = \"calculater\"", []string{`tools.a.kind: unknown "calculater"; did you mean "calculator"?`}},
		{"bad name", "[tools.\"a-b\"]\nkind = \"calculator\"", []string{`tools.a-b: tool name "a-b" must be an identifier`}},
		{"retrieval without corpus", "[tools.a]\nkind = \"retrieval\"\nk = -1", []string{"tools.a.corpus: missing", "tools.a.k: -1"}},
		{"retrieval escaping corpus", "[tools.a]\nkind = \"retrieval\"\ncorpus = \"../other/docs.jsonl\"", []string{"tools.a.corpus: \"../other/docs.jsonl\" must be a path inside the tenant directory"}},
		{"mcp without command", "[tools.a]\nkind = \"mcp\"\nenv = [\"NOEQUALS\"]\ntimeout_seconds = -2", []string{"tools.a.command: missing", `tools.a.env: env[0] = "NOEQUALS"`, "tools.a.timeout_seconds: -2"}},
		{"keys of another kind", "[tools.a]\nkind = \"calculator\"\ncorpus = \"x.jsonl\"\ncommand = [\"x\"]", []string{`tools.a.corpus: does not apply to kind "calculator"`, `tools.a.command: does not apply to kind "calculator"`}},
		{"unknown key", "[tools.a]\nkind = \"calculator\"\ncorpuss = \"x\"", []string{"tools.a.corpuss: unknown key; did you mean \"corpus\"?"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := parseProblems(t, minimal+"\n"+tc.src+"\n", "demo")
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			for _, w := range tc.want {
				require.True(t, containsPrefix(got, w), "want %q in %q", w, got)
			}
		})
	}
}

func containsPrefix(list []string, s string) bool {
	for _, l := range list {
		if len(l) >= len(s) && l[:len(s)] == s {
			return true
		}
	}
	return false
}
