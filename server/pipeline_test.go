package server_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/pipeline/pipelinetest"
	"github.com/fapo-dev/fapo/server"
)

// newPipelineHarness is an in-process MCP client over the hotpotqa-python
// example: a tenant whose chain is its own Python program.
func newPipelineHarness(t *testing.T, edit func(string) string) (*harness, *pipelinetest.Fixture) {
	t.Helper()
	f := pipelinetest.New(t, edit)
	ws, err := loop.Open(f.Dir, loop.Options{Home: f.Home, Getenv: func(string) string { return "" }})
	require.NoError(t, err)
	t.Cleanup(func() { ws.Close() })
	c, err := client.NewInProcessClient(server.New(ws, server.Options{Version: "test"}))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	require.NoError(t, c.Start(ctx))
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	init.Params.ClientInfo = mcp.Implementation{Name: "fapo-test", Version: "1"}
	_, err = c.Initialize(ctx, init)
	require.NoError(t, err)
	return &harness{c: c, ws: ws}, f
}

const pyTenant = pipelinetest.Tenant

// TestPipelineSessionOverMCP is a session on the external pipeline as an
// agent runs it, through the MCP tools: a train evaluation whose
// attribution reads the steps the program reported (format failures rooted
// at its parse step, retrieval misses at its retrieve step), inspect_cases
// showing those steps with the messages fapo's endpoint saw, an oracle
// replay of retrieve through the program's override, then a prompt change,
// its review and compare, and the incumbent moves.
func TestPipelineSessionOverMCP(t *testing.T) {
	h, _ := newPipelineHarness(t, nil)
	st := h.mustCall(t, "start_session", map[string]any{"tenant": pyTenant})
	require.Equal(t, "v0000", st["incumbent"])
	ev := h.mustCall(t, "evaluate", map[string]any{"tenant": pyTenant, "split": "train"})
	runID := ev["run"].(string)
	var stepIDs []string
	for _, s := range ev["steps"].([]any) {
		m := s.(map[string]any)
		stepIDs = append(stepIDs, m["step_id"].(string)+":"+m["kind"].(string))
	}
	require.Equal(t, []string{"retrieve:retrieve", "reason:llm", "answer:llm", "final:parse"}, stepIDs)

	att := h.mustCall(t, "attribute", map[string]any{"tenant": pyTenant, "run": runID})
	roots := map[string]string{}
	for _, c := range att["clusters"].([]any) {
		m := c.(map[string]any)
		roots[m["class"].(string)] = m["root_step"].(string)
	}
	require.Equal(t, map[string]string{"format": "final", "retrieval": "retrieve"}, roots)
	require.Equal(t, "format", att["dominant"].(map[string]any)["class"])
	var missed string
	for _, f := range att["failures"].([]any) {
		m := f.(map[string]any)
		if m["class"] == "retrieval" {
			missed = m["case_id"].(string)
			require.Contains(t, m["evidence"], "missed gold evidence")
		}
	}
	require.NotEmpty(t, missed)

	page := h.mustCall(t, "inspect_cases", map[string]any{"tenant": pyTenant, "run": runID, "case_ids": []string{missed}})
	cs := page["cases"].([]any)
	require.Len(t, cs, 1)
	steps := cs[0].(map[string]any)["steps"].([]any)
	require.Len(t, steps, 4)
	reason := steps[1].(map[string]any)
	require.Equal(t, "reason", reason["step_id"])
	require.Contains(t, reason["prompt"], "Passages:", "the messages fapo's endpoint saw")
	require.Equal(t, "The passages do not say.", reason["output"])
	require.Equal(t, "I do not know", cs[0].(map[string]any)["final_output"])

	or := h.mustCall(t, "run_oracle", map[string]any{"tenant": pyTenant, "step": "retrieve", "sample": 48})
	require.Positive(t, or["improved"], "gold passages repair the retrieval misses: %v", or)
	require.Zero(t, or["worsened"])
	require.Greater(t, or["score_with"], or["score_without"])

	prop := h.mustCall(t, "propose_variant", map[string]any{"tenant": pyTenant, "level": "prompt",
		"rationale": "answers are sentences; exact match needs the bare entity", "target_cluster": "format @ final",
		"prompts": map[string]any{"answer": "Question: {question}\n\nFacts:\n{facts}\n\nReply 'Answer: ' followed by " + pipelinetest.BarePhrase + " or entity, nothing else.\n"}})
	v := prop["variant"].(string)
	rev := h.mustCall(t, "review_variant", map[string]any{"tenant": pyTenant, "variant": v})
	require.Equal(t, true, rev["verdict"].(map[string]any)["pass"], "%v", rev)
	cmp := h.mustCall(t, "compare", map[string]any{"tenant": pyTenant, "candidate": v})
	require.Equal(t, true, cmp["decision"].(map[string]any)["accept"], "%v", cmp)
	require.Equal(t, v, cmp["new_incumbent"])
	status := h.mustCall(t, "session_status", map[string]any{"tenant": pyTenant})
	require.Equal(t, v, status["incumbent"])
}

