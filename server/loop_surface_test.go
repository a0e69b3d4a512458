package server_test

// The loop as an agent meets it (issue 13), one test per numbered problem,
// each written from the tool surface: JSON arguments in, JSON results (or
// the refusal text) out, over stdio with the real fapo binary.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/server/servertest"
)

const tickets = looptest.Tickets

// stdio is a session with the real binary over stdio.
type stdio struct {
	c *client.Client
	f *looptest.Fixture
}

func newStdio(t *testing.T, f *looptest.Fixture) *stdio {
	t.Helper()
	c, err := client.NewStdioMCPClient(servertest.Binary(t), []string{"FAPO_HOME=" + f.Home, "HOME=" + t.TempDir()}, "serve", "--workspace", f.Dir)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	initialize(t, c)
	return &stdio{c: c, f: f}
}

// call returns the structured result, or nil and the refusal text.
func (s *stdio) call(t *testing.T, name string, args map[string]any) (map[string]any, string) {
	t.Helper()
	req := mcp.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = name, args
	res, err := s.c.CallTool(context.Background(), req)
	require.NoError(t, err)
	if res.IsError {
		var text []string
		for _, c := range res.Content {
			if tc, ok := c.(mcp.TextContent); ok {
				text = append(text, tc.Text)
			}
		}
		return nil, strings.Join(text, "\n")
	}
	b, err := json.Marshal(res.StructuredContent)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out))
	return out, ""
}

func (s *stdio) must(t *testing.T, name string, args map[string]any) map[string]any {
	t.Helper()
	out, errText := s.call(t, name, args)
	require.Empty(t, errText, "%s refused", name)
	return out
}

func variantsLeft(t *testing.T, s *stdio, tenantName string) float64 {
	t.Helper()
	st := s.must(t, "session_status", map[string]any{"tenant": tenantName})
	return st["budget_left"].(map[string]any)["variants"].(float64)
}

// startTickets starts a session on the tickets tenant and evaluates the
// baseline on train.
func startTickets(t *testing.T) (*stdio, map[string]any) {
	t.Helper()
	s := newStdio(t, looptest.NewTickets(t, nil))
	s.must(t, "start_session", map[string]any{"tenant": tickets})
	return s, s.must(t, "evaluate", map[string]any{"tenant": tickets, "split": "train"})
}

// Item 1: a parameter proposal with a JSON integer passes review, and its
// diff shows the one changed line, the comment kept.
func TestSurfaceParameterProposalKeepsTypesAndLayout(t *testing.T) {
	s, _ := startTickets(t) // truncation@summarize opens the parameter level
	prop := s.must(t, "propose_variant", map[string]any{"tenant": tickets, "level": "parameter",
		"rationale": "summaries are cut off", "target_cluster": "truncation@summarize",
		"params": map[string]any{"summarize": map[string]any{"max_tokens": 64}}})
	var changed []string
	for _, l := range strings.Split(prop["diff"].(string), "\n") {
		if (strings.HasPrefix(l, "+") || strings.HasPrefix(l, "-")) && !strings.HasPrefix(l, "+++") && !strings.HasPrefix(l, "---") {
			changed = append(changed, l)
		}
	}
	require.Equal(t, []string{"-max_tokens = 24     # short summaries: long tickets get cut off",
		"+max_tokens = 64     # short summaries: long tickets get cut off"}, changed)
	rev := s.must(t, "review_variant", map[string]any{"tenant": tickets, "variant": prop["variant"]})
	require.Equal(t, true, rev["verdict"].(map[string]any)["pass"], "%v", rev["verdict"])
	got := s.must(t, "get_variant", map[string]any{"tenant": tickets, "variant": prop["variant"]})
	require.Contains(t, got["files"].(map[string]any)["chain.toml"], "# chain.toml — two steps")

	_, errText := s.call(t, "propose_variant", map[string]any{"tenant": tickets, "level": "parameter", "rationale": "x",
		"params": map[string]any{"summarize": map[string]any{"max_tokens": 6.5}}})
	require.Contains(t, errText, `params["summarize"]["max_tokens"] is an integer, 6.5; it must be a whole number`)
}

