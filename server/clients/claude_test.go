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

// claudeEnv isolates Claude Code: its own HOME, its model the scripted
// double, no traffic elsewhere, and MCP tools offered directly rather than
// behind the ToolSearch tool.
//
// TMPDIR is private too: the Bash sandbox makes it writable and masks .git
// and .claude in every writable root, and bubblewrap leaves the mount
// points of those masks behind; in the shared /tmp they would make every
// later workspace under /tmp look like a subdirectory of a git repository
// rooted at /tmp, the project Claude Code then keys trust and approval by.
func claudeEnv(home string, f *looptest.Fixture, model *agenttest.Server) []string {
	tmp := filepath.Join(home, "tmp")
	_ = os.MkdirAll(tmp, 0o700)
	return baseEnv(home, f, "TMPDIR="+tmp,
		"ANTHROPIC_BASE_URL="+model.URL(),
		"ANTHROPIC_API_KEY=sk-ant-test",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
		"DISABLE_AUTOUPDATER=1",
		"ENABLE_TOOL_SEARCH=false",
	)
}

// claudeSetup registers fapo with `fapo register claude --write` and
// returns the environment for claude.
func claudeSetup(t *testing.T, model *agenttest.Server) (claude string, f *looptest.Fixture, env []string) {
	t.Helper()
	return claudeSetupWith(t, model, func() *looptest.Fixture { return looptest.New(t, nil) })
}

// claudeSetupWith is claudeSetup on the fixture newFixture builds.
func claudeSetupWith(t *testing.T, model *agenttest.Server, newFixture func() *looptest.Fixture) (claude string, f *looptest.Fixture, env []string) {
	t.Helper()
	claude = clientBin(t, "claude", "@anthropic-ai/claude-code@2.1.330")
	bin := servertest.Binary(t)
	f = newFixture()
	keepTempClean(t)
	ownRepository(t, f.Dir)
	home := t.TempDir()
	env = claudeEnv(home, f, model)
	register(t, bin, "claude", f, env)
	// The one step fapo register leaves to the user: trusting the project
	// (answering claude's trust prompt once) is recorded in ~/.claude.json.
	trust, err := json.Marshal(map[string]any{"projects": map[string]any{f.Dir: map[string]any{"hasTrustDialogAccepted": true}}})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(home, ".claude.json"), trust, 0o600))
	return claude, f, env
}

func runClaude(t *testing.T, claude string, f *looptest.Fixture, env []string, prompt string) string {
	t.Helper()
	out, errs, err := run(t, 4*time.Minute, f.Dir, env, claude, "-p", prompt,
		"--allowedTools", "mcp__fapo", "--output-format", "stream-json", "--verbose")
	require.NoError(t, err, "claude -p: stdout:\n%s\nstderr:\n%s", out, errs)
	return out
}

// TestClaudeCodeCycle: Claude Code, registered by fapo register, lists
// fapo as connected, runs the scripted cycle through fapo's tools, and the
// journal shows the accepted variant.
func TestClaudeCodeCycle(t *testing.T) {
	model := agenttest.New(cycle())
	defer model.Close()
	claude, f, env := claudeSetup(t, model)

	out, errs, err := run(t, 2*time.Minute, f.Dir, env, claude, "mcp", "list")
	require.NoError(t, err, "claude mcp list: %s%s", out, errs)
	require.Regexp(t, `(?m)^fapo: .*Connected`, out)

	stream := runClaude(t, claude, f, env, "Optimize tenant capitals with the fapo tools.")
	results := model.Results()
	require.Len(t, results, len(cycleTools), "stream:\n%s\nerrors: %v", stream, model.Errors())
	for i, r := range results {
		require.False(t, r.IsError, "%s was refused: %s", cycleTools[i], r.Text)
	}
	calls := toolUses(t, stream)
	require.Equal(t, prefixed(cycleTools), calls)
	require.Empty(t, model.Errors())
	requireAccepted(t, f)
	requireNoLeak(t, f, model)
	require.Contains(t, stream, "Cycle done")
}

