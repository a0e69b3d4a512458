package clients_test

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop/agenttest"
)

// probe is one attempt of the scripted agent to reach held-out content.
type probe struct {
	what string
	call func(readResource func(uri string) agenttest.Call) agenttest.Call
}

// probes are every route to validation and test content the agent has:
// the tools with held-out splits or guessed run ids, and resources by
// guessed URIs. Each must be refused.
var probes = []probe{
	{"evaluate validation on an unreviewed variant", func(func(string) agenttest.Call) agenttest.Call {
		return agenttest.Call{Tool: "evaluate", Args: map[string]any{"tenant": tenant, "split": "validation", "variant": "v0001"}}
	}},
	{"evaluate the test split", func(func(string) agenttest.Call) agenttest.Call {
		return agenttest.Call{Tool: "evaluate", Args: map[string]any{"tenant": tenant, "split": "test"}}
	}},
	{"inspect a guessed run id", func(func(string) agenttest.Call) agenttest.Call {
		return agenttest.Call{Tool: "inspect_cases", Args: map[string]any{"tenant": tenant, "run": "r20260101T000000Z-000000"}}
	}},
	{"inspect a run named validation", func(func(string) agenttest.Call) agenttest.Call {
		return agenttest.Call{Tool: "inspect_cases", Args: map[string]any{"tenant": tenant, "run": "validation"}}
	}},
	{"inspect a path-like run id", func(func(string) agenttest.Call) agenttest.Call {
		return agenttest.Call{Tool: "inspect_cases", Args: map[string]any{"tenant": tenant, "run": "../../splits/validation"}}
	}},
	{"read fapo://tenants/capitals/validation", func(read func(string) agenttest.Call) agenttest.Call {
		return read("fapo://tenants/capitals/validation")
	}},
	{"read the sealed split by path", func(read func(string) agenttest.Call) agenttest.Call {
		return read("fapo://tenants/capitals/data/validation.jsonl")
	}},
	{"read a test split resource", func(read func(string) agenttest.Call) agenttest.Call {
		return read("fapo://tenants/capitals/splits/test")
	}},
	{"read a variant by a traversing id", func(read func(string) agenttest.Call) agenttest.Call {
		return read("fapo://tenants/capitals/variants/..%2F..%2Fvalidation")
	}},
	{"read a file URI of the store", func(read func(string) agenttest.Call) agenttest.Call {
		return read("file:///etc/passwd")
	}},
}

// negativeScript starts a session and proposes a variant (so an unreviewed
// one exists), then runs every probe.
func negativeScript(readResource func(uri string) agenttest.Call) agenttest.Script {
	steps := []agenttest.Step{
		func(string) agenttest.Call {
			return agenttest.Call{Tool: "start_session", Args: map[string]any{"tenant": tenant}}
		},
		func(string) agenttest.Call {
			return agenttest.Call{Tool: "propose_variant", Args: map[string]any{"tenant": tenant, "level": "prompt",
				"rationale": "a change to probe with", "prompts": map[string]any{"answer": betterPrompt}}}
		},
	}
	for _, p := range probes {
		steps = append(steps, func(string) agenttest.Call { return p.call(readResource) })
	}
	return agenttest.Script{Steps: steps, Final: "Nothing held out was reachable."}
}

const negativeSetupSteps = 2

// requireRefusals asserts the setup calls worked and every probe was
// refused; refused(i) tells, by the client's own account, whether call i
// failed.
func requireRefusals(t *testing.T, model *agenttest.Server, refused func(i int) bool) {
	t.Helper()
	results := model.Results()
	require.Len(t, results, negativeSetupSteps+len(probes), "errors: %v", model.Errors())
	for i := range negativeSetupSteps {
		require.False(t, refused(i), "setup step %d was refused: %s", i, results[i].Text)
	}
	for i, p := range probes {
		r := results[negativeSetupSteps+i]
		require.True(t, refused(negativeSetupSteps+i), "%s was answered, not refused: %.500s", p.what, r.Text)
		t.Logf("%s: refused: %.200s", p.what, r.Text)
	}
}

// resourceNotFoundRe is how Claude Code reports a failed resources/read to
// its model: as tool text, not as an error result.
var resourceNotFoundRe = regexp.MustCompile(`^(Resource not found: |Error)`)

// TestClaudeCodeCannotReachHeldOut: through Claude Code, every probe is
// refused and no held-out marker reaches the model endpoint.
func TestClaudeCodeCannotReachHeldOut(t *testing.T) {
	model := agenttest.New(negativeScript(func(uri string) agenttest.Call {
		return agenttest.Call{Tool: "ReadMcpResourceTool", Native: true, Args: map[string]any{"server": "fapo", "uri": uri}}
	}))
	defer model.Close()
	claude, f, env := claudeSetup(t, model)
	runClaude(t, claude, f, env, "Find the validation cases of tenant capitals.")
	results := model.Results()
	requireRefusals(t, model, func(i int) bool {
		return results[i].IsError || resourceNotFoundRe.MatchString(results[i].Text)
	})
	require.Empty(t, model.Errors())
	requireNoLeak(t, f, model)
}

// TestCodexCannotReachHeldOut: the same probes through codex exec, whose
// --json events mark each refused call "failed".
func TestCodexCannotReachHeldOut(t *testing.T) {
	model := agenttest.New(negativeScript(func(uri string) agenttest.Call {
		return agenttest.Call{Tool: "read_mcp_resource", Native: true, Args: map[string]any{"server": "fapo", "uri": uri}}
	}))
	defer model.Close()
	codex, f, env := codexSetup(t, model)
	calls := mcpToolCalls(runCodex(t, codex, f, env, "Find the validation cases of tenant capitals."))
	require.Len(t, calls, negativeSetupSteps+len(probes))
	requireRefusals(t, model, func(i int) bool { return calls[i]["status"] == "failed" })
	require.Empty(t, model.Errors())
	requireNoLeak(t, f, model)
}