// Item 2: a template typo is refused at propose and costs nothing; a
// prompt that no longer reads its input fails review.
func TestSurfaceBrokenProposalsAreCaughtEarly(t *testing.T) {
	s, _ := startTickets(t)
	before := variantsLeft(t, s, tickets)
	prop, errText := s.call(t, "propose_variant", map[string]any{"tenant": tickets, "level": "prompt", "rationale": "shorter",
		"target_cluster": "format@classify", "prompts": map[string]any{"summarize": "Summarize briefly.\n\nTicket: {{.context.tiket}}\n"}})
	require.Nil(t, prop)
	require.Contains(t, errText, "nothing was written or charged")
	require.Contains(t, errText, "tiket")
	require.Equal(t, before, variantsLeft(t, s, tickets))

	prop = s.must(t, "propose_variant", map[string]any{"tenant": tickets, "level": "prompt", "rationale": "shorter",
		"target_cluster": "none", "prompts": map[string]any{"summarize": "Summarize briefly.\n\nTicket: {ticket}\n"}})
	rev := s.must(t, "review_variant", map[string]any{"tenant": tickets, "variant": prop["variant"]})
	require.Equal(t, false, rev["verdict"].(map[string]any)["pass"])
	require.Contains(t, fmt.Sprint(rev["verdict"]), "reads none of the inputs its parent's version read ({{.context.ticket}})")
}

// Item 3: one vocabulary: attribute's failed is evaluate's failed (scored
// below full marks), errored cases are counted apart, inspect_cases'
// failed filter keeps scored cases only, and every output field is
// described in the schema the client lists.
func TestSurfaceOneVocabulary(t *testing.T) {
	s, ev := startTickets(t)
	att := s.must(t, "attribute", map[string]any{"tenant": tickets, "run": ev["run"]})
	require.Equal(t, ev["failed"], att["failed"])
	require.Equal(t, float64(0), att["errored"])
	require.Equal(t, att["attributed"], att["failed"])
	page := s.must(t, "inspect_cases", map[string]any{"tenant": tickets, "run": ev["run"], "failed": true, "limit": 20})
	require.Equal(t, ev["failed"], page["matched"])

	tl, err := s.c.ListTools(context.Background(), mcp.ListToolsRequest{})
	require.NoError(t, err)
	for _, tool := range tl.Tools {
		b, err := json.Marshal(tool.OutputSchema)
		require.NoError(t, err)
		var schema struct {
			Properties map[string]map[string]any `json:"properties"`
		}
		require.NoError(t, json.Unmarshal(b, &schema))
		for name, p := range schema.Properties {
			require.NotEmpty(t, p["description"], "%s.%s has no description", tool.Name, name)
		}
	}
}

// Item 3, errored: with the model down for one step, evaluate and attribute
// count the same errored cases, and none of them is failed.
func TestSurfaceErroredIsNotFailed(t *testing.T) {
	f := looptest.NewTickets(t, func(s string) string { return strings.Replace(s, "max_retries = 1", "max_retries = 0", 1) },
		fakellm.WithRule(fakellm.LastUserContains("Summarize"), fakellm.Reply{Fault: fakellm.ServerError()}))
	s := newStdio(t, f)
	s.must(t, "start_session", map[string]any{"tenant": tickets})
	ev := s.must(t, "evaluate", map[string]any{"tenant": tickets, "split": "train"})
	require.Equal(t, ev["cases"], ev["errored"])
	require.NotZero(t, ev["errored"])
	require.Equal(t, float64(0), ev["failed"])
	att := s.must(t, "attribute", map[string]any{"tenant": tickets, "run": ev["run"]})
	require.Equal(t, ev["errored"], att["errored"])
	require.Equal(t, float64(0), att["failed"])
	require.Contains(t, ev["next"], "is infrastructure")
	require.NotContains(t, ev["next"], "propose_variant at level")
}