// TestClaudeCodeSlashCommand: the optimize prompt is a slash command that
// expands to the playbook in what Claude Code sends to its model.
func TestClaudeCodeSlashCommand(t *testing.T) {
	model := agenttest.New(agenttest.Script{Final: "Read the playbook."})
	defer model.Close()
	claude, f, env := claudeSetup(t, model)

	runClaude(t, claude, f, env, "/mcp__fapo__optimize capitals")
	bodies := model.Bodies()
	require.Contains(t, bodies, "Optimize a fapo tenant", "the playbook's title")
	require.Contains(t, bodies, "You are optimizing the multi-step LLM pipeline of tenant **capitals**")
}

func prefixed(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = agenttest.FapoPrefix + n
	}
	return out
}

// toolUses lists the tool_use names in Claude Code's stream-json output.
func toolUses(t *testing.T, stream string) []string {
	t.Helper()
	var names []string
	for _, line := range strings.Split(stream, "\n") {
		var ev struct {
			Type    string `json:"type"`
			Message struct {
				Content []struct {
					Type string `json:"type"`
					Name string `json:"name"`
				} `json:"content"`
			} `json:"message"`
		}
		if json.Unmarshal([]byte(line), &ev) != nil || ev.Type != "assistant" {
			continue
		}
		for _, c := range ev.Message.Content {
			if c.Type == "tool_use" {
				names = append(names, c.Name)
			}
		}
	}
	return names
}

// TestClaudeCodeApproval checks what README says of project approval with
// the pinned Claude Code: after fapo register claude --write alone (no
// trust given), `claude mcp list` reports fapo "Pending approval"; once the
// project is trusted (what accepting claude's trust prompt records in
// ~/.claude.json) the approval register wrote into
// .claude/settings.local.json counts and fapo is connected; and `claude -p`
// connects without either.
func TestClaudeCodeApproval(t *testing.T) {
	claude := clientBin(t, "claude", "@anthropic-ai/claude-code@2.1.330")
	bin := servertest.Binary(t)
	model := agenttest.New(agenttest.Script{Steps: []agenttest.Step{func(string) agenttest.Call {
		return agenttest.Call{Tool: "list_tenants", Args: map[string]any{}}
	}}, Final: "listed"})
	defer model.Close()
	f := looptest.New(t, nil)
	keepTempClean(t)
	ownRepository(t, f.Dir)
	home := t.TempDir()
	env := claudeEnv(home, f, model)
	register(t, bin, "claude", f, env)

	out, errs, err := run(t, 2*time.Minute, f.Dir, env, claude, "mcp", "list")
	require.NoError(t, err, "claude mcp list: %s%s", out, errs)
	require.Regexp(t, `(?m)^fapo: .*Pending approval`, out)

	// An approval in ~/.claude.json's project entry does not count.
	setProject(t, home, f.Dir, "enabledMcpjsonServers", []string{"fapo"})
	out, errs, err = run(t, 2*time.Minute, f.Dir, env, claude, "mcp", "list")
	require.NoError(t, err, "claude mcp list: %s%s", out, errs)
	require.Regexp(t, `(?m)^fapo: .*Pending approval`, out)

	runClaude(t, claude, f, env, "List the tenants.")
	results := model.Results()
	require.Len(t, results, 1, "claude -p called fapo without approval: %v", model.Errors())
	require.Contains(t, results[0].Text, `"sealed":true`)

	// Accepting the trust prompt records this; then register's approval counts.
	setProject(t, home, f.Dir, "hasTrustDialogAccepted", true)
	out, errs, err = run(t, 2*time.Minute, f.Dir, env, claude, "mcp", "list")
	require.NoError(t, err, "claude mcp list: %s%s", out, errs)
	require.Regexp(t, `(?m)^fapo: .*Connected`, out)
}

// setProject sets one key of the project's entry in ~/.claude.json, as
// Claude Code itself records trust and approvals there.
func setProject(t *testing.T, home, dir, key string, value any) {
	t.Helper()
	path := filepath.Join(home, ".claude.json")
	cfg := map[string]any{}
	if b, err := os.ReadFile(path); err == nil {
		require.NoError(t, json.Unmarshal(b, &cfg))
	}
	projects, _ := cfg["projects"].(map[string]any)
	if projects == nil {
		projects = map[string]any{}
		cfg["projects"] = projects
	}
	p, _ := projects[dir].(map[string]any)
	if p == nil {
		p = map[string]any{}
		projects[dir] = p
	}
	p[key] = value
	b, err := json.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o600))
}
