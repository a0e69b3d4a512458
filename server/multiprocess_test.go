package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/server/servertest"
)

// tryTool calls a tool and returns its refusal or failure as an error, so
// that it can run outside the test goroutine.
func tryTool(c *client.Client, name string, args map[string]any) (map[string]any, error) {
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := c.CallTool(context.Background(), req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if res.IsError {
		return nil, fmt.Errorf("%s refused: %v", name, res.Content)
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	return out, json.Unmarshal(b, &out)
}

// TestTwoServersAndAnEvalOnOneTenant runs what an operator does with Claude
// Code and Codex open on one workspace and `fapo eval` in a terminal: two
// `fapo serve` processes and one `fapo eval` on one tenant at once. All
// complete, there is one session and no duplicate variant, and the budget
// is exactly what was charged.
func TestTwoServersAndAnEvalOnOneTenant(t *testing.T) {
	bin := servertest.Binary(t)
	f := looptest.New(t, nil)
	const token = "multi-process-token-0123456789"
	urls := []string{servertest.StartHTTP(t, bin, f.Dir, f.Home, token), servertest.StartHTTP(t, bin, f.Dir, f.Home, token)}
	clients := make([]*client.Client, len(urls))
	for i, u := range urls {
		c, err := client.NewStreamableHttpClient(u, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}))
		require.NoError(t, err)
		require.NoError(t, c.Start(context.Background()))
		initialize(t, c)
		t.Cleanup(func() { c.Close() })
		clients[i] = c
	}

	prompts := []string{betterPrompt, "Reply with " + looptest.BarePhrase + ", and nothing more.\n\n{{.context.question}}\n"}
	errs := make([]error, len(clients)+1)
	variants := make([]string, len(clients))
	sessions := make([]string, len(clients))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			<-start
			errs[i] = func() error {
				st, err := tryTool(c, "start_session", map[string]any{"tenant": tenant})
				if err != nil {
					return err
				}
				sessions[i], _ = st["session"].(string)
				if _, err := tryTool(c, "evaluate", map[string]any{"tenant": tenant, "split": "train"}); err != nil {
					return err
				}
				prop, err := tryTool(c, "propose_variant", map[string]any{"tenant": tenant, "level": "prompt",
					"rationale": "sentences fail exact match", "prompts": map[string]any{"answer": prompts[i]}})
				if err != nil {
					return err
				}
				variants[i], _ = prop["variant"].(string)
				if _, err := tryTool(c, "review_variant", map[string]any{"tenant": tenant, "variant": variants[i]}); err != nil {
					return err
				}
				_, err = tryTool(c, "evaluate", map[string]any{"tenant": tenant, "split": "validation", "variant": variants[i]})
				return err
			}()
		})
	}
	wg.Go(func() {
		<-start
		cmd := exec.Command(bin, "eval", "--workspace", f.Dir, "--tenant", tenant, "--split", "train")
		cmd.Env = append(os.Environ(), "FAPO_HOME="+f.Home)
		if out, err := cmd.CombinedOutput(); err != nil {
			errs[len(clients)] = fmt.Errorf("fapo eval: %v\n%s", err, out)
		}
	})
	close(start)
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, sessions[0], sessions[1], "both servers work in one session")
	require.NotEqual(t, variants[0], variants[1], "no variant id was handed out twice")

	w, err := loop.Open(f.Dir, loop.Options{Home: f.Home, Getenv: func(string) string { return "" }})
	require.NoError(t, err)
	defer w.Close()
	entries, err := w.Journal(tenant, 0)
	require.NoError(t, err)
	count := map[session.Kind]int{}
	proposed := map[string]bool{}
	for _, e := range entries {
		count[e.Kind]++
		if e.Kind == session.KindProposed {
			require.False(t, proposed[e.Variant], "variant %s proposed twice", e.Variant)
			proposed[e.Variant] = true
		}
	}
	require.Equal(t, 1, count[session.KindSessionStarted])
	require.Equal(t, 2, count[session.KindProposed])
	status, err := w.SessionStatus(tenant)
	require.NoError(t, err)
	require.Len(t, status.Validation, 2, "each candidate's validation result is recorded once")
	require.Equal(t, 6-count[session.KindCharged], status.Budget.ValidationEvals, "the budget left is exactly what was not charged")
	require.Equal(t, 2, count[session.KindCharged], "one charge per validation result")
	t.Logf("two servers and fapo eval: %d journal entries, session %s, variants %v, %d validation evaluations left",
		len(entries), sessions[0], variants, status.Budget.ValidationEvals)
}