// Item 4: a cluster can be inspected; a cut-off step matches step; unknown
// arguments are refused, naming the valid ones.
func TestSurfaceInspectACluster(t *testing.T) {
	s, ev := startTickets(t)
	dom := ev["attribution"].(map[string]any)["dominant"].(map[string]any)
	require.Equal(t, "truncation", dom["class"])
	page := s.must(t, "inspect_cases", map[string]any{"tenant": tickets, "run": ev["run"], "cluster": "truncation@summarize", "limit": 2})
	require.Equal(t, dom["count"], page["matched"])
	for _, c := range page["cases"].([]any) {
		require.Equal(t, "truncation", c.(map[string]any)["class"])
	}
	byClass := s.must(t, "inspect_cases", map[string]any{"tenant": tickets, "run": ev["run"], "class": "truncation"})
	require.Equal(t, dom["count"], byClass["matched"])
	byStep := s.must(t, "inspect_cases", map[string]any{"tenant": tickets, "run": ev["run"], "step": "summarize"})
	require.Equal(t, dom["count"], byStep["matched"])
	format := s.must(t, "inspect_cases", map[string]any{"tenant": tickets, "run": ev["run"], "cluster": "format @ classify"})
	require.NotZero(t, format["matched"])
	require.Less(t, format["matched"], dom["count"])

	_, errText := s.call(t, "inspect_cases", map[string]any{"tenant": tickets, "run": ev["run"], "bogus": 1})
	require.Contains(t, errText, `argument "bogus" is unknown; the arguments are case_ids, class, cluster, errored, failed, limit, max_score, min_score, offset, run, step, tenant`)
	_, errText = s.call(t, "inspect_cases", map[string]any{"tenant": tickets, "run": ev["run"], "cluster": "reasoning@summarize"})
	require.Contains(t, errText, "use one of truncation@summarize, format@classify")
}

// Item 5: every next follows the state: evaluate's names the cluster
// (the attribution is in its result), compare has one, after an accepted
// compare the new incumbent is to be evaluated, and levels read as words.
func TestSurfaceNextFollowsTheState(t *testing.T) {
	s, ev := startTickets(t)
	next := ev["next"].(string)
	require.Contains(t, next, fmt.Sprintf("inspect_cases run %s cluster truncation@summarize", ev["run"]))
	require.NotContains(t, next, "attribute run")
	require.NotContains(t, next, "[prompt")
	require.Contains(t, next, "open levels: prompt and parameter")

	prop := s.must(t, "propose_variant", map[string]any{"tenant": tickets, "level": "parameter", "rationale": "cut off",
		"target_cluster": "truncation@summarize", "params": map[string]any{"summarize": map[string]any{"max_tokens": 64}}})
	s.must(t, "review_variant", map[string]any{"tenant": tickets, "variant": prop["variant"]})
	cmp := s.must(t, "compare", map[string]any{"tenant": tickets, "candidate": prop["variant"]})
	require.Equal(t, prop["variant"], cmp["new_incumbent"])
	require.Contains(t, fmt.Sprint(cmp["next"]), fmt.Sprintf("%s is the new incumbent and has no train run yet", prop["variant"]))
	st := s.must(t, "session_status", map[string]any{"tenant": tickets})
	require.Contains(t, fmt.Sprint(st["next"]), "evaluate it on train")
	require.NotContains(t, fmt.Sprint(st["next"]), "attribute")
}

// Item 6: a level once unlocked stays unlocked when the dominant cluster
// moves to a cheaper level.
func TestSurfaceLevelsStayUnlocked(t *testing.T) {
	s, _ := startTickets(t)
	// A whole chain.toml, so that this test does not depend on item 1.
	prop := s.must(t, "propose_variant", map[string]any{"tenant": tickets, "level": "parameter", "rationale": "cut off",
		"target_cluster": "truncation@summarize", "chain_toml": strings.Replace(looptest.TicketsChain, "max_tokens = 24", "max_tokens = 64", 1)})
	s.must(t, "review_variant", map[string]any{"tenant": tickets, "variant": prop["variant"]})
	s.must(t, "compare", map[string]any{"tenant": tickets, "candidate": prop["variant"]})
	ev := s.must(t, "evaluate", map[string]any{"tenant": tickets, "split": "train"})
	require.Equal(t, "prompt", ev["attribution"].(map[string]any)["recommended_level"], "the dominant cluster moved to a cheaper level")
	s.must(t, "propose_variant", map[string]any{"tenant": tickets, "level": "parameter", "rationale": "planned before",
		"target_cluster": "none", "params": map[string]any{"classify": map[string]any{"max_tokens": 8}}})
}

