package tenant

import (
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/refusal"
)

func writeFrozenTenant(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "demo")
	for p, text := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(text), 0o644))
	}
	return dir
}

// TestFrozenFilesOfScorerAndTools: the frozen files are tenant.toml, the
// files a command scorer's or MCP tool's command names (also as --flag=VALUE),
// rubric files, composite components' files, everything under scorer/,
// retrieval corpora and the train split; executables on PATH and files the
// config does not name are not.
func TestFrozenFilesOfScorerAndTools(t *testing.T) {
	toml := strings.Replace(minimal, `[scorer]
kind = "exact_match"`, `[models.judge]
provider = "openai"
name = "gpt-4o"

[scorer]
kind = "composite"

[[scorer.components]]
name = "own"
weight = 1
[scorer.components.scorer]
kind = "command"
command = ["python3", "check.py", "--table=tables/labels.csv", "/usr/share/dict/words"]

[[scorer.components]]
name = "judge"
weight = 1
[scorer.components.scorer]
kind = "llm_judge"
model = "judge"
rubric_file = "rubric.md"

[tools.search]
kind = "retrieval"
corpus = "corpus/docs.jsonl"

[tools.wiki]
kind = "mcp"
command = ["node", "mcp/server.js", "--config", "mcp/config.json"]`, 1)
	dir := writeFrozenTenant(t, map[string]string{
		"tenant.toml": toml, "check.py": "print()", "tables/labels.csv": "a,b", "rubric.md": "grade it",
		"scorer/helpers.py": "x = 1", "corpus/docs.jsonl": "{}", "mcp/server.js": "//", "mcp/config.json": "{}",
		"data/train.jsonl": "{}\n", "notes.md": "not frozen", "chain.toml": "pinned by variants",
	})
	f, err := ReadFrozen(dir, nil)
	require.NoError(t, err)
	require.NoError(t, f.ConfigErr)
	got := slices.Sorted(maps.Keys(f.Sums))
	require.Equal(t, []string{"check.py", "corpus/docs.jsonl", "data/train.jsonl", "mcp/config.json", "mcp/server.js",
		"rubric.md", "scorer/helpers.py", "tables/labels.csv", "tenant.toml"}, got)
	require.NotContains(t, f.Files, "tenant.toml", "tenant.toml is parsed, not materialized")
	require.NotContains(t, f.Files, "data/train.jsonl", "the train split is hashed, not held")
}

// TestChangesNameTheKeys: a changed tenant.toml is reported key by key,
// arrays of tables element by element; a file the config newly names is
// "added", a pinned one that is gone "missing".
func TestChangesNameTheKeys(t *testing.T) {
	old := minimal + "\n[tools.calc]\nkind = \"calculator\"\n"
	cur := strings.Replace(minimal, `kind = "exact_match"`, `kind = "command"
command = ["sh", "score.sh"]`, 1)
	cur = strings.Replace(cur, `name = "gpt-4o-mini"`, `name = "gpt-4o-mini"
base_url = "http://127.0.0.1:9/v1"`, 1)
	dir := writeFrozenTenant(t, map[string]string{"tenant.toml": cur, "score.sh": "echo"})
	f, err := ReadFrozen(dir, []string{"corpus/gone.jsonl"})
	require.NoError(t, err)
	pinned := map[string]string{"tenant.toml": sha256Hex([]byte(old)), "corpus/gone.jsonl": "0000"}
	changes := f.Changes(pinned, func() ([]byte, error) { return []byte(old), nil })
	require.Equal(t, []Change{
		{Path: "tenant.toml", Status: Changed, Keys: []string{"model.base_url", "scorer.command", "scorer.kind", "tools"}},
		{Path: "corpus/gone.jsonl", Status: Missing},
		{Path: "score.sh", Status: Added},
	}, changes)
	keys, err := DiffConfig([]byte("[[a]]\nx = 1\n[[a]]\nx = 2\n"), []byte("[[a]]\nx = 1\n[[a]]\nx = 3\n"))
	require.NoError(t, err)
	require.Equal(t, []KeyChange{{Key: "a[1].x", Old: int64(2), New: int64(3)}}, keys)
	_, err = DiffConfig([]byte(old), []byte("not = = toml"))
	require.Error(t, err)
	e := &PinError{Tenant: "demo", Changes: changes[:1], Since: "sealed"}
	require.Equal(t, "tenant demo: tenant.toml changed since it was sealed (model.base_url, scorer.command, scorer.kind, tools)", e.Refusal().Msg)
	require.Equal(t, refusal.Pin, e.Refusal().Next)
	require.Equal(t, "demo", e.Refusal().Subject)
}

// BenchmarkReadFrozen measures the check every operation pays: tenant.toml
// and a 32 MB train split (about HotpotQA's), hashed as they stream.
func BenchmarkReadFrozen(b *testing.B) {
	dir := filepath.Join(b.TempDir(), "demo")
	require.NoError(b, os.MkdirAll(filepath.Join(dir, "data"), 0o755))
	require.NoError(b, os.WriteFile(filepath.Join(dir, "tenant.toml"), []byte(minimal), 0o644))
	line := `{"case_id":"c","task_type":"qa","context":{"question":"` + strings.Repeat("x", 1000) + `"},"expected":{"answer":"y"}}` + "\n"
	require.NoError(b, os.WriteFile(filepath.Join(dir, "data", "train.jsonl"), []byte(strings.Repeat(line, 32<<20/len(line))), 0o644))
	b.SetBytes(32 << 20)
	for b.Loop() {
		if _, err := ReadFrozen(dir, nil); err != nil {
			b.Fatal(err)
		}
	}
}
