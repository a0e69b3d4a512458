package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/pipeline"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/scoring"
)

// protocolServer is a user's HTTP pipeline: inputs.mode picks how it
// answers. "call" sends the case's prompt to fapo's model endpoint with
// the request's model block; every request is kept for the test.
type protocolServer struct {
	srv         *httptest.Server
	inFlight    atomic.Int32
	maxInFlight atomic.Int32

	mu   sync.Mutex
	reqs []map[string]any
}

func newProtocolServer(t *testing.T, hold time.Duration) *protocolServer {
	ps := &protocolServer{}
	ps.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := ps.inFlight.Add(1)
		defer ps.inFlight.Add(-1)
		for {
			m := ps.maxInFlight.Load()
			if n <= m || ps.maxInFlight.CompareAndSwap(m, n) {
				break
			}
		}
		var req map[string]any
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		ps.mu.Lock()
		ps.reqs = append(ps.reqs, req)
		ps.mu.Unlock()
		time.Sleep(hold)
		in := req["inputs"].(map[string]any)
		q, _ := in["q"].(string)
		out := strings.ToUpper(q)
		switch in["mode"] {
		case "500":
			http.Error(w, "database is down", http.StatusInternalServerError)
			return
		case "slow":
			select {
			case <-time.After(10 * time.Second):
			case <-r.Context().Done():
			}
			return
		case "garbage":
			fmt.Fprint(w, "<html>not the protocol</html>")
			return
		case "call":
			model := req["model"].(map[string]any)
			text, err := chatThrough(model["base_url"].(string), model["api_key"].(string), req["prompts"].(map[string]any)["answer"].(string))
			if err != nil {
				fmt.Fprintf(w, `{"id": %q, "error": %q, "infrastructure": true, "steps": []}`, req["id"], err.Error())
				return
			}
			out = text
		case "probe":
			model := req["model"].(map[string]any)
			var res struct{ Old, Own string }
			if _, err := chatThrough(model["base_url"].(string), in["old_key"].(string), "old key"); err != nil {
				res.Old = err.Error()
			}
			if _, err := chatThrough(model["base_url"].(string), model["api_key"].(string), "own key"); err != nil {
				res.Own = err.Error()
			}
			b, _ := json.Marshal(res)
			out = string(b)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"id": req["id"], "output": out,
			"steps": []map[string]any{{"id": "answer", "kind": "llm", "input": q, "output": out}}})
	}))
	t.Cleanup(ps.srv.Close)
	return ps
}

func (ps *protocolServer) requests() []map[string]any {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return append([]map[string]any(nil), ps.reqs...)
}

// chatThrough is one chat completion at fapo's endpoint; a refusal is an
// error carrying the HTTP status.
func chatThrough(baseURL, key, prompt string) (string, error) {
	body, _ := json.Marshal(map[string]any{"model": "default", "messages": []map[string]string{{"role": "user", "content": prompt}}})
	req, err := http.NewRequest(http.MethodPost, baseURL+"/chat/completions", bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set(pipeline.StepHeader, "answer")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("HTTP %d: %s", resp.StatusCode, b)
	}
	var c struct {
		Choices []struct {
			Message struct{ Content string }
		}
	}
	if err := json.Unmarshal(b, &c); err != nil || len(c.Choices) == 0 {
		return "", fmt.Errorf("not a completion: %s", b)
	}
	return c.Choices[0].Message.Content, nil
}

func runCases(t *testing.T, ch *chain.Chain, m chain.Models, concurrency int, modes ...string) (*run.Summary, map[string]run.CaseResult) {
	t.Helper()
	sc, err := scoring.New(scoring.Spec{Kind: "exact_match"}, scoring.Env{})
	require.NoError(t, err)
	store := run.NewStore(t.TempDir(), false)
	r := &run.Runner{Store: store, Pipeline: ch, Models: m, Scorer: sc}
	sum, err := r.Execute(context.Background(), cases(modes...), run.Options{Tenant: "t", Variant: "v0000", Split: dataset.Train, Concurrency: concurrency})
	require.NoError(t, err)
	byMode := map[string]run.CaseResult{}
	require.NoError(t, store.Cases(sum.RunID, func(cr run.CaseResult) error {
		i := int(cr.CaseID[len(cr.CaseID)-1] - 'a')
		byMode[fmt.Sprintf("%s%d", modes[i], i)] = cr
		return nil
	}))
	return sum, byMode
}