// Item 7: attribution compares with the scorer's field: "This ticket is
// about account." for label account is a format failure.
func TestSurfaceAttributionReadsTheScorersField(t *testing.T) {
	_, ev := startTickets(t)
	clusters := ev["attribution"].(map[string]any)["clusters"].([]any)
	var names []string
	for _, c := range clusters {
		c := c.(map[string]any)
		names = append(names, fmt.Sprintf("%s@%s", c["class"], c["root_step"]))
	}
	require.Equal(t, []string{"truncation@summarize", "format@classify"}, names)
}

// Item 8: the playbook is a resource too, the instructions say how each
// client reaches it, and propose_variant's description gives the template
// syntax.
func TestSurfacePlaybookAndSyntaxReachEveryClient(t *testing.T) {
	f := looptest.NewTickets(t, nil)
	c, err := client.NewStdioMCPClient(servertest.Binary(t), []string{"FAPO_HOME=" + f.Home, "HOME=" + t.TempDir()}, "serve", "--workspace", f.Dir)
	require.NoError(t, err)
	defer c.Close()
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	init.Params.ClientInfo = mcp.Implementation{Name: "fapo-e2e", Version: "1"}
	res, err := c.Initialize(context.Background(), init)
	require.NoError(t, err)
	require.Contains(t, res.Instructions, "fapo://playbook/<tenant>")
	require.Contains(t, res.Instructions, "Codex")
	rr := mcp.ReadResourceRequest{}
	rr.Params.URI = "fapo://playbook/" + tickets
	read, err := c.ReadResource(context.Background(), rr)
	require.NoError(t, err)
	text := read.Contents[0].(mcp.TextResourceContents).Text
	require.Contains(t, text, "You are optimizing the multi-step LLM pipeline of tenant **tickets**")
	tl, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
	require.NoError(t, err)
	for _, tool := range tl.Tools {
		if tool.Name == "propose_variant" {
			require.Contains(t, tool.Description, "{{.context.FIELD}}")
			require.Contains(t, tool.Description, "{{.steps.STEP.output}}")
			return
		}
	}
	t.Fatal("no propose_variant tool")
}

// Item 9: start_session says what the first compare charges; a
// target_cluster that names no cluster is refused without charge; a
// compare on 12 paired cases says it is weak evidence.
func TestSurfaceChargesAndCautions(t *testing.T) {
	s := newStdio(t, looptest.NewTickets(t, nil))
	started := s.must(t, "start_session", map[string]any{"tenant": tickets})
	require.Contains(t, started["compare_charges"], "the next compare charges 2 validation evaluations")
	ev := s.must(t, "evaluate", map[string]any{"tenant": tickets, "split": "train"})
	before := variantsLeft(t, s, tickets)
	_, errText := s.call(t, "propose_variant", map[string]any{"tenant": tickets, "level": "parameter", "rationale": "cut off",
		"target_cluster": "the long ones", "params": map[string]any{"summarize": map[string]any{"max_tokens": 64}}})
	require.Contains(t, errText, fmt.Sprintf("is not a cluster of the latest train attribution (run %s): name one of truncation@summarize, format@classify, or pass none", ev["run"]))
	require.Equal(t, before, variantsLeft(t, s, tickets))

	prop := s.must(t, "propose_variant", map[string]any{"tenant": tickets, "level": "parameter", "rationale": "cut off",
		"target_cluster": "truncation @ summarize", "params": map[string]any{"summarize": map[string]any{"max_tokens": 64}}})
	s.must(t, "review_variant", map[string]any{"tenant": tickets, "variant": prop["variant"]})
	cmp := s.must(t, "compare", map[string]any{"tenant": tickets, "candidate": prop["variant"]})
	n := cmp["decision"].(map[string]any)["n"].(float64)
	require.Less(t, n, float64(30))
	require.Contains(t, cmp["caution"], fmt.Sprintf("decided on only %v paired validation cases", n))
	require.Equal(t, float64(4), cmp["budget_left"].(map[string]any)["validation_evals"], "the first compare charged both runs, as announced")
	got := s.must(t, "get_variant", map[string]any{"tenant": tickets, "variant": prop["variant"]})
	require.Equal(t, "truncation@summarize", got["target_cluster"])
}
