package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/server"
)

const tenant = looptest.Tenant

// harness is an in-process MCP client over a sealed fixture workspace.
type harness struct {
	f  *looptest.Fixture
	c  *client.Client
	ws *loop.Workspace // for what only the operator does (fapo session unlock)
	// seen collects the text of every response and error, for the canary
	// assertions.
	mu   sync.Mutex
	seen strings.Builder
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	f := looptest.New(t, nil)
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
	res, err := c.Initialize(ctx, init)
	require.NoError(t, err)
	require.Contains(t, res.Instructions, "compare")
	return &harness{f: f, c: c, ws: ws}
}

func (h *harness) record(s string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.seen.WriteString(s)
	h.seen.WriteByte('\n')
}

// call invokes a tool and returns its structured result decoded into a map,
// and whether the tool reported an error (with its text).
func (h *harness) call(t *testing.T, name string, args any) (map[string]any, string) {
	t.Helper()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := h.c.CallTool(context.Background(), req)
	if err != nil {
		h.record(err.Error())
		return nil, err.Error()
	}
	var text strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			text.WriteString(tc.Text)
		}
	}
	h.record(text.String())
	if res.IsError {
		return nil, text.String()
	}
	b, err := json.Marshal(res.StructuredContent)
	require.NoError(t, err)
	h.record(string(b))
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out))
	return out, ""
}

func (h *harness) mustCall(t *testing.T, name string, args any) map[string]any {
	t.Helper()
	out, errText := h.call(t, name, args)
	require.Empty(t, errText, "%s refused", name)
	return out
}

func (h *harness) readResource(t *testing.T, uri string) (string, error) {
	req := mcp.ReadResourceRequest{}
	req.Params.URI = uri
	res, err := h.c.ReadResource(context.Background(), req)
	if err != nil {
		h.record(err.Error())
		return "", err
	}
	var b strings.Builder
	for _, c := range res.Contents {
		if tc, ok := c.(mcp.TextResourceContents); ok {
			b.WriteString(tc.Text)
		}
	}
	h.record(b.String())
	return b.String(), nil
}

