package clients_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop/agenttest"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
)

// resultJSON decodes a tool result as a client reports it to its model:
// Claude Code passes the JSON text, Codex wraps it ("Wall time: …
// Output:\n{…}"). nil when the result holds no JSON object (a refusal).
func resultJSON(text string) map[string]any {
	i := strings.Index(text, "{")
	if i < 0 {
		return nil
	}
	var m map[string]any
	if json.NewDecoder(strings.NewReader(text[i:])).Decode(&m) != nil {
		return nil
	}
	return m
}

// nextText is a result's next field as one string (a list or a string).
func nextText(m map[string]any) string {
	switch n := m["next"].(type) {
	case string:
		return n
	case []any:
		var parts []string
		for _, p := range n {
			parts = append(parts, fmt.Sprint(p))
		}
		return strings.Join(parts, "; ")
	}
	return ""
}

var (
	reReview  = regexp.MustCompile(`review_variant (?:for )?(v\d{4})`)
	reCompare = regexp.MustCompile(`compare (v\d{4}) against`)
	reInspect = regexp.MustCompile(`inspect_cases run (\S+) cluster (\S+)`)
)

// optimizer is a scripted optimizer that decides only from tool results:
// it follows each result's next (review, compare, evaluate, inspect the
// named cluster, stop), and after inspecting a cluster proposes the fix
// its class calls for: more max_tokens for a cut-off step, and for a
// format failure the step's prompt (read with get_variant) asking for the
// bare label. Any refusal ends the session: the test requires none.
func optimizer(tenant string) agenttest.Script {
	return agenttest.Script{Final: "Session over: see the transcript.", Policy: func(results []agenttest.Result) (agenttest.Call, bool) {
		call := func(tool string, args map[string]any) (agenttest.Call, bool) {
			args["tenant"] = tenant
			return agenttest.Call{Tool: tool, Args: args}, true
		}
		if len(results) == 0 {
			return call("start_session", map[string]any{})
		}
		last := resultJSON(results[len(results)-1].Text)
		if last == nil || results[len(results)-1].IsError {
			return agenttest.Call{}, false // refused: stop, the test fails on it
		}
		// A page of inspected cases: propose for its cluster.
		if cases, ok := last["cases"].([]any); ok && len(cases) > 0 {
			c := cases[0].(map[string]any)
			class, step := c["class"].(string), c["root_step"].(string)
			cluster := class + "@" + step
			switch class {
			case "truncation":
				return call("propose_variant", map[string]any{"level": "parameter", "target_cluster": cluster,
					"rationale": fmt.Sprintf("step %s is cut off (finish reason length): give it room", step),
					"params":    map[string]any{step: map[string]any{"max_tokens": 256}}})
			case "format":
				return call("get_variant", map[string]any{"variant": last["variant"]})
			}
			return agenttest.Call{}, false
		}
		// A variant read for its prompt: the format fix.
		if files, ok := last["files"].(map[string]any); ok {
			prev := resultJSON(results[len(results)-2].Text)
			c := prev["cases"].([]any)[0].(map[string]any)
			step := c["root_step"].(string)
			prompt, _ := files["prompts/"+step+".md"].(string)
			if prompt == "" {
				return agenttest.Call{}, false
			}
			return call("propose_variant", map[string]any{"level": "prompt", "target_cluster": "format@" + step,
				"rationale": "the answer holds the label inside a sentence; exact match needs the bare label",
				"prompts":   map[string]any{step: prompt + "Answer with " + looptest.LabelOnlyPhrase + ", one word, nothing else.\n"}})
		}
		next := nextText(last)
		if m := reInspect.FindStringSubmatch(next); m != nil && !strings.Contains(next, "stop and report") {
			return call("inspect_cases", map[string]any{"run": m[1], "cluster": m[2], "limit": 3})
		}
		switch {
		case strings.Contains(next, "stop and report"):
			return agenttest.Call{}, false
		case reReview.MatchString(next):
			return call("review_variant", map[string]any{"variant": reReview.FindStringSubmatch(next)[1]})
		case reCompare.MatchString(next):
			return call("compare", map[string]any{"candidate": reCompare.FindStringSubmatch(next)[1]})
		case strings.Contains(next, "on train"):
			return call("evaluate", map[string]any{"split": "train"})
		}
		return agenttest.Call{}, false
	}}
}

