package clients_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop/agenttest"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/server/servertest"
)

// codexSetup writes a Codex home whose model provider is the scripted
// double, then registers fapo with `fapo register codex --write` (which
// merges its block into that config.toml).
func codexSetup(t *testing.T, model *agenttest.Server) (codex string, f *looptest.Fixture, env []string) {
	t.Helper()
	return codexSetupWith(t, model, func() *looptest.Fixture { return looptest.New(t, nil) })
}

// codexSetupWith is codexSetup on the fixture newFixture builds.
func codexSetupWith(t *testing.T, model *agenttest.Server, newFixture func() *looptest.Fixture) (codex string, f *looptest.Fixture, env []string) {
	t.Helper()
	codex = clientBin(t, "codex", "@openai/codex@0.169.0")
	bin := servertest.Binary(t)
	f = newFixture()
	keepTempClean(t)
	home := t.TempDir()
	codexHome := filepath.Join(home, ".codex")
	require.NoError(t, os.MkdirAll(codexHome, 0o700))
	provider := `model = "test-model"
model_provider = "fake"

[model_providers.fake]
name = "agenttest scripted model"
base_url = "` + model.URL() + `/v1"
wire_api = "responses"
env_key = "FAKE_API_KEY"
request_max_retries = 0
stream_max_retries = 0
`
	require.NoError(t, os.WriteFile(filepath.Join(codexHome, "config.toml"), []byte(provider), 0o600))
	// Codex installs its sandbox helpers under CODEX_HOME and refuses to
	// when that is inside the temporary directory, which would fail every
	// command under fapo's permission profile (even reading AGENTS.md): give
	// it a TMPDIR of its own, as a real ~/.codex is outside /tmp anyway.
	tmp := filepath.Join(home, "tmp")
	require.NoError(t, os.MkdirAll(tmp, 0o700))
	env = baseEnv(home, f, "CODEX_HOME="+codexHome, "FAKE_API_KEY=x", "TMPDIR="+tmp)
	register(t, bin, "codex", f, env)
	b, err := os.ReadFile(filepath.Join(codexHome, "config.toml"))
	require.NoError(t, err)
	require.Contains(t, string(b), "[model_providers.fake]", "fapo register kept the provider")
	require.Contains(t, string(b), `default_tools_approval_mode = "approve"`)
	return codex, f, env
}

func runCodex(t *testing.T, codex string, f *looptest.Fixture, env []string, prompt string) []map[string]any {
	t.Helper()
	out, errs, err := run(t, 4*time.Minute, f.Dir, env, codex, "exec", "--json", "--skip-git-repo-check", prompt)
	require.NoError(t, err, "codex exec: stdout:\n%s\nstderr:\n%s", out, errs)
	var events []map[string]any
	for _, line := range strings.Split(out, "\n") {
		var ev map[string]any
		if json.Unmarshal([]byte(line), &ev) == nil {
			events = append(events, ev)
		}
	}
	require.NotEmpty(t, events, "codex exec printed no JSON events: %s%s", out, errs)
	return events
}

// mcpToolCalls returns the completed mcp_tool_call items of codex exec --json.
func mcpToolCalls(events []map[string]any) []map[string]any {
	var out []map[string]any
	for _, ev := range events {
		item, _ := ev["item"].(map[string]any)
		if ev["type"] == "item.completed" && item != nil && item["type"] == "mcp_tool_call" {
			out = append(out, item)
		}
	}
	return out
}

// TestCodexCycle: codex exec, with fapo registered by fapo register and a
// custom provider pointing at the scripted double, runs the cycle; every
// call is an mcp_tool_call on fapo and the journal shows the acceptance.
func TestCodexCycle(t *testing.T) {
	model := agenttest.New(cycle())
	defer model.Close()
	codex, f, env := codexSetup(t, model)

	events := runCodex(t, codex, f, env, "Optimize tenant capitals with the fapo tools.")
	calls := mcpToolCalls(events)
	var names []string
	for _, c := range calls {
		require.Equal(t, "fapo", c["server"], "%v", c)
		require.Equal(t, "completed", c["status"], "%v", c)
		names = append(names, c["tool"].(string))
	}
	require.Equal(t, cycleTools, names, "events: %v\nerrors: %v", events, model.Errors())
	results := model.Results()
	require.Len(t, results, len(cycleTools))
	for i, r := range results {
		require.False(t, r.IsError, "%s was refused: %s", cycleTools[i], r.Text)
	}
	require.Empty(t, model.Errors())
	requireAccepted(t, f)
	requireNoLeak(t, f, model)
}
