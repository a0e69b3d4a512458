package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset/datasettest"

	"github.com/fapo-dev/fapo/engine/provider/fakellm"
)

// TestBenchmarkExampleTenants: every benchmark example tenant, sealed with
// its shared data subset and its model pointed at the chat-completions test
// double, passes fapo doctor and runs fapo eval --limit 5.
func TestBenchmarkExampleTenants(t *testing.T) {
	llm := fakellm.New(fakellm.WithDefault(func(r fakellm.Request) fakellm.Reply {
		return fakellm.Reply{Content: "Answer: 42"} // a test double: a constant, scorable answer
	}))
	defer llm.Close()
	for _, name := range []string{"hotpotqa", "hotpotqa-python", "hover", "gsm8k", "banking77", "ifeval"} {
		t.Run(name, func(t *testing.T) {
			source := datasettest.SharedFile(t, strings.TrimSuffix(name, "-python")+".jsonl") // the Python example seals the real HotpotQA subset too
			ws, home := t.TempDir(), t.TempDir()
			dir := filepath.Join(ws, "tenants", name)
			require.NoError(t, os.CopyFS(dir, os.DirFS(filepath.Join("..", "..", "tenants", name))))
			cfgPath := filepath.Join(dir, "tenant.toml")
			b, err := os.ReadFile(cfgPath)
			require.NoError(t, err)
			cfg := strings.ReplaceAll(string(b), `provider = "openai"`, "provider = \"openai_compatible\"\nbase_url = \""+llm.URL()+"\"")
			cfg = strings.ReplaceAll(cfg, `api_key_env = "OPENAI_API_KEY"`, `api_key_env = ""`)
			require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o644))
			env := map[string]string{"FAPO_HOME": home}

			code, out, errOut := cliRun(t, env, "seal", dir, "--source", source)
			require.Equal(t, 0, code, out+errOut)
			code, out, errOut = cliRun(t, env, "doctor", dir)
			require.Equal(t, 0, code, out+errOut)
			code, out, errOut = cliRun(t, env, "eval", "--tenant", name, "--workspace", ws, "--split", "train", "--limit", "5")
			require.Equal(t, 0, code, out+errOut)
			require.Contains(t, out, "5") // the summary names the 5 cases run
			require.NotContains(t, out+errOut, "exec error")
		})
	}
}