// TestHTTPEndpointFaultsErrorTheirCase: a pipeline behind [pipeline] url
// answers in protocol, fails with a 500, does not answer in time, and
// answers outside the protocol; each failure errors its own case with the
// cause and a message that says what to do, and the good cases are scored.
func TestHTTPEndpointFaultsErrorTheirCase(t *testing.T) {
	ps := newProtocolServer(t, 0)
	ch, _ := loadChain(t, pipeline.Spec{URL: ps.srv.URL, TimeoutSeconds: 0.5, Switches: []string{"reflect"}})
	modes := []string{"ok", "500", "ok", "slow", "ok", "garbage", "ok"}
	sum, byMode := runCases(t, ch, noModels{}, 4, modes...)
	require.Equal(t, len(modes), sum.Cases)
	require.Equal(t, 3, sum.Errored)
	for key, want := range map[string]struct{ cause, msg string }{
		"5001":     {"pipeline: unreachable", "the endpoint answered HTTP 500: database is down"},
		"slow3":    {"pipeline: timeout", "did not answer within 500ms"},
		"garbage5": {"pipeline: malformed answer", "not a JSON object"},
	} {
		cr := byMode[key]
		require.True(t, cr.Errored(), key)
		require.Equal(t, want.cause, cr.Cause, key)
		require.Contains(t, cr.ExecError, want.msg, key)
	}
	for _, key := range []string{"ok0", "ok2", "ok4", "ok6"} {
		cr := byMode[key]
		require.False(t, cr.Errored(), key)
		require.Equal(t, 100.0, cr.Score, key)
		require.Equal(t, "answer", cr.Trace.Steps[0].StepID)
	}
	for _, req := range ps.requests() {
		require.EqualValues(t, pipeline.Protocol, req["protocol"])
		require.NotEmpty(t, req["case_token"])
		require.NotContains(t, fmt.Sprint(req), "id-case", "the endpoint gets the case token, never the case id")
	}
}

// TestHTTPEndpointConcurrencyIsBounded: with eight cases in flight on the
// runner's side, the endpoint never has more than [pipeline] concurrency
// requests at once, and does reach that many.
func TestHTTPEndpointConcurrencyIsBounded(t *testing.T) {
	ps := newProtocolServer(t, 100*time.Millisecond)
	ch, _ := loadChain(t, pipeline.Spec{URL: ps.srv.URL, Concurrency: 2, Switches: []string{"reflect"}})
	modes := make([]string, 10)
	for i := range modes {
		modes[i] = "ok"
	}
	sum, _ := runCases(t, ch, noModels{}, 8, modes...)
	require.Zero(t, sum.Errored)
	require.EqualValues(t, 2, ps.maxInFlight.Load())
}

type fakeModels struct {
	client provider.Client
	name   string
}

func (m fakeModels) Client(string) (provider.Client, string, error) { return m.client, m.name, nil }

// TestEndpointTokenIsPerRun: each run hands the program its own key, the
// key of a finished run opens nothing (neither its own case's path nor a
// case of the next run), and a key of one run does not open another run's
// case.
func TestEndpointTokenIsPerRun(t *testing.T) {
	llm := fakellm.New(fakellm.WithDefault(func(r fakellm.Request) fakellm.Reply { return fakellm.Reply{Content: "CASEA"} }))
	t.Cleanup(llm.Close)
	client, err := provider.New(provider.Spec{Provider: provider.ProviderOpenAICompatible, Name: "m", BaseURL: llm.URL(), APIKeyEnv: "K"},
		provider.Options{Getenv: func(string) string { return "k" }})
	require.NoError(t, err)
	models := fakeModels{client: client, name: "m"}
	ps := newProtocolServer(t, 0)
	ch, _ := loadChain(t, pipeline.Spec{URL: ps.srv.URL, Switches: []string{"reflect"}})

	sum, byMode := runCases(t, ch, models, 2, "call", "call")
	require.Zero(t, sum.Errored, byMode)
	require.Equal(t, 100.0, byMode["call0"].Score, "the model call went through the endpoint")
	first := ps.requests()
	require.Len(t, first, 2)
	key := func(req map[string]any) string { return req["model"].(map[string]any)["api_key"].(string) }
	base := func(req map[string]any) string { return req["model"].(map[string]any)["base_url"].(string) }
	require.Equal(t, key(first[0]), key(first[1]), "one key for the run")
	require.NotEqual(t, base(first[0]), base(first[1]), "one path per case")

	// After the run: its key and its paths are dead.
	_, err = chatThrough(base(first[0]), key(first[0]), "again")
	require.ErrorContains(t, err, "HTTP 404")

	// A second run of the same pipeline gets a fresh key; inside its case,
	// the first run's key is refused at the live path and its own works.
	ctx, end := ch.BeginRun(context.Background())
	c := dataset.Case{CaseID: "z", Context: map[string]any{"q": "z", "mode": "probe", "old_key": key(first[0])}}
	tr := ch.Run(ctx, c, models)
	require.Empty(t, tr.Error)
	var probe struct{ Old, Own string }
	require.NoError(t, json.Unmarshal([]byte(tr.Final), &probe))
	require.Contains(t, probe.Old, "HTTP 401")
	require.Contains(t, probe.Old, "valid only during the run that sent it")
	require.Empty(t, probe.Own, "the run's own key works")
	second := ps.requests()[2]
	require.NotEqual(t, key(first[0]), key(second), "the key rotates per run")
	end()
	_, err = chatThrough(base(second), key(second), "after")
	require.ErrorContains(t, err, "HTTP 404", "a finished run's key and paths open nothing")
}
