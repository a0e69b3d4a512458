package chain

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// writeDir creates a chain directory from path → content.
func writeDir(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(c), 0o644))
	}
	return dir
}

const threeStepTOML = `
output = "final"

[[steps]]
id = "retrieve"
kind = "retrieve"
query = "{{.context.question}}"
source = "context.paragraphs"
k = 2

[[steps]]
id = "answer"
kind = "llm"
system = "prompts/answer.system.md"
prompt = "prompts/answer.md"
[steps.params]
temperature = 0.0
max_tokens = 64
seed = 7
stop = ["\n\n"]

[[steps]]
id = "final"
kind = "parse"
input = "{{.steps.answer.output}}"
regex = 'Answer:\s*(.+)'
on_fail = "raw"
`

func threeStepFiles() map[string]string {
	return map[string]string{
		"chain.toml":               threeStepTOML,
		"prompts/answer.system.md": "Answer briefly.",
		"prompts/answer.md":        "Passages:\n{{.steps.retrieve.output}}\n\nQuestion: {{.context.question}}",
	}
}

func TestLoadValidChain(t *testing.T) {
	dir := writeDir(t, threeStepFiles())
	c, err := Load(dir)
	require.NoError(t, err)
	require.Equal(t, "final", c.Output())

	steps := c.Steps()
	require.Len(t, steps, 3)
	require.Equal(t, "retrieve", steps[0].Kind)
	require.Equal(t, 2, steps[0].K)
	require.Equal(t, "llm", steps[1].Kind)
	require.Equal(t, 1, steps[1].N)
	require.Equal(t, 64, *steps[1].Params.MaxTokens)
	require.Equal(t, []string{"\n\n"}, steps[1].Params.Stop)
	require.Equal(t, []string{"prompts/answer.system.md", "prompts/answer.md"}, steps[1].Files)
	require.Equal(t, []string{"retrieve"}, steps[1].Reads)
	require.Equal(t, []string{"answer"}, steps[2].Reads)

	files, err := c.Files()
	require.NoError(t, err)
	require.Len(t, files, 3)
	require.Equal(t, "Answer briefly.", string(files["prompts/answer.system.md"]))
	require.Equal(t, threeStepTOML, string(files["chain.toml"]))
}

func TestLoadDefaultOutputIsLastStep(t *testing.T) {
	dir := writeDir(t, map[string]string{"chain.toml": `
[[steps]]
id = "a"
kind = "parse"
input = "{{.context.x}}"
regex = "(.*)"
`})
	c, err := Load(dir)
	require.NoError(t, err)
	require.Equal(t, "a", c.Output())
}

func TestLoadMissingChainFile(t *testing.T) {
	_, err := Load(t.TempDir())
	require.ErrorContains(t, err, "no chain.toml in")
}

func TestStepFingerprint(t *testing.T) {
	files := threeStepFiles()
	a, err := Load(writeDir(t, files))
	require.NoError(t, err)
	files["prompts/answer.md"] += "\nThink step by step."
	b, err := Load(writeDir(t, files))
	require.NoError(t, err)

	require.Len(t, a.StepFingerprint("answer"), 64)
	require.NotEqual(t, a.StepFingerprint("answer"), b.StepFingerprint("answer"))
	require.Equal(t, a.StepFingerprint("retrieve"), b.StepFingerprint("retrieve"))
	require.Equal(t, a.StepFingerprint("final"), b.StepFingerprint("final"))
	require.Empty(t, a.StepFingerprint("nope"))
}

// llmStep is a minimal valid llm step reading prompt file p.md.
func llmStep(id, extra string) string {
	return "[[steps]]\nid = \"" + id + "\"\nkind = \"llm\"\nprompt = \"p.md\"\n" + extra + "\n"
}

