package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/statedb"
	"github.com/fapo-dev/fapo/server/servertest"
)

// TestKilledValidationChargesOnce kills `fapo serve --http` with SIGKILL in
// the middle of a validation evaluation an MCP client asked for, starts it
// again over the same workspace and sealed store, and evaluates again: the
// session has used exactly one validation evaluation and recorded one
// result, and the second run reused the cases the first had finished.
func TestKilledValidationChargesOnce(t *testing.T) {
	bin := servertest.Binary(t)
	f := looptest.New(t, func(s string) string {
		// One case at a time, each slow enough to kill the server mid-run.
		return strings.Replace(s, "concurrency = 8", "concurrency = 1", 1)
	}, fakellm.WithLatency(100*time.Millisecond))
	const token = "crash-token-0123456789abcdef"
	connect := func(url string) *client.Client {
		c, err := client.NewStreamableHttpClient(url, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}))
		require.NoError(t, err)
		require.NoError(t, c.Start(context.Background()))
		initialize(t, c)
		return c
	}

	srv := servertest.StartHTTPServer(t, bin, f.Dir, f.Home, token)
	c := connect(srv.URL)
	st := callTool(t, c, "start_session", map[string]any{"tenant": tenant})
	budget := st["budget_left"].(map[string]any)["validation_evals"].(float64)

	done := make(chan error, 1)
	go func() {
		req := mcp.CallToolRequest{}
		req.Params.Name = "evaluate"
		req.Params.Arguments = map[string]any{"tenant": tenant, "split": "validation"}
		_, err := c.CallTool(context.Background(), req)
		done <- err
	}()
	deadline := time.Now().Add(30 * time.Second)
	for f.LLM.Count() < 4 {
		require.True(t, time.Now().Before(deadline), "the validation run did not start")
		time.Sleep(5 * time.Millisecond)
	}
	srv.Kill(t)
	select {
	case err := <-done:
		require.Error(t, err, "the call died with the server")
	case <-time.After(30 * time.Second):
		t.Fatal("the client did not notice the server died")
	}
	c.Close()
	killedAfter := f.LLM.Count()
	db, err := statedb.Open(f.Home)
	require.NoError(t, err)
	require.NoError(t, session.OpenJournal(db, tenant).Read(func(e session.Entry) error {
		require.NotEqual(t, session.KindCharged, e.Kind, "a killed run charged nothing")
		return nil
	}))
	require.NoError(t, db.Close())

	srv = servertest.StartHTTPServer(t, bin, f.Dir, f.Home, token)
	c = connect(srv.URL)
	defer c.Close()
	ev := callTool(t, c, "evaluate", map[string]any{"tenant": tenant, "split": "validation"})
	cases := int(ev["cases"].(float64))
	require.Contains(t, ev, "score_mean")
	require.NotEqual(t, true, ev["cached"], "the killed run left no result to serve from cache")
	require.Equal(t, budget-1, ev["budget_left"].(map[string]any)["validation_evals"].(float64), "exactly one validation evaluation used")
	require.Less(t, f.LLM.Count()-killedAfter, cases, "the cases finished before the kill were reused")

	status := callTool(t, c, "session_status", map[string]any{"tenant": tenant})
	require.Len(t, status["validation_history"], 1, "one recorded result")
	require.Equal(t, budget-1, status["budget_left"].(map[string]any)["validation_evals"].(float64))
	again := callTool(t, c, "evaluate", map[string]any{"tenant": tenant, "split": "validation"})
	require.Equal(t, true, again["cached"])
	require.Equal(t, budget-1, again["budget_left"].(map[string]any)["validation_evals"].(float64))
	t.Logf("killed after %d model calls; the restarted run made %d more for %d cases", killedAfter, f.LLM.Count()-killedAfter, cases)
}