// optimizerTools is the session the optimizer runs on the tickets tenant.
var optimizerTools = []string{"start_session", "evaluate", "inspect_cases", "propose_variant", "review_variant", "compare",
	"evaluate", "inspect_cases", "get_variant", "propose_variant", "review_variant", "compare"}

// requireOptimized checks the session from the transcript: every call
// answered, no refusal, every proposal reviewed, passed and accepted, and
// the last compare meeting the target. The transcript is saved as a CI
// artifact.
func requireOptimized(t *testing.T, client string, model *agenttest.Server, f *looptest.Fixture) {
	t.Helper()
	tr := model.Transcript()
	saveTranscript(t, client, tr)
	var tools []string
	for _, ex := range tr {
		tools = append(tools, ex.Tool)
		m := resultJSON(ex.Result)
		require.False(t, ex.IsError, "%s refused: %s", ex.Tool, ex.Result)
		// Claude Code saves a result over 25k tokens (~50k characters) to a
		// file and shows the model a preview: every result stays under it.
		require.Less(t, len(ex.Result), 50_000, "%s result would be offloaded by Claude Code", ex.Tool)
		require.NotNil(t, m, "%s answered no JSON (refused?): %s", ex.Tool, ex.Result)
		switch ex.Tool {
		case "review_variant":
			require.Equal(t, true, m["verdict"].(map[string]any)["pass"], "a wasted variant: %s", ex.Result)
		case "compare":
			require.Equal(t, true, m["decision"].(map[string]any)["accept"], "a wasted variant: %s", ex.Result)
		}
	}
	require.Equal(t, optimizerTools, tools, "errors: %v", model.Errors())
	final := resultJSON(tr[len(tr)-1].Result)
	require.Equal(t, true, final["target_met"], "the session reached its target")
	require.Equal(t, "v0002", final["new_incumbent"])
	require.Empty(t, model.Errors())
	require.Empty(t, f.LeakedMarkers(model.Bodies()), "held-out content reached the model endpoint")
}

// saveTranscript writes the per-call transcript to $FAPO_TEST_ARTIFACTS
// (set by .ci/run) for the CI run's artifacts, else to the test's log.
func saveTranscript(t *testing.T, client string, tr []agenttest.Exchange) {
	t.Helper()
	var b strings.Builder
	for _, ex := range tr {
		line, err := json.Marshal(ex)
		require.NoError(t, err)
		b.Write(line)
		b.WriteByte('\n')
	}
	dir := os.Getenv("FAPO_TEST_ARTIFACTS")
	if dir == "" {
		t.Logf("FAPO_TEST_ARTIFACTS is not set; transcript of %d calls:\n%s", len(tr), b.String())
		return
	}
	require.NoError(t, os.MkdirAll(dir, 0o755))
	path := filepath.Join(dir, "optimizer-"+client+"-transcript.jsonl")
	require.NoError(t, os.WriteFile(path, []byte(b.String()), 0o644))
	t.Logf("transcript of %d calls saved to %s", len(tr), path)
}

// TestClaudeCodeOptimizerReachesTarget: real Claude Code, driven by the
// scripted optimizer, runs a session on the two-step tickets tenant to its
// target: two proposals, both passed and accepted, nothing refused.
func TestClaudeCodeOptimizerReachesTarget(t *testing.T) {
	model := agenttest.New(optimizer(looptest.Tickets))
	defer model.Close()
	claude, f, env := claudeSetupWith(t, model, func() *looptest.Fixture { return looptest.NewTickets(t, nil) })
	stream := runClaude(t, claude, f, env, "Optimize tenant tickets with the fapo tools.")
	require.Contains(t, stream, "Session over")
	requireOptimized(t, "claude", model, f)
}

// TestCodexOptimizerReachesTarget: the same session through real Codex.
func TestCodexOptimizerReachesTarget(t *testing.T) {
	model := agenttest.New(optimizer(looptest.Tickets))
	defer model.Close()
	codex, f, env := codexSetupWith(t, model, func() *looptest.Fixture { return looptest.NewTickets(t, nil) })
	events := runCodex(t, codex, f, env, "Optimize tenant tickets with the fapo tools.")
	for _, c := range mcpToolCalls(events) {
		require.Equal(t, "completed", c["status"], "%v", c)
	}
	requireOptimized(t, "codex", model, f)
}
