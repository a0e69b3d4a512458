package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/httpauth"
	"github.com/fapo-dev/fapo/engine/provider"
)

// StepHeader names the step a model call belongs to; the Python helper
// sets it. A call without it is attributed to the only llm step, if there
// is one.
const StepHeader = "X-Fapo-Step"

// gateway is the loopback OpenAI-compatible endpoint. Each run has its own
// random token and each case in flight a slot under a random path; a call
// reaches the case's models (the run's provider stack: cache in the run's
// scope, retries, limits, usage) only through its slot and only with its
// run's token, so a call cannot be charged to, or read the cache scope of,
// another case or run, and a token a program kept from a finished run opens
// nothing.
type gateway struct {
	ln  net.Listener
	srv *http.Server

	mu    sync.Mutex
	slots map[string]*slot
}

// gwRun is one run of the pipeline: its token is valid while it lasts.
type gwRun struct {
	g     *gateway
	token string
}

// slot is one case in flight.
type slot struct {
	ctx    context.Context
	run    *gwRun
	models chain.Models

	mu    sync.Mutex
	calls []call
}

// call is one model call of a case, for its trace.
type call struct {
	step string
	req  provider.Request
	resp provider.Response
}

func newGateway() (*gateway, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("serve the model endpoint for the pipeline on loopback: %w", err)
	}
	g := &gateway{ln: ln, slots: map[string]*slot{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /c/{slot}/v1/chat/completions", g.chat)
	g.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := g.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("pipeline model endpoint stopped", "err", err)
		}
	}()
	return g, nil
}

func (g *gateway) baseURL(id string) string {
	return "http://" + g.ln.Addr().String() + "/c/" + id + "/v1"
}

// beginRun issues a run's token; endRun revokes it with every slot the run
// still has open.
func (g *gateway) beginRun() *gwRun {
	return &gwRun{g: g, token: randomHex(24)}
}

func (g *gateway) endRun(r *gwRun) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for id, s := range g.slots {
		if s.run == r {
			delete(g.slots, id)
		}
	}
}

func (g *gateway) open(ctx context.Context, r *gwRun, m chain.Models) (string, *slot) {
	id := randomHex(16)
	s := &slot{ctx: ctx, run: r, models: m}
	g.mu.Lock()
	g.slots[id] = s
	g.mu.Unlock()
	return id, s
}

func (g *gateway) release(id string) {
	g.mu.Lock()
	delete(g.slots, id)
	g.mu.Unlock()
}

func (g *gateway) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return g.srv.Shutdown(ctx)
}

// chatRequest is the part of an OpenAI chat completion request fapo honours.
type chatRequest struct {
	Model               string          `json:"model"`
	Messages            []chatMessage   `json:"messages"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Seed                *int            `json:"seed"`
	Stop                json.RawMessage `json:"stop"`
	N                   *int            `json:"n"`
	Stream              bool            `json:"stream"`
	Tools               []struct {
		Function provider.ToolDef `json:"function"`
	} `json:"tools"`
	ResponseFormat *struct {
		Type       string `json:"type"`
		JSONSchema *struct {
			Schema json.RawMessage `json:"schema"`
		} `json:"json_schema"`
	} `json:"response_format"`
}

type chatMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	Name       string          `json:"name,omitempty"`
	ToolCallID string          `json:"tool_call_id,omitempty"`
	ToolCalls  []struct {
		ID       string `json:"id"`
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls,omitempty"`
}

func (g *gateway) chat(w http.ResponseWriter, r *http.Request) {
	auth := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	g.mu.Lock()
	s := g.slots[r.PathValue("slot")]
	g.mu.Unlock()
	if s == nil {
		apiError(w, http.StatusNotFound, "no case in flight at this base URL: use the model.base_url of the request being answered, only while answering it")
		return
	}
	if !httpauth.TokenEqual(auth, s.run.token) {
		apiError(w, http.StatusUnauthorized, "missing, wrong or expired API key: use the model.api_key of the request being answered; a key is valid only during the run that sent it")
		return
	}
	var cr chatRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxLine)).Decode(&cr); err != nil {
		apiError(w, http.StatusBadRequest, "the body is not a chat completion request: "+err.Error())
		return
	}
	req, err := toProviderRequest(cr)
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	client, model, err := resolveModel(s.models, cr.Model)
	if err != nil {
		apiError(w, http.StatusBadRequest, err.Error())
		return
	}
	req.Model = model
	// The case's context carries the run's cache scope and deadline; the
	// HTTP request's cancellation stops the call too.
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	stop := context.AfterFunc(r.Context(), cancel)
	defer stop()
	resp, err := client.Complete(ctx, req)
	if err != nil {
		status := http.StatusBadGateway
		var api *provider.APIError
		if errors.As(err, &api) && api.Status >= 400 {
			status = api.Status
		}
		apiError(w, status, err.Error())
		return
	}
	s.mu.Lock()
	s.calls = append(s.calls, call{step: r.Header.Get(StepHeader), req: req, resp: resp})
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, toCompletion(model, resp))
}

