package main

import (
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