func (h *harness) getPrompt(t *testing.T, name string, args map[string]string) (string, error) {
	req := mcp.GetPromptRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := h.c.GetPrompt(context.Background(), req)
	if err != nil {
		h.record(err.Error())
		return "", err
	}
	var b strings.Builder
	for _, m := range res.Messages {
		if tc, ok := m.Content.(mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	h.record(b.String())
	return b.String(), nil
}

const betterPrompt = "Answer with " + looptest.BarePhrase + ", nothing else.\n\n{{.context.question}}\n"

// runCycle drives one optimization cycle through the tools and returns the
// train run id and the accepted variant.
func (h *harness) runCycle(t *testing.T) (string, string) {
	t.Helper()
	tenants := h.mustCall(t, "list_tenants", map[string]any{})
	require.Contains(t, fmt.Sprint(tenants["tenants"]), tenant)

	st := h.mustCall(t, "start_session", map[string]any{"tenant": tenant})
	require.Equal(t, "v0000", st["incumbent"])
	require.NotNil(t, st["budget_left"])

	ev := h.mustCall(t, "evaluate", map[string]any{"tenant": tenant, "split": "train"})
	runID := ev["run"].(string)
	require.NotEmpty(t, runID)
	require.NotNil(t, ev["budget_left"], "every response carries the budget left")

	require.NotNil(t, ev["attribution"], "train evaluations carry the attribution summary")
	att := h.mustCall(t, "attribute", map[string]any{"tenant": tenant, "run": runID})
	require.Equal(t, "format", att["dominant"].(map[string]any)["class"])

	page := h.mustCall(t, "inspect_cases", map[string]any{"tenant": tenant, "run": runID, "failed": true, "limit": 2})
	require.Len(t, page["cases"], 2)

	prop := h.mustCall(t, "propose_variant", map[string]any{"tenant": tenant, "level": "prompt",
		"rationale": "answers are sentences; the scorer wants the bare city", "target_cluster": "format @ answer",
		"prompts": map[string]any{"answer": betterPrompt}})
	v := prop["variant"].(string)

	rev := h.mustCall(t, "review_variant", map[string]any{"tenant": tenant, "variant": v})
	require.Equal(t, true, rev["verdict"].(map[string]any)["pass"], "%v", rev)

	cmp := h.mustCall(t, "compare", map[string]any{"tenant": tenant, "candidate": v})
	require.Equal(t, v, cmp["new_incumbent"])
	require.Equal(t, true, cmp["decision"].(map[string]any)["accept"])

	gv := h.mustCall(t, "get_variant", map[string]any{"tenant": tenant, "variant": v})
	require.Contains(t, fmt.Sprint(gv["files"]), looptest.BarePhrase)
	diff := h.mustCall(t, "diff_variants", map[string]any{"tenant": tenant, "from": "v0000", "to": v})
	require.Contains(t, diff["diff"], "+Answer with only the city name")

	status := h.mustCall(t, "session_status", map[string]any{"tenant": tenant})
	require.Equal(t, v, status["incumbent"])
	return runID, v
}

func TestEveryToolResourceAndPrompt(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	tools, err := h.c.ListTools(ctx, mcp.ListToolsRequest{})
	require.NoError(t, err)
	require.Len(t, tools.Tools, 12)

	_, v := h.runCycle(t)

	text, err := h.readResource(t, "fapo://tenants")
	require.NoError(t, err)
	require.Contains(t, text, tenant)
	text, err = h.readResource(t, "fapo://tenants/"+tenant)
	require.NoError(t, err)
	require.Contains(t, text, "[scorer]")
	text, err = h.readResource(t, "fapo://tenants/"+tenant+"/variants/"+v)
	require.NoError(t, err)
	require.Contains(t, text, looptest.BarePhrase)
	text, err = h.readResource(t, "fapo://tenants/"+tenant+"/journal")
	require.NoError(t, err)
	require.Contains(t, text, `"accepted"`)
	text, err = h.readResource(t, "fapo://tenants/"+tenant+"/scope")
	require.NoError(t, err)
	require.Contains(t, text, "allowed_levels")

	text, err = h.getPrompt(t, "optimize", map[string]string{"tenant": tenant, "target": "composite_score >= 95"})
	require.NoError(t, err)
	require.Contains(t, text, "propose_variant")
	require.Contains(t, text, "composite_score >= 95")
	text, err = h.getPrompt(t, "scaffold", map[string]string{"description": "classify support tickets"})
	require.NoError(t, err)
	require.Contains(t, text, "classify support tickets")
	_, err = h.getPrompt(t, "optimize", map[string]string{})
	require.ErrorContains(t, err, "needs a tenant")
}

// TestCanaryCrawl calls every tool, resource and prompt with valid and
// hostile arguments and asserts that no held-out case content (ids, question
// markers, expected-value markers) appears in any response or error.
func TestCanaryCrawl(t *testing.T) {
	h := newHarness(t)
	runID, v := h.runCycle(t)

	// Reach for held-out content through every route.
	hostile := []string{"validation", "test", "../../..", "/etc/passwd", "%2e%2e", "v0000/../..", strings.Repeat("A", 100_000), "", "\x00", "tenants/capitals", "r20991231T000000Z-000000"}
	// A validation run reports failure classes as counts only.
	val, _ := h.call(t, "evaluate", map[string]any{"tenant": tenant, "split": "validation"})
	require.NotNil(t, val)
	// The REAL held-out run ids, as the journal mirror in the workspace
	// names them, and what an agent can plant with them: a link from
	// runs/ into the sealed store, and a copy of a real train run under a
	// fresh id. Each tool that takes a run id refuses them all alike.
	held := h.f.HeldOutRuns(t)
	require.NotEmpty(t, held)
	h.f.PlantRunLink(t, held[0])
	planted := h.f.PlantRunCopy(t, runID)
	for _, id := range append([]string{planted, "r20991231T000000Z-000000"}, held...) {
		want := "run " + id + " is not a train run of tenant " + tenant + " recorded by this server: call evaluate with split train for a run id"
		for _, name := range []string{"inspect_cases", "attribute"} {
			args := map[string]any{"tenant": tenant, "run": id}
			if name == "inspect_cases" {
				args["limit"] = 20 // attribute takes no limit: unknown arguments are refused
			}
			out, errText := h.call(t, name, args)
			require.Nil(t, out, "%s answered for run %s", name, id)
			require.Contains(t, errText, want, name)
		}
		h.call(t, "inspect_cases", map[string]any{"tenant": tenant, "run": id, "case_ids": h.f.HeldOutMarkers[:6], "failed": true})
		h.call(t, "attribute", map[string]any{"tenant": tenant, "run": id, "analyze": true})
		h.call(t, "run_oracle", map[string]any{"tenant": tenant, "step": "answer", "run": id})
	}
	hostile = append(hostile, held...)
	for _, split := range []string{"validation", "test", "VALIDATION", "train/../validation", "holdout", ""} {
		h.call(t, "evaluate", map[string]any{"tenant": tenant, "split": split})
		h.call(t, "evaluate", map[string]any{"tenant": tenant, "split": split, "variant": v, "limit": 3})
	}
	for _, bad := range hostile {
		h.call(t, "inspect_cases", map[string]any{"tenant": tenant, "run": bad})
		h.call(t, "inspect_cases", map[string]any{"tenant": bad, "run": runID})
		h.call(t, "inspect_cases", map[string]any{"tenant": tenant, "run": runID, "case_ids": h.f.HeldOutMarkers[:6], "step": bad})
		h.call(t, "get_variant", map[string]any{"tenant": tenant, "variant": bad})
		h.call(t, "attribute", map[string]any{"tenant": tenant, "run": bad})
		h.call(t, "run_oracle", map[string]any{"tenant": tenant, "step": bad, "variant": bad})
		h.call(t, "diff_variants", map[string]any{"tenant": tenant, "from": bad, "to": v})
		h.call(t, "review_variant", map[string]any{"tenant": tenant, "variant": bad})
		h.call(t, "compare", map[string]any{"tenant": tenant, "candidate": bad})
		h.call(t, "session_status", map[string]any{"tenant": bad})
		h.call(t, "start_session", map[string]any{"tenant": bad})
		h.call(t, "propose_variant", map[string]any{"tenant": tenant, "level": "prompt", "rationale": "x",
			"files": map[string]any{bad: "x"}, "prompts": map[string]any{bad: "x"}})
		h.readResource(t, "fapo://tenants/"+bad)
		h.readResource(t, "fapo://tenants/"+tenant+"/variants/"+bad)
		h.readResource(t, "fapo://tenants/"+bad+"/journal")
		h.readResource(t, "fapo://"+bad)
		h.getPrompt(t, "optimize", map[string]string{"tenant": bad})
	}
	// Malformed argument types.
	for _, name := range []string{"attribute", "run_oracle", "evaluate", "inspect_cases", "propose_variant", "compare", "review_variant", "get_variant", "diff_variants", "start_session", "session_status", "list_tenants"} {
		h.call(t, name, map[string]any{"tenant": 42, "split": []int{1}, "run": map[string]any{"a": 1}, "limit": "many"})
		h.call(t, name, "not an object")
	}
	// The journal, the scope and the session all stay clean.
	h.readResource(t, "fapo://tenants/"+tenant+"/journal")
	h.call(t, "session_status", map[string]any{"tenant": tenant})

	leaked := h.f.LeakedMarkers(h.seen.String())
	require.Empty(t, leaked, "held-out content reached the agent")
	sawTrain := false
	for _, m := range h.f.TrainMarkers {
		sawTrain = sawTrain || strings.Contains(h.seen.String(), m)
	}
	require.True(t, sawTrain, "the crawl saw train content, so the check is live")

	// A proposal that pastes a held-out question is refused by the review
	// gate, and the finding does not quote it.
	prop := h.mustCall(t, "propose_variant", map[string]any{"tenant": tenant, "level": "prompt", "rationale": "paste",
		"prompts": map[string]any{"answer": "Answer with " + looptest.BarePhrase + ".\nExample: " + h.f.HeldOutQuestions[0] + "\n{{.context.question}}\n"}})
	h.seen.Reset()
	rev := h.mustCall(t, "review_variant", map[string]any{"tenant": tenant, "variant": prop["variant"]})
	require.Equal(t, false, rev["verdict"].(map[string]any)["pass"])
	require.Contains(t, fmt.Sprint(rev["verdict"]), "leak suspected in prompts/answer.md")
	require.Empty(t, h.f.LeakedMarkers(h.seen.String()))

	// The answer tables of issue 12: each fails review, and nothing the
	// review or a later refusal says carries held-out content. The
	// proposals themselves hold held-out ids (the agent wrote them), so
	// only what follows each proposal is checked.
	pairs := h.f.HeldOutCapitals(t)
	var caseIDTable, printTable, chunks, conditional strings.Builder
	for _, p := range pairs {
		half := len(p.City) / 2
		fmt.Fprintf(&caseIDTable, "{{if eq .case_id %q}}%s{{end}}\n", p.ID, p.City)
		fmt.Fprintf(&printTable, "{{if eq .case_id %q}}{{print %q %q}}{{end}}\n", p.ID, p.City[:half], p.City[half:])
		fmt.Fprintf(&chunks, "Q: capital of %s? A: %s\n", p.Country, p.City)
		fmt.Fprintf(&conditional, "{{if eq (slice .context.question 23 %d) %q}}Hint: %s{{end}}\n", 23+len(p.Country), p.Country, p.City)
	}
	attacks := []struct{ name, prompt, want string }{
		{"case-id table", caseIDTable.String(), "templates see inputs, not identities"},
		{"print-split case-id table", printTable.String(), "templates see inputs, not identities"},
		{"answer where it is the answer", conditional.String(), "leak suspected"},
		{"7-word chunks", chunks.String(), "leak suspected"},
	}
	for _, a := range attacks {
		prop, errText := h.call(t, "propose_variant", map[string]any{"tenant": tenant, "level": "prompt", "rationale": "reference facts",
			"prompts": map[string]any{"answer": "Answer with " + looptest.BarePhrase + ".\n" + a.prompt + "{{.context.question}}\n"}})
		if strings.Contains(a.name, "case-id") {
			// Refused by propose's dry run, before anything is written or
			// charged; the refusal quotes none of the table.
			require.Nil(t, prop, a.name)
			require.Contains(t, errText, a.want, a.name)
			require.Contains(t, errText, "nothing was written or charged", a.name)
			require.Empty(t, h.f.LeakedMarkers(errText), a.name)
			continue
		}
		require.Empty(t, errText, a.name)
		h.seen.Reset()
		rev := h.mustCall(t, "review_variant", map[string]any{"tenant": tenant, "variant": prop["variant"]})
		require.Equal(t, false, rev["verdict"].(map[string]any)["pass"], a.name)
		require.Contains(t, fmt.Sprint(rev["verdict"]), a.want, a.name)
		h.call(t, "compare", map[string]any{"tenant": tenant, "candidate": prop["variant"]})
		h.call(t, "session_status", map[string]any{"tenant": tenant})
		require.Empty(t, h.f.LeakedMarkers(h.seen.String()), a.name)
		for _, p := range pairs {
			require.NotContains(t, h.seen.String(), "Hint: "+p.City, a.name)
		}
		if a.want != "leak suspected" {
			continue
		}
		// A table of every held-out case locks the session for the operator.
		_, errText = h.call(t, "propose_variant", map[string]any{"tenant": tenant, "level": "prompt", "rationale": "x",
			"prompts": map[string]any{"answer": "Be brief. " + betterPrompt}})
		require.Contains(t, errText, "the session is locked for the operator", a.name)
		status := h.mustCall(t, "session_status", map[string]any{"tenant": tenant})
		require.Contains(t, fmt.Sprint(status["next"]), "locked for the operator", "a locked session's next is the operator's step")
		require.Empty(t, h.f.LeakedMarkers(h.seen.String()), a.name)
		_, err := h.ws.UnlockSession(tenant, "test: the next attack")
		require.NoError(t, err)
	}
}

// TestValidationProgressCarriesCountsOnly reads every progress notification
// of a validation evaluation and of a compare: none carries a score, a mean
// or a failure count, and the message varies only in the count of cases.
func TestValidationProgressCarriesCountsOnly(t *testing.T) {
	f := looptest.New(t, nil)
	ws, err := loop.Open(f.Dir, loop.Options{Home: f.Home, Getenv: func(string) string { return "" }})
	require.NoError(t, err)
	t.Cleanup(func() { ws.Close() })
	c, err := client.NewInProcessClient(server.New(ws, server.Options{}))
	require.NoError(t, err)
	defer c.Close()
	ctx := context.Background()
	require.NoError(t, c.Start(ctx))
	var mu sync.Mutex
	var notes []map[string]any
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method != "notifications/progress" {
			return
		}
		b, err := json.Marshal(n.Params)
		if err != nil {
			return
		}
		var m map[string]any
		if json.Unmarshal(b, &m) == nil {
			mu.Lock()
			notes = append(notes, m)
			mu.Unlock()
		}
	})
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	init.Params.ClientInfo = mcp.Implementation{Name: "t", Version: "1"}
	_, err = c.Initialize(ctx, init)
	require.NoError(t, err)
	call := func(name string, args map[string]any, token string) *mcp.CallToolResult {
		req := mcp.CallToolRequest{}
		req.Params.Name, req.Params.Arguments = name, args
		if token != "" {
			req.Params.Meta = &mcp.Meta{ProgressToken: token}
		}
		res, err := c.CallTool(ctx, req)
		require.NoError(t, err)
		require.False(t, res.IsError, "%s: %v", name, res.Content)
		return res
	}
	call("start_session", map[string]any{"tenant": tenant}, "")
	call("evaluate", map[string]any{"tenant": tenant, "split": "validation"}, "val")
	prop := call("propose_variant", map[string]any{"tenant": tenant, "level": "prompt", "rationale": "bare answers",
		"prompts": map[string]any{"answer": betterPrompt}}, "")
	v := prop.StructuredContent.(map[string]any)["variant"].(string)
	call("review_variant", map[string]any{"tenant": tenant, "variant": v}, "")
	call("compare", map[string]any{"tenant": tenant, "candidate": v}, "cmp")

	counts := regexp.MustCompile(`^(evaluate validation|compare on validation): \d+ cases done$`)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		done := map[string]bool{}
		for _, n := range notes {
			if n["progress"] == n["total"] {
				done[fmt.Sprint(n["progressToken"])] = true
			}
		}
		return done["val"] && done["cmp"]
	}, 5*time.Second, 10*time.Millisecond, "the last notification of each call arrives")
	mu.Lock()
	defer mu.Unlock()
	perToken := map[string]int{}
	for _, n := range notes {
		perToken[fmt.Sprint(n["progressToken"])]++
	}
	require.GreaterOrEqual(t, perToken["val"], 2)
	require.LessOrEqual(t, perToken["val"], 11, "a held-out run reports every tenth of its cases, not every case")
	for _, n := range notes {
		for k := range n {
			require.Contains(t, []string{"progressToken", "progress", "total", "message"}, k, "a progress notification carries only counts: %v", n)
		}
		require.Regexp(t, counts, n["message"], "the message varies only in the count")
	}
}