// TestPipelineOracleNeedsOverrides: a program that does not declare
// step_overrides cannot have gold stood in for a step; run_oracle refuses
// with what to change, before any model call and without charge.
func TestPipelineOracleNeedsOverrides(t *testing.T) {
	h, f := newPipelineHarness(t, func(s string) string {
		return strings.Replace(s, "step_overrides = true", "step_overrides = false", 1)
	})
	h.mustCall(t, "start_session", map[string]any{"tenant": pyTenant})
	before := f.LLM.Count()
	out, errText := h.call(t, "run_oracle", map[string]any{"tenant": pyTenant, "step": "retrieve"})
	require.Nil(t, out)
	require.Contains(t, errText, "does not accept step overrides")
	require.Contains(t, errText, "step_overrides = true in tenant.toml [pipeline]")
	require.Equal(t, before, f.LLM.Count(), "refused before any model call")
	status := h.mustCall(t, "session_status", map[string]any{"tenant": pyTenant})
	require.EqualValues(t, 0, status["budget_left"].(map[string]any)["usd"])
}

// TestPipelineStructuralProposalsOverMCP: propose_variant refuses a
// structural change to the program's steps, without charging a variant,
// and says why and what may change; flipping a declared switch is a
// structural variant it accepts.
func TestPipelineStructuralProposalsOverMCP(t *testing.T) {
	// Structural is the first level here, so the escalation policy does
	// not stand in front of the refusal under test.
	h, f := newPipelineHarness(t, func(s string) string {
		return strings.Replace(s, `levels = ["prompt", "parameter", "structural"]`, `levels = ["structural"]`, 1)
	})
	h.mustCall(t, "start_session", map[string]any{"tenant": pyTenant})
	chainTOML, err := os.ReadFile(filepath.Join(f.TenantDir(), "chain.toml"))
	require.NoError(t, err)
	left := func() float64 {
		st := h.mustCall(t, "session_status", map[string]any{"tenant": pyTenant})
		return st["budget_left"].(map[string]any)["variants"].(float64)
	}
	start := left()
	for name, edit := range map[string]string{
		"a new step":   string(chainTOML) + "\n[[steps]]\nid = \"verify\"\nkind = \"llm\"\n",
		"a new switch": strings.Replace(string(chainTOML), "reflect = false", "reflect = false\nrerank = true", 1),
		"step kind":    strings.Replace(string(chainTOML), "kind = \"parse\"", "kind = \"tool\"", 1),
	} {
		out, errText := h.call(t, "propose_variant", map[string]any{"tenant": pyTenant, "level": "structural",
			"rationale": "try " + name, "chain_toml": edit})
		require.Nil(t, out, name)
		require.Contains(t, errText, "whose steps fapo cannot change", name)
		require.Contains(t, errText, "only change the switches it declares in chain.toml [switches] (reflect)", name)
		require.Equal(t, start, left(), "%s: a refused proposal is not charged", name)
	}
	prop := h.mustCall(t, "propose_variant", map[string]any{"tenant": pyTenant, "level": "structural",
		"rationale": "a reflection pass turns sentence answers into bare ones", "target_cluster": "none", // no train run is attributed in this test
		"chain_toml": strings.Replace(string(chainTOML), "reflect = false", "reflect = true", 1)})
	require.Equal(t, "structural", prop["level"])
	require.Equal(t, start-1, left())
	// The switch reaches the program: its reflection step runs.
	base := h.mustCall(t, "evaluate", map[string]any{"tenant": pyTenant, "split": "train"})
	flipped := h.mustCall(t, "evaluate", map[string]any{"tenant": pyTenant, "split": "train", "variant": prop["variant"]})
	require.Greater(t, flipped["score_mean"], base["score_mean"])
}
