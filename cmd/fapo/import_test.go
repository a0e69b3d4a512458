package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
)

func importWorkspace(t *testing.T, taskType string) (tenantDir, home, root string) {
	t.Helper()
	root = t.TempDir()
	tenantDir = filepath.Join(root, "ws", "tenants", "bench")
	require.NoError(t, os.MkdirAll(filepath.Join(tenantDir, "prompts"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tenantDir, "tenant.toml"), []byte(`name = "bench"
task_type = "`+taskType+`"
[model]
provider = "openai"
name = "gpt-4o-mini"
[scorer]
kind = "numeric"
`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(tenantDir, "chain.toml"), []byte("[[steps]]\nid = \"answer\"\nkind = \"llm\"\nprompt = \"prompts/answer.md\"\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(tenantDir, "prompts", "answer.md"), []byte("{{.context.question}}"), 0o644))
	return tenantDir, filepath.Join(root, "home"), root
}

func TestImportSeals(t *testing.T) {
	// A temporary directory of the test's own, so that another fapo on the
	// machine cannot leave a file the leftover check below would find.
	t.Setenv("TMPDIR", t.TempDir())
	dir, home, root := importWorkspace(t, "math")
	src := filepath.Join(root, "test.jsonl")
	var b strings.Builder
	for i := range 20 {
		fmt.Fprintf(&b, `{"question": "What is %d + 1,000?", "answer": "%d + 1000 = <<%d+1000=%d>>%d\n#### %s"}`+"\n", i, i, i, i+1000, i+1000, fmt.Sprintf("1,%03d", i))
	}
	require.NoError(t, os.WriteFile(src, []byte(b.String()), 0o644))

	code, out, errOut := cliRun(t, nil, "import", "gsm8k", src, "--tenant", dir, "--home", home)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "imported 20 gsm8k cases from "+src)
	require.Contains(t, out, "sealed tenant bench: 20 cases")
	train, err := dataset.ReadAll(filepath.Join(dir, "data", "train.jsonl"))
	require.NoError(t, err)
	require.Len(t, train, 12)
	for _, c := range train {
		require.True(t, strings.HasPrefix(c.CaseID, "gsm8k-test-"))
		require.Equal(t, src, c.Metadata["source"])
		require.NotContains(t, c.Expected["answer"], ",")
	}
	leftovers, _ := filepath.Glob(filepath.Join(os.TempDir(), "fapo-import-*.jsonl"))
	require.Empty(t, leftovers, "the converted temporary file was not removed")
}

func TestImportErrors(t *testing.T) {
	dir, home, root := importWorkspace(t, "math")
	good := filepath.Join(root, "test.jsonl")
	require.NoError(t, os.WriteFile(good, []byte(`{"question": "q", "answer": "#### 1"}`+"\n"), 0o644))
	bad := filepath.Join(root, "bad.jsonl")
	require.NoError(t, os.WriteFile(bad, []byte(`{"question": "q", "answer": "no marker"}`+"\n"), 0o644))
	empty := filepath.Join(root, "empty.jsonl")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"import", "gsm8k", "--tenant", dir}, "want a benchmark and a source file, got 1"},
		{[]string{"import", "squad", good, "--tenant", dir}, `unknown benchmark "squad"`},
		{[]string{"import", "gsm8k", good}, "--tenant is required"},
		{[]string{"import", "hotpotqa", good, "--tenant", dir}, `hotpotqa cases have task_type "qa" but tenant bench has task_type "math"`},
		{[]string{"import", "gsm8k", filepath.Join(root, "nope.jsonl"), "--tenant", dir}, "does not exist; download the benchmark's official file first"},
		{[]string{"import", "gsm8k", bad, "--tenant", dir, "--home", home}, `bad.jsonl:1: answer has no "#### N" final line`},
		{[]string{"import", "gsm8k", empty, "--tenant", dir, "--home", home}, "holds no gsm8k records"},
		{[]string{"import", "gsm8k", good, "--tenant", filepath.Join(root, "missing")}, "not a tenant"},
	} {
		code, _, errOut := cliRun(t, nil, tc.args...)
		require.NotEqual(t, 0, code, tc.args)
		require.Contains(t, errOut, tc.want, tc.args)
	}
}

