package clients_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/loop/agenttest"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
)

// TestCodexSandboxKeepsAgentOutOfStore: registered by fapo register codex
// --write, which selects the permission profile "fapo" (the workspace
// sandbox with the sealed store and the sealed source "none"), codex
// exec's shell tool runs cat and ls on the store, on the source and
// through a symlink planted in the workspace: each is refused by the
// sandbox (Codex's bubblewrap on Linux). The fapo server Codex started is
// not sandboxed: it reports the tenant sealed and runs a normal cycle.
func TestCodexSandboxKeepsAgentOutOfStore(t *testing.T) {
	var (
		f        *looptest.Fixture
		canary   string
		manifest string
		source   string
	)
	shell := func(cmd func() string) agenttest.Step {
		return func(string) agenttest.Call {
			return agenttest.Call{Tool: "exec_command", Native: true, Args: map[string]any{"cmd": cmd()}}
		}
	}
	probes := []agenttest.Step{
		shell(func() string { return "cat " + canary + "; cat " + manifest }),
		shell(func() string { return "ls -la " + f.Home + "; ls -R " + f.Home }),
		shell(func() string { return "head -c 2000 " + source }),
		shell(func() string {
			return "ln -s " + f.Home + " store-link; cat store-link/canary.txt; ls store-link/tenants"
		}),
		shell(func() string {
			return "echo forged >> " + filepath.Join(f.Home, "canary.txt") + "; cat " + filepath.Join(f.Home, "canary.txt")
		}),
	}
	list := func(string) agenttest.Call { return agenttest.Call{Tool: "list_tenants", Args: map[string]any{}} }
	script := cycle()
	script.Steps = append(append(append([]agenttest.Step{}, probes...), list), script.Steps...)
	model := agenttest.New(script)
	defer model.Close()

	codex, fx, env := codexSetup(t, model)
	f = fx
	var secrets []string
	canary, secrets = storeSecrets(t, f)
	store := dataset.OpenStore(f.Home)
	manifest = store.ManifestPath(looptest.Tenant)
	m, err := store.Manifest(looptest.Tenant)
	require.NoError(t, err)
	source = m.Source.Path

	events := runCodex(t, codex, f, env, "Look at the store, then optimize tenant capitals.")
	results := model.Results()
	if len(results) == 0 {
		if reqs := model.Requests(); len(reqs) > 0 {
			var req struct {
				Tools []json.RawMessage `json:"tools"`
			}
			_ = json.Unmarshal(reqs[0].Body, &req)
			for _, tl := range req.Tools {
				t.Logf("tool offered: %.300s", tl)
			}
		}
	}
	require.Len(t, results, len(probes)+1+len(cycleTools), "events: %v\nerrors: %v", events, model.Errors())
	for i, r := range results[:len(probes)] {
		t.Logf("probe %d → %q", i, r.Text)
		for _, s := range append(secrets, f.HeldOutMarkers...) {
			require.NotContains(t, r.Text, s, "probe %d leaked store content: %s", i, r.Text)
		}
	}
	require.Contains(t, results[0].Text, "Permission denied", "the sandbox refuses cat of the store")
	b, err := os.ReadFile(canary)
	require.NoError(t, err)
	require.NotContains(t, string(b), "forged", "the agent's shell wrote into the store")

	listed := results[len(probes)]
	require.Contains(t, listed.Text, `"sealed":true`, "the unsandboxed fapo server found the sealed store: %s", listed.Text)
	var names []string
	for _, c := range mcpToolCalls(events) {
		require.Equal(t, "completed", c["status"], "%v", c)
		names = append(names, c["tool"].(string))
	}
	require.Equal(t, append([]string{"list_tenants"}, cycleTools...), names)
	require.Empty(t, model.Errors())
	requireAccepted(t, f)
	requireNoLeak(t, f, model)
	for _, s := range secrets[:3] {
		require.NotContains(t, model.Bodies(), s, "store content reached the agent's model")
	}
}
