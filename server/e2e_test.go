package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/server/servertest"
)

func initialize(t *testing.T, c *client.Client) {
	t.Helper()
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	init.Params.ClientInfo = mcp.Implementation{Name: "fapo-e2e", Version: "1"}
	_, err := c.Initialize(context.Background(), init)
	require.NoError(t, err)
}

func callTool(t *testing.T, c *client.Client, name string, args map[string]any) map[string]any {
	t.Helper()
	req := mcp.CallToolRequest{}
	req.Params.Name = name
	req.Params.Arguments = args
	res, err := c.CallTool(context.Background(), req)
	require.NoError(t, err)
	if res.IsError {
		t.Fatalf("%s refused: %v", name, res.Content)
	}
	b, err := json.Marshal(res.StructuredContent)
	require.NoError(t, err)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}

// TestStdioSessionWithRealBinary drives the real fapo binary over stdio
// through a whole cycle against the chat-completions test double; the
// incumbent improves.
func TestStdioSessionWithRealBinary(t *testing.T) {
	bin := servertest.Binary(t)
	f := looptest.New(t, nil)
	c, err := client.NewStdioMCPClient(bin, []string{"FAPO_HOME=" + f.Home, "HOME=" + t.TempDir()}, "serve", "--workspace", f.Dir)
	require.NoError(t, err)
	defer c.Close()
	initialize(t, c)

	callTool(t, c, "start_session", map[string]any{"tenant": tenant})
	ev := callTool(t, c, "evaluate", map[string]any{"tenant": tenant, "split": "train"})
	before := ev["score_mean"].(float64)
	page := callTool(t, c, "inspect_cases", map[string]any{"tenant": tenant, "run": ev["run"], "failed": true, "limit": 1})
	require.Len(t, page["cases"], 1)
	prop := callTool(t, c, "propose_variant", map[string]any{"tenant": tenant, "level": "prompt",
		"rationale": "sentences fail exact match", "prompts": map[string]any{"answer": betterPrompt}})
	rev := callTool(t, c, "review_variant", map[string]any{"tenant": tenant, "variant": prop["variant"]})
	require.Equal(t, true, rev["verdict"].(map[string]any)["pass"])
	cmp := callTool(t, c, "compare", map[string]any{"tenant": tenant, "candidate": prop["variant"]})
	require.Equal(t, prop["variant"], cmp["new_incumbent"])
	require.Greater(t, cmp["candidate_score"].(float64), before)
}

// TestHTTPAuthAndConcurrency checks the bearer token and runs 50 concurrent
// clients of session_status and inspect_cases against the real binary.
func TestHTTPAuthAndConcurrency(t *testing.T) {
	bin := servertest.Binary(t)
	f := looptest.New(t, nil)
	token := "e2e-token-0123456789abcdef"
	url := servertest.StartHTTP(t, bin, f.Dir, f.Home, token)

	resp, err := http.Post(url, "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	newClient := func() *client.Client {
		c, err := client.NewStreamableHttpClient(url, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}))
		require.NoError(t, err)
		require.NoError(t, c.Start(context.Background()))
		initialize(t, c)
		return c
	}
	setup := newClient()
	callTool(t, setup, "start_session", map[string]any{"tenant": tenant})
	runID := callTool(t, setup, "evaluate", map[string]any{"tenant": tenant, "split": "train"})["run"]
	setup.Close()

	const clients, callsEach = 50, 4
	var mu sync.Mutex
	var latencies []time.Duration
	var failures []string
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := client.NewStreamableHttpClient(url, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}))
			if err == nil {
				err = c.Start(context.Background())
			}
			if err != nil {
				mu.Lock()
				failures = append(failures, err.Error())
				mu.Unlock()
				return
			}
			defer c.Close()
			init := mcp.InitializeRequest{}
			init.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
			init.Params.ClientInfo = mcp.Implementation{Name: "load", Version: "1"}
			if _, err := c.Initialize(context.Background(), init); err != nil {
				mu.Lock()
				failures = append(failures, err.Error())
				mu.Unlock()
				return
			}
			for j := range callsEach {
				req := mcp.CallToolRequest{}
				if (i+j)%2 == 0 {
					req.Params.Name = "session_status"
					req.Params.Arguments = map[string]any{"tenant": tenant}
				} else {
					req.Params.Name = "inspect_cases"
					req.Params.Arguments = map[string]any{"tenant": tenant, "run": runID, "limit": 3}
				}
				start := time.Now()
				res, err := c.CallTool(context.Background(), req)
				d := time.Since(start)
				mu.Lock()
				latencies = append(latencies, d)
				if err != nil {
					failures = append(failures, err.Error())
				} else if res.IsError {
					failures = append(failures, fmt.Sprint(res.Content))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Empty(t, failures)
	require.Len(t, latencies, clients*callsEach)
	sort.Slice(latencies, func(i, j int) bool { return latencies[i] < latencies[j] })
	p50 := latencies[len(latencies)/2]
	p99 := latencies[len(latencies)*99/100]
	t.Logf("HTTP load: %d clients × %d calls: p50 %v, p99 %v", clients, callsEach, p50, p99)
}