func TestLoadProblems(t *testing.T) {
	tests := []struct {
		name  string
		toml  string
		files map[string]string
		want  []string
	}{
		{"toml syntax", "[[steps]\nid=", nil, []string{"chain.toml: line 2: expected end of table array name"}},
		{"no steps", `output = "a"`, nil, []string{"no steps"}},
		{"unknown top-level key", "outptu = \"a\"\n" + llmStep("a", ""), nil, []string{`unknown key "outptu"; did you mean "output"?`}},
		{"unknown kind", "[[steps]]\nid = \"a\"\nkind = \"lmm\"\n", nil, []string{`step "a": unknown kind "lmm"; did you mean "llm"?`}},
		{"empty kind", "[[steps]]\nid = \"a\"\n", nil, []string{`step "a": kind is empty`}},
		{"empty id", "[[steps]]\nkind = \"llm\"\nprompt = \"p.md\"\n", nil, []string{`step "#1": id is empty`}},
		{"bad id", llmStep("my-step", ""), nil, []string{`step "my-step": id must be letters, digits and _`}},
		{"duplicate id", llmStep("a", "") + llmStep("a", ""), nil, []string{`step "a": duplicate id: steps #1 and #2 are both "a"`}},
		{"unknown step key", "[[steps]]\nid = \"a\"\nkind = \"llm\"\npromt = \"p.md\"\n", nil, []string{`unknown key "promt"; did you mean "prompt"?`, "prompt is empty"}},
		{"key of another kind", llmStep("a", `regex = "x"`), nil, []string{`step "a": key "regex" belongs to kind parse, not llm`}},
		{"unknown key with unknown kind", "[[steps]]\nid = \"a\"\nkind = \"zzz\"\nqeury = \"x\"\n", nil, []string{`unknown key "qeury"; did you mean "query"?`}},
		{"unknown param", llmStep("a", "[steps.params]\ntemprature = 0.5"), nil, []string{`unknown key params.temprature; did you mean "temperature"?`}},
		{"temperature range", llmStep("a", "[steps.params]\ntemperature = 2.5"), nil, []string{"params.temperature = 2.5 is out of range; use 0 to 2"}},
		{"top_p range", llmStep("a", "[steps.params]\ntop_p = 1.5"), nil, []string{"params.top_p = 1.5 is out of range"}},
		{"max_tokens", llmStep("a", "[steps.params]\nmax_tokens = 0"), nil, []string{"params.max_tokens = 0 must be positive"}},
		{"n too big", llmStep("a", "[steps.params]\nn = 17"), nil, []string{"params.n = 17 is out of range; use 1 to 16"}},
		{"n zero", llmStep("a", "[steps.params]\nn = 0"), nil, []string{"params.n = 0 is out of range"}},
		{"missing prompt file", "[[steps]]\nid = \"answer\"\nkind = \"llm\"\nprompt = \"prompts/answr.md\"\n",
			map[string]string{"prompts/answer.md": "x"},
			[]string{`chain.toml: step "answer": prompt file prompts/answr.md does not exist; did you mean "answer.md"?`}},
		{"prompt escapes dir", "[[steps]]\nid = \"a\"\nkind = \"llm\"\nprompt = \"../p.md\"\n", nil, []string{`prompt file ../p.md: path "../p.md" leaves`}},
		{"empty prompt", "[[steps]]\nid = \"a\"\nkind = \"llm\"\n", nil, []string{"prompt is empty"}},
		{"missing system file", llmStep("a", `system = "s.md"`), nil, []string{"prompt file s.md does not exist"}},
		{"template parse error", llmStep("a", ""), map[string]string{"p.md": "line one\n{{.context.question"}, []string{`step "a": prompt: template: p.md:2: unclosed action`}},
		{"unknown step ref", llmStep("first", "") + llmStep("b", `system = "s.md"`), map[string]string{"s.md": "{{.steps.frist.output}}"},
			[]string{`step "b": system reads .steps.frist, but no step has that id; did you mean "first"?`}},
		{"later step ref", llmStep("a", `system = "s.md"`) + llmStep("b", ""), map[string]string{"s.md": "{{.steps.b.output}}"},
			[]string{`step "a": system reads .steps.b, which runs later`}},
		{"self ref", llmStep("a", `system = "s.md"`), map[string]string{"s.md": "{{.steps.a.output}}"},
			[]string{`step "a": system reads .steps.a, its own output`}},
		{"later step via $ inside range", llmStep("a", `system = "s.md"`) + llmStep("b", ""), map[string]string{"s.md": "{{range .context.xs}}{{$.steps.b.output}}{{end}}"},
			[]string{"reads .steps.b, which runs later"}},
		{"later step via parenthesized chain", llmStep("a", `system = "s.md"`) + llmStep("b", ""), map[string]string{"s.md": "{{(.steps).b.output}}"},
			[]string{"reads .steps.b, which runs later"}},
		{"later step in if", llmStep("a", `system = "s.md"`) + llmStep("b", ""), map[string]string{"s.md": "{{if .context.x}}{{.steps.b.output | upper}}{{end}}"},
			[]string{"reads .steps.b, which runs later"}},
		{"expected refused", llmStep("a", `system = "s.md"`), map[string]string{"s.md": "{{.expected.answer}}"},
			[]string{`step "a": system reads .expected.answer: a pipeline must not see expected values`}},
		{"unknown root field", llmStep("a", `system = "s.md"`), map[string]string{"s.md": "{{.contxt.question}}"},
			[]string{`reads unknown field .contxt.question; did you mean "context"?`}},
		{"bad view", llmStep("a", "") + llmStep("b", `system = "s.md"`), map[string]string{"s.md": "{{.steps.a.outptu}}"},
			[]string{`reads .steps.a.outptu; a step exposes only output, parsed and retrieved; did you mean "output"?`}},
		{"parsed of plain llm", llmStep("a", "") + llmStep("b", `system = "s.md"`), map[string]string{"s.md": "{{.steps.a.parsed}}"},
			[]string{`reads .steps.a.parsed, but step "a" (llm) exposes only output`}},
		{"retrieved of llm", llmStep("a", "") + llmStep("b", `system = "s.md"`), map[string]string{"s.md": "{{.steps.a.retrieved}}"},
			[]string{`step "a" (llm) exposes only output`}},
		{"json_schema wrong type", llmStep("a", "json_schema = 3"), nil, []string{"json_schema must be an inline table or a path to a JSON file"}},
		{"json_schema missing file", llmStep("a", `json_schema = "schema.json"`), nil, []string{"json_schema file schema.json does not exist"}},
		{"json_schema bad file", llmStep("a", `json_schema = "schema.json"`), map[string]string{"schema.json": "[1,"}, []string{"json_schema file schema.json is not a JSON object"}},
		{"json_schema not a schema", llmStep("a", `json_schema = { type = "objekt" }`), nil, []string{"json_schema does not compile as a JSON Schema"}},
		{"json_schema bad pattern", llmStep("a", `json_schema = "schema.json"`), map[string]string{"schema.json": `{"type":"string","pattern":"(unclosed"}`}, []string{"json_schema does not compile as a JSON Schema"}},
		// The validator's default loader reads file:// refs off the server's
		// disk; a step's schema may only refer to itself.
		{"json_schema remote ref", llmStep("a", `json_schema = "schema.json"`), map[string]string{"schema.json": `{"$ref":"other.json"}`, "other.json": `{"type":"string"}`}, []string{"may only $ref within itself"}},
		{"retrieve empty", "[[steps]]\nid = \"r\"\nkind = \"retrieve\"\n", nil,
			[]string{"query is empty", "set one of source", "k = 0; retrieve at least 1 passage"}},
		{"retrieve both sources", "[[steps]]\nid = \"r\"\nkind = \"retrieve\"\nquery = \"q\"\nsource = \"context.p\"\ncorpus = \"c.jsonl\"\nk = 1\n", nil,
			[]string{"set only one of source and corpus"}},
		{"retrieve source outside context", "[[steps]]\nid = \"r\"\nkind = \"retrieve\"\nquery = \"q\"\nsource = \"expected.answer\"\nk = 1\n", nil,
			[]string{`source = "expected.answer" must be a field of the case's context`}},
		{"retrieve missing corpus", "[[steps]]\nid = \"r\"\nkind = \"retrieve\"\nquery = \"q\"\ncorpus = \"docs.jsonl\"\nk = 1\n", map[string]string{"doc.jsonl": ""},
			[]string{`corpus file docs.jsonl does not exist`, `did you mean "doc.jsonl"?`}},
		{"retrieve corpus escapes", "[[steps]]\nid = \"r\"\nkind = \"retrieve\"\nquery = \"q\"\ncorpus = \"/etc/passwd\"\nk = 1\n", nil,
			[]string{`corpus /etc/passwd: path "/etc/passwd" is absolute`}},
		{"retrieve bad field", "[[steps]]\nid = \"r\"\nkind = \"retrieve\"\nquery = \"q\"\nsource = \"context.p\"\nk = 1\nfields = [\"body\"]\n", nil,
			[]string{`fields: unknown field "body"`}},
		{"retrieve query template", "[[steps]]\nid = \"r\"\nkind = \"retrieve\"\nquery = \"{{.expected.x}}\"\nsource = \"context.p\"\nk = 1\n", nil,
			[]string{"query reads .expected.x"}},
		{"parse empty", "[[steps]]\nid = \"p\"\nkind = \"parse\"\n", nil, []string{"input is empty", "set one of regex or json_path"}},
		{"parse both", "[[steps]]\nid = \"p\"\nkind = \"parse\"\ninput = \"x\"\nregex = \"x\"\njson_path = \"a\"\n", nil, []string{"set only one of regex and json_path"}},
		{"parse bad regex", "[[steps]]\nid = \"p\"\nkind = \"parse\"\ninput = \"x\"\nregex = \"(\"\n", nil, []string{`regex "(": error parsing regexp`}},
		{"parse bad json_path", "[[steps]]\nid = \"p\"\nkind = \"parse\"\ninput = \"x\"\njson_path = \"a..b\"\n", nil, []string{`json_path "a..b" has an empty segment`}},
		{"parse bad on_fail", "[[steps]]\nid = \"p\"\nkind = \"parse\"\ninput = \"x\"\nregex = \"x\"\non_fail = \"skip\"\n", nil, []string{`on_fail = "skip"; use one of raw, empty, error`}},
		{"parse input template error", "[[steps]]\nid = \"p\"\nkind = \"parse\"\ninput = \"{{.steps.x.output\"\nregex = \"x\"\n", nil, []string{`step "p": input: template: p.input:1: unclosed action`}},
		{"output names no step", "output = \"anser\"\n" + llmStep("answer", ""), nil, []string{`output = "anser" names no step; did you mean "answer"?`}},
		{"wrong value type", "[[steps]]\nid = \"r\"\nkind = \"retrieve\"\nk = \"four\"\n", nil, []string{"chain.toml: toml: line 4 (last key \"steps.k\"): incompatible types"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			files := map[string]string{"chain.toml": tc.toml, "p.md": "{{.context.question}}"}
			for k, v := range tc.files {
				files[k] = v
			}
			_, err := Load(writeDir(t, files))
			require.Error(t, err)
			var ve *ValidationError
			require.ErrorAs(t, err, &ve)
			require.Equal(t, "chain.toml", ve.File)
			for _, w := range tc.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestLoadReportsAllProblemsAtOnce(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"chain.toml": `
[[steps]]
id = "retrieve"
kind = "retreive"

[[steps]]
id = "answer"
kind = "llm"
prompt = "prompts/answr.md"
[steps.params]
temperature = 9.0

[[steps]]
id = "final"
kind = "parse"
input = "{{.steps.answer.output}}"
on_fail = "raw"
`,
		"prompts/answer.md": "x",
	})
	_, err := Load(dir)
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, []Problem{
		{Step: "retrieve", Msg: `unknown kind "retreive"; did you mean "retrieve"? (known: branch, llm, parse, react, reflect, retrieve, vote)`},
		{Step: "answer", Msg: `prompt file prompts/answr.md does not exist; did you mean "answer.md"?`},
		{Step: "answer", Msg: "params.temperature = 9 is out of range; use 0 to 2"},
		{Step: "final", Msg: "set one of regex or json_path"},
	}, ve.Problems)
	lines := strings.Split(err.Error(), "\n")
	require.Len(t, lines, 4)
	require.Equal(t, `chain.toml: step "answer": prompt file prompts/answr.md does not exist; did you mean "answer.md"?`, lines[1])
}

func TestLoadCorpusDirOption(t *testing.T) {
	tenant := writeDir(t, map[string]string{"corpus/docs.jsonl": `{"id":"1","title":"T","text":"x"}`})
	variant := writeDir(t, map[string]string{"chain.toml": "[[steps]]\nid = \"r\"\nkind = \"retrieve\"\nquery = \"q\"\ncorpus = \"corpus/docs.jsonl\"\nk = 1\n"})

	_, err := Load(variant)
	require.ErrorContains(t, err, "corpus file corpus/docs.jsonl does not exist")
	c, err := Load(variant, CorpusDir(tenant))
	require.NoError(t, err)
	files, err := c.Files()
	require.NoError(t, err)
	require.Equal(t, []string{"chain.toml"}, keys(files), "the tenant corpus is not part of a variant snapshot")
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