// TestEvaluateSendsProgressAndStopsOnCancel: a client that asks for
// progress gets notifications, and cancelling the call stops the run
// promptly, keeping what completed.
func TestEvaluateSendsProgressAndStopsOnCancel(t *testing.T) {
	f := looptest.New(t, nil, fakellm.WithLatency(150*time.Millisecond))
	ws, err := loop.Open(f.Dir, loop.Options{Home: f.Home, Getenv: func(string) string { return "" }})
	require.NoError(t, err)
	t.Cleanup(func() { ws.Close() })
	c, err := client.NewInProcessClient(server.New(ws, server.Options{}))
	require.NoError(t, err)
	defer c.Close()
	ctx := context.Background()
	require.NoError(t, c.Start(ctx))
	var progress atomic.Int64
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		if n.Method == "notifications/progress" {
			progress.Add(1)
		}
	})
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	init.Params.ClientInfo = mcp.Implementation{Name: "t", Version: "1"}
	_, err = c.Initialize(ctx, init)
	require.NoError(t, err)
	req := mcp.CallToolRequest{}
	req.Params.Name = "start_session"
	req.Params.Arguments = map[string]any{"tenant": tenant}
	_, err = c.CallTool(ctx, req)
	require.NoError(t, err)

	// 10 cases at 150 ms, concurrency 8: progress arrives.
	req.Params.Name = "evaluate"
	req.Params.Arguments = map[string]any{"tenant": tenant, "split": "train", "limit": 10}
	req.Params.Meta = &mcp.Meta{ProgressToken: "p1"}
	res, err := c.CallTool(ctx, req)
	require.NoError(t, err)
	require.False(t, res.IsError)
	require.Eventually(t, func() bool { return progress.Load() > 0 }, 2*time.Second, 10*time.Millisecond, "no progress notification")

	// All 49 cases would take about a second; cancel after 300 ms.
	before := f.LLM.Count()
	cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	req.Params.Arguments = map[string]any{"tenant": tenant, "split": "train"}
	res, err = c.CallTool(cctx, req)
	elapsed := time.Since(start)
	if err == nil {
		require.True(t, res.IsError, "a cancelled evaluation does not report success")
	}
	require.Less(t, elapsed, 5*time.Second, "the call returned without waiting for the whole run")
	time.Sleep(400 * time.Millisecond)
	settled := f.LLM.Count()
	time.Sleep(400 * time.Millisecond)
	require.Equal(t, settled, f.LLM.Count(), "no model calls after cancellation")
	require.Less(t, settled-before, 49, "the run stopped before finishing")
}