// resolveModel maps the request's model to a tenant model: a [models.NAME]
// block by name, or the default [model] for "", "default" or its own
// provider name.
func resolveModel(m chain.Models, name string) (provider.Client, string, error) {
	if name != "" && name != "default" {
		if c, model, err := m.Client(name); err == nil {
			return c, model, nil
		}
	}
	c, model, err := m.Client("")
	if err != nil {
		return nil, "", err
	}
	if name != "" && name != "default" && name != model {
		return nil, "", fmt.Errorf("model %q is neither the tenant's [model] (%s) nor a [models.NAME] block: send \"default\", %q or a block's name", name, model, model)
	}
	return c, model, nil
}

func toProviderRequest(cr chatRequest) (provider.Request, error) {
	if cr.Stream {
		return provider.Request{}, errors.New("stream is not supported: send stream=false")
	}
	if cr.N != nil && *cr.N > 1 {
		return provider.Request{}, errors.New("n > 1 is not supported: send one request per sample")
	}
	req := provider.Request{Params: provider.Params{Temperature: cr.Temperature, TopP: cr.TopP, MaxTokens: cr.MaxTokens, Seed: cr.Seed}}
	if req.Params.MaxTokens == nil {
		req.Params.MaxTokens = cr.MaxCompletionTokens
	}
	if len(cr.Stop) > 0 && string(cr.Stop) != "null" {
		var one string
		if json.Unmarshal(cr.Stop, &one) == nil {
			req.Params.Stop = []string{one}
		} else if err := json.Unmarshal(cr.Stop, &req.Params.Stop); err != nil {
			return req, errors.New("stop must be a string or a list of strings")
		}
	}
	if len(cr.Messages) == 0 {
		return req, errors.New("messages is empty")
	}
	for i, m := range cr.Messages {
		content, err := contentText(m.Content)
		if err != nil {
			return req, fmt.Errorf("messages[%d].content: %v", i, err)
		}
		pm := provider.Message{Role: m.Role, Content: content, Name: m.Name, ToolCallID: m.ToolCallID}
		for _, tc := range m.ToolCalls {
			pm.ToolCalls = append(pm.ToolCalls, provider.ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: tc.Function.Arguments})
		}
		req.Messages = append(req.Messages, pm)
	}
	for _, t := range cr.Tools {
		req.Tools = append(req.Tools, t.Function)
	}
	if rf := cr.ResponseFormat; rf != nil && rf.JSONSchema != nil {
		req.JSONSchema = rf.JSONSchema.Schema
	}
	return req, nil
}

// contentText accepts a string or a list of text parts.
func contentText(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", errors.New("a string or a list of text parts")
	}
	var b strings.Builder
	for _, p := range parts {
		if p.Type != "text" {
			return "", fmt.Errorf("part of type %q: only text parts are supported", p.Type)
		}
		b.WriteString(p.Text)
	}
	return b.String(), nil
}

func toCompletion(model string, resp provider.Response) map[string]any {
	msg := map[string]any{"role": "assistant", "content": resp.Content}
	if len(resp.ToolCalls) > 0 {
		var tcs []map[string]any
		for _, tc := range resp.ToolCalls {
			tcs = append(tcs, map[string]any{"id": tc.ID, "type": "function",
				"function": map[string]any{"name": tc.Name, "arguments": tc.Arguments}})
		}
		msg["tool_calls"] = tcs
	}
	return map[string]any{
		"id": "fapo-" + randomHex(8), "object": "chat.completion", "created": time.Now().Unix(), "model": model,
		"choices": []map[string]any{{"index": 0, "message": msg, "finish_reason": resp.FinishReason}},
		"usage": map[string]any{"prompt_tokens": resp.Usage.PromptTokens, "completion_tokens": resp.Usage.CompletionTokens,
			"total_tokens": resp.Usage.PromptTokens + resp.Usage.CompletionTokens},
	}
}

func apiError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"message": msg, "type": "fapo_error"}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b)
}
