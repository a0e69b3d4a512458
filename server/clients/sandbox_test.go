package clients_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/loop/agenttest"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
)

// probeBubblewrap skips, loudly, where bubblewrap cannot run: Claude Code's
// Linux sandbox is bubblewrap, and with failIfUnavailable it refuses Bash
// rather than running it unsandboxed, so there is nothing to test.
func probeBubblewrap(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"bwrap", "socat"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s not installed: Claude Code's Bash sandbox needs bubblewrap and socat (apt-get install bubblewrap socat; .ci/run installs them)", tool)
		}
	}
	if out, err := exec.Command("bwrap", "--ro-bind", "/", "/", "true").CombinedOutput(); err != nil {
		t.Skipf("SKIP: bubblewrap cannot run here (bwrap --ro-bind / / true: %v: %s): the sandbox test needs user namespaces", err, strings.TrimSpace(string(out)))
	}
}

// storeSecrets plants a canary in the sealed store and returns the strings
// that must never come back from the agent's own tools: the canary, the
// manifest's hashes, and the store's file names.
func storeSecrets(t *testing.T, f *looptest.Fixture) (canaryPath string, secrets []string) {
	t.Helper()
	b := make([]byte, 12)
	_, err := rand.Read(b)
	require.NoError(t, err)
	canary := "FAPO-CANARY-" + hex.EncodeToString(b)
	canaryPath = filepath.Join(f.Home, "canary.txt")
	require.NoError(t, os.WriteFile(canaryPath, []byte(canary+"\n"), 0o600))
	m, err := dataset.OpenStore(f.Home).Manifest(looptest.Tenant)
	require.NoError(t, err)
	return canaryPath, []string{canary, m.Source.SHA256, m.TrainSHA256, "validation.jsonl.enc", "test.jsonl.enc"}
}

// TestClaudeCodeSandboxKeepsAgentOutOfStore: registered by fapo register
// claude --write, Claude Code's agent is explicitly allowed its Read and
// Bash tools, and a scripted agent uses them on the sealed store, on the
// source file sealed into it, through a symlink it planted in the
// workspace, and on the settings that hold the guard. Nothing comes back:
// the deny rules stop the Read tool, the Bash sandbox (bubblewrap) hides
// the store from the shell. The fapo server Claude Code started is not
// sandboxed: it reports the tenant sealed and then runs a normal cycle.
func TestClaudeCodeSandboxKeepsAgentOutOfStore(t *testing.T) {
	probeBubblewrap(t)
	var (
		f        *looptest.Fixture
		canary   string
		secrets  []string
		manifest string
		source   string
	)
	bash := func(cmd string) agenttest.Step {
		return func(string) agenttest.Call {
			return agenttest.Call{Tool: "Bash", Native: true, Args: map[string]any{"command": cmd, "description": "look around"}}
		}
	}
	read := func(path func() string) agenttest.Step {
		return func(string) agenttest.Call {
			return agenttest.Call{Tool: "Read", Native: true, Args: map[string]any{"file_path": path()}}
		}
	}
	// The paths exist only once the fixture does: the steps read them late.
	probes := []agenttest.Step{
		func(string) agenttest.Call { return bash("cat " + canary + "; cat " + manifest)("") },
		func(string) agenttest.Call { return bash("ls -la " + f.Home + "; ls -R " + f.Home)("") },
		func(string) agenttest.Call { return bash("cat " + source + " | head -c 2000")("") },
		func(string) agenttest.Call {
			return bash("ln -s " + f.Home + " store-link && cat store-link/canary.txt; ls store-link/tenants")("")
		},
		func(string) agenttest.Call {
			return bash(`echo '{"sandbox":{"enabled":false}}' > .claude/settings.json; cat .claude/settings.json | head -c 300`)("")
		},
		read(func() string { return canary }),
		read(func() string { return manifest }),
		read(func() string { return source }),
		read(func() string { return filepath.Join(f.Dir, "store-link", "canary.txt") }),
	}
	list := func(string) agenttest.Call {
		return agenttest.Call{Tool: "list_tenants", Args: map[string]any{}}
	}
	script := cycle()
	script.Steps = append(append(append([]agenttest.Step{}, probes...), list), script.Steps...)
	model := agenttest.New(script)
	defer model.Close()

	claude, fx, env := claudeSetup(t, model)
	f = fx
	canary, secrets = storeSecrets(t, f)
	manifest = dataset.OpenStore(f.Home).ManifestPath(looptest.Tenant)
	m, err := dataset.OpenStore(f.Home).Manifest(looptest.Tenant)
	require.NoError(t, err)
	source = m.Source.Path
	before, err := os.ReadFile(filepath.Join(f.Dir, ".claude", "settings.json"))
	require.NoError(t, err)
	var settings map[string]any
	require.NoError(t, json.Unmarshal(before, &settings))
	require.Equal(t, true, settings["sandbox"].(map[string]any)["enabled"], "fapo register claude --write turned the sandbox on")

	out, errs, err := run(t, 4*time.Minute, f.Dir, env, claude, "-p", "Look at the store, then optimize tenant capitals.",
		"--allowedTools", "mcp__fapo,Read,Bash", "--output-format", "stream-json", "--verbose")
	require.NoError(t, err, "claude -p: stdout:\n%s\nstderr:\n%s", out, errs)

	results := model.Results()
	require.Len(t, results, len(probes)+1+len(cycleTools), "stream:\n%s\nerrors: %v", out, model.Errors())
	for i, r := range results[:len(probes)] {
		t.Logf("probe %d → %q", i, r.Text)
		for _, s := range append(secrets, f.HeldOutMarkers...) {
			require.NotContains(t, r.Text, s, "probe %d leaked store content: %s", i, r.Text)
		}
	}
	// What bubblewrap answers for a masked directory, and what the deny
	// rules answer for the Read tool: the probes ran and were refused.
	require.Contains(t, results[0].Text, "No such file or directory", "the sandbox hides the store from cat")
	require.Contains(t, results[5].Text, "denied", "a deny rule refuses the Read tool")
	after, err := os.ReadFile(filepath.Join(f.Dir, ".claude", "settings.json"))
	require.NoError(t, err)
	require.Equal(t, string(before), string(after), "the agent's shell rewrote the settings that hold the sandbox")

	// The server Claude Code started is outside the sandbox: it reads the store.
	listed := results[len(probes)]
	require.False(t, listed.IsError, listed.Text)
	require.Contains(t, listed.Text, `"sealed":true`, "the unsandboxed fapo server found the sealed store: %s", listed.Text)
	for i, r := range results[len(probes)+1:] {
		require.False(t, r.IsError, "%s was refused: %s", cycleTools[i], r.Text)
	}
	require.Empty(t, model.Errors())
	requireAccepted(t, f)
	requireNoLeak(t, f, model)
	for _, s := range secrets[:3] {
		require.NotContains(t, model.Bodies(), s, "store content reached the agent's model")
	}
}