// TestImportMessages: what a new user meets in a fresh workspace. The
// suggested init names the benchmark's task type, NAME means tenants/NAME as
// in init, a file of cases is pointed to fapo seal, and the manifest names
// the benchmark file and its hash rather than the removed conversion.
func TestImportMessages(t *testing.T) {
	root := t.TempDir()
	ws := filepath.Join(root, "ws")
	require.NoError(t, os.MkdirAll(ws, 0o755))
	t.Chdir(ws)
	env := map[string]string{"FAPO_HOME": filepath.Join(root, "home")}
	src := filepath.Join(root, "test.jsonl")
	gsm := `{"question": "What is 2 + 2?", "answer": "2 + 2 = 4\n#### 4"}` + "\n"
	var b strings.Builder
	for range 10 {
		b.WriteString(gsm)
	}
	require.NoError(t, os.WriteFile(src, []byte(b.String()), 0o644))
	cases := filepath.Join(root, "cases.jsonl")
	require.NoError(t, os.WriteFile(cases, []byte(`{"case_id": "c1", "task_type": "math", "context": {"question": "1+1?"}, "expected": {"answer": "2"}}`+"\n"), 0o644))
	array := filepath.Join(root, "cases.json")
	require.NoError(t, os.WriteFile(array, []byte(`[{"case_id": "c1", "task_type": "qa", "context": {}, "expected": {}}]`), 0o644))

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no tenant yet: init with the benchmark's task type", []string{"import", "gsm8k", src, "--tenant", "gsm8k"},
			"tenants/gsm8k is not a tenant yet (no tenant.toml): create it with `fapo init tenants/gsm8k --task-type math`"},
		{"hotpotqa is qa", []string{"import", "hotpotqa", src, "--tenant", "hotpotqa"}, "`fapo init tenants/hotpotqa --task-type qa`"},
		{"no --tenant names the same init", []string{"import", "hover", src}, "--tenant is required: the tenant to seal into, e.g. --tenant hover (tenants/hover, created with fapo init tenants/hover --task-type claim)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := cliRun(t, env, tc.args...)
			require.NotEqual(t, 0, code)
			require.Contains(t, errOut, tc.want)
		})
	}

	code, _, errOut := cliRun(t, env, "init", "gsm8k", "--task-type", "math")
	require.Equal(t, 0, code, errOut)
	for _, f := range []string{cases, array} {
		code, _, errOut = cliRun(t, env, "import", "gsm8k", f, "--tenant", "gsm8k")
		require.Equal(t, 1, code)
		require.Contains(t, errOut, "already in fapo's case format (case_id, context, expected), so there is nothing to convert: seal it directly with fapo seal tenants/gsm8k --source "+f)
	}

	code, out, errOut := cliRun(t, env, "import", "gsm8k", src, "--tenant", "gsm8k")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "sealed tenant gsm8k: 10 cases from "+src)
	require.FileExists(t, filepath.Join(ws, "tenants", "gsm8k", "data", "train.jsonl"))
	m, err := dataset.OpenStore(env["FAPO_HOME"]).Manifest("gsm8k")
	require.NoError(t, err)
	sum := sha256.Sum256([]byte(b.String()))
	require.Equal(t, src, m.Source.Path)
	require.Equal(t, hex.EncodeToString(sum[:]), m.Source.SHA256)
	require.Equal(t, "gsm8k", m.Source.Format)
	require.NotEmpty(t, m.Source.CasesSHA256)
	require.NotEqual(t, m.Source.SHA256, m.Source.CasesSHA256)
}
