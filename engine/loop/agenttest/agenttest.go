// Package agenttest is a TEST DOUBLE of a coding agent's model: an httptest
// server that speaks the Anthropic Messages streaming API (for Claude Code)
// and the OpenAI Responses streaming API (for Codex) and, instead of
// thinking, plays a script of tool calls. It lets tests drive the real
// clients offline against a real fapo server: the client believes it talks
// to its model, calls fapo's tools as told, and the double records every
// request the client sent, so a test can assert what reached the model
// (for example that no held-out case ever did).
//
// The double is stateless per request: the conversation a client sends
// carries the tool results so far, so the number of results names the next
// step and the last result is its input. Requests that offer no fapo tool
// (a client's side requests, such as title generation) get a short text.
package agenttest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// FapoPrefix is how both clients name an MCP server's tools to the model:
// Claude Code as one flat name (mcp__fapo__evaluate), Codex as a namespace
// (mcp__fapo) holding the bare tool name.
const FapoPrefix = "mcp__fapo__"

// Call is one tool call the scripted model makes.
type Call struct {
	// Tool is a fapo tool name (evaluate), prefixed as each client needs;
	// with Native it is the client's own tool name (ReadMcpResourceTool for
	// Claude Code, read_mcp_resource for Codex), sent as is.
	Tool   string
	Args   any
	Native bool
}

// Step decides the next call from the text of the previous tool result
// ("" for the first step), so arguments can carry run and variant ids.
type Step func(prev string) Call

// Script is what the scripted model does: the steps in order, then Final
// as its closing text. With Policy set, Steps are ignored: the policy
// decides each call from every tool result so far, and ok false ends the
// conversation with Final.
type Script struct {
	Steps  []Step
	Policy func(results []Result) (call Call, ok bool)
	Final  string
}

// Exchange is one call the scripted model made and the result the client
// reported back: the per-call transcript of a session.
type Exchange struct {
	CallID  string `json:"call_id"`
	Tool    string `json:"tool"`
	Args    any    `json:"args"`
	Result  string `json:"result"`
	IsError bool   `json:"is_error,omitempty"`
}

// Request is one request a client sent to the double.
type Request struct {
	Method string
	Path   string
	Body   []byte
}

// Result is a tool result as the client reported it back to the model.
// IsError is the Anthropic API's is_error flag; Codex sends no such flag.
type Result struct {
	CallID  string
	Text    string
	IsError bool
}

// Server is the scripted model endpoint.
type Server struct {
	script Script
	srv    *httptest.Server

	mu       sync.Mutex
	requests []Request
	results  map[string]Result
	calls    map[string]Call
	errs     []string
}

// New starts the double; Close it when done.
func New(script Script) *Server {
	s := &Server{script: script, results: map[string]Result{}, calls: map[string]Call{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.handle))
	return s
}

// URL is the base URL (no /v1): Claude Code's ANTHROPIC_BASE_URL; Codex's
// provider base_url is URL()+"/v1".
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// Requests returns a copy of every request received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Bodies returns every request body joined, for searches over all that the
// client sent to its model.
func (s *Server) Bodies() string {
	var b strings.Builder
	for _, r := range s.Requests() {
		b.Write(r.Body)
		b.WriteByte('\n')
	}
	return b.String()
}

// Results returns the tool results the client reported, in step order.
func (s *Server) Results() []Result {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Result
	for i := 0; ; i++ {
		r, ok := s.results[callID(i)]
		if !ok {
			return out
		}
		out = append(out, r)
	}
}

// Errors lists requests the double could not understand (unknown paths,
// malformed bodies): a test should require it empty, or print it when a
// client misbehaves.
func (s *Server) Errors() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.errs...)
}

func callID(step int) string { return fmt.Sprintf("call_%02d", step) }

func (s *Server) fail(w http.ResponseWriter, format string, a ...any) {
	msg := fmt.Sprintf(format, a...)
	s.mu.Lock()
	s.errs = append(s.errs, msg)
	s.mu.Unlock()
	http.Error(w, msg, http.StatusBadRequest)
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Body: body})
	s.mu.Unlock()
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/messages":
		s.anthropic(w, body)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/messages/count_tokens":
		writeJSON(w, map[string]any{"input_tokens": len(body) / 4})
	case r.Method == http.MethodPost && r.URL.Path == "/v1/responses":
		s.responses(w, body)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/models":
		writeJSON(w, map[string]any{"object": "list", "data": []any{}, "models": []any{}})
	default:
		s.fail(w, "agenttest: no such endpoint %s %s", r.Method, r.URL.Path)
	}
}

// next is the scripted decision for a conversation holding results (in
// call order): the next call, or done with the final text.
func (s *Server) next(results []Result) (call Call, id string, done bool) {
	n := len(results)
	if s.script.Policy != nil {
		c, ok := s.script.Policy(results)
		if !ok {
			return Call{}, "", true
		}
		return s.remember(n, c), callID(n), false
	}
	if n >= len(s.script.Steps) {
		return Call{}, "", true
	}
	prev := ""
	if n > 0 {
		prev = results[n-1].Text
	}
	return s.remember(n, s.script.Steps[n](prev)), callID(n), false
}

func (s *Server) remember(n int, c Call) Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[callID(n)] = c
	return c
}

// Transcript pairs every call made so far with the result the client
// reported for it, in call order.
func (s *Server) Transcript() []Exchange {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Exchange
	for i := 0; ; i++ {
		c, ok := s.calls[callID(i)]
		if !ok {
			return out
		}
		r := s.results[callID(i)]
		out = append(out, Exchange{CallID: callID(i), Tool: c.Tool, Args: c.Args, Result: r.Text, IsError: r.IsError})
	}
}

func (s *Server) record(results []Result) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range results {
		s.results[r.CallID] = r
	}
}

// --- Anthropic Messages (Claude Code) ---

type anthropicRequest struct {
	Stream   bool `json:"stream"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Tools []struct {
		Name string `json:"name"`
	} `json:"tools"`
}

type contentBlock struct {
	Type      string          `json:"type"`
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
	IsError   bool            `json:"is_error"`
	Text      string          `json:"text"`
}

func (s *Server) anthropic(w http.ResponseWriter, body []byte) {
	var req anthropicRequest
	if err := json.Unmarshal(body, &req); err != nil {
		s.fail(w, "agenttest: /v1/messages body: %v", err)
		return
	}
	offersFapo := false
	for _, t := range req.Tools {
		offersFapo = offersFapo || strings.HasPrefix(t.Name, FapoPrefix)
	}
	var results []Result
	for _, m := range req.Messages {
		var blocks []contentBlock
		if json.Unmarshal(m.Content, &blocks) != nil {
			continue // a plain string message
		}
		for _, b := range blocks {
			if b.Type == "tool_result" && strings.HasPrefix(b.ToolUseID, "call_") {
				results = append(results, Result{CallID: b.ToolUseID, Text: flattenText(b.Content), IsError: b.IsError})
			}
		}
	}
	s.record(results)
	var block map[string]any
	var input json.RawMessage
	stop := "end_turn"
	if call, id, done := s.next(results); !offersFapo || done {
		text := s.script.Final
		if !offersFapo {
			text = "ok"
		}
		block = map[string]any{"type": "text", "text": text}
	} else {
		name := call.Tool
		if !call.Native {
			name = FapoPrefix + call.Tool
		}
		input = marshalArgs(call.Args)
		block = map[string]any{"type": "tool_use", "id": id, "name": name, "input": json.RawMessage(input)}
		stop = "tool_use"
	}
	msgID := fmt.Sprintf("msg_%d", time.Now().UnixNano())
	usage := map[string]any{"input_tokens": len(body) / 4, "output_tokens": 10, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
	if !req.Stream {
		writeJSON(w, map[string]any{"id": msgID, "type": "message", "role": "assistant", "model": "agenttest",
			"content": []any{block}, "stop_reason": stop, "stop_sequence": nil, "usage": usage})
		return
	}
	sse := newSSE(w)
	sse.event("message_start", map[string]any{"type": "message_start", "message": map[string]any{
		"id": msgID, "type": "message", "role": "assistant", "model": "agenttest", "content": []any{},
		"stop_reason": nil, "stop_sequence": nil, "usage": usage}})
	if block["type"] == "tool_use" {
		start := map[string]any{"type": "tool_use", "id": block["id"], "name": block["name"], "input": map[string]any{}}
		sse.event("content_block_start", map[string]any{"type": "content_block_start", "index": 0, "content_block": start})
		sse.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0,
			"delta": map[string]any{"type": "input_json_delta", "partial_json": string(input)}})
	} else {
		sse.event("content_block_start", map[string]any{"type": "content_block_start", "index": 0,
			"content_block": map[string]any{"type": "text", "text": ""}})
		sse.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0,
			"delta": map[string]any{"type": "text_delta", "text": block["text"]}})
	}
	sse.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": 0})
	sse.event("message_delta", map[string]any{"type": "message_delta",
		"delta": map[string]any{"stop_reason": stop, "stop_sequence": nil}, "usage": map[string]any{"output_tokens": 10}})
	sse.event("message_stop", map[string]any{"type": "message_stop"})
}

// --- OpenAI Responses (Codex) ---

type responsesRequest struct {
	Input []json.RawMessage `json:"input"`
	Tools []struct {
		Type  string `json:"type"`
		Name  string `json:"name"`
		Tools []struct {
			Name string `json:"name"`
		} `json:"tools"`
	} `json:"tools"`
}

type inputItem struct {
	Type   string          `json:"type"`
	CallID string          `json:"call_id"`
	Output json.RawMessage `json:"output"`
}

func (s *Server) responses(w http.ResponseWriter, body []byte) {
	var req responsesRequest
	if err := json.Unmarshal(body, &req); err != nil {
		s.fail(w, "agenttest: /v1/responses body: %v", err)
		return
	}
	offersFapo := false
	for _, t := range req.Tools {
		offersFapo = offersFapo || t.Name == strings.TrimSuffix(FapoPrefix, "__") || strings.HasPrefix(t.Name, FapoPrefix)
	}
	var results []Result
	for _, raw := range req.Input {
		var it inputItem
		if json.Unmarshal(raw, &it) != nil {
			continue
		}
		if strings.HasSuffix(it.Type, "call_output") && strings.HasPrefix(it.CallID, "call_") {
			// Codex does not flag a failed MCP call to the model (the output is
			// the error text), so IsError stays false: read the status of the
			// mcp_tool_call items codex exec --json prints instead.
			results = append(results, Result{CallID: it.CallID, Text: flattenText(it.Output)})
		}
	}
	s.record(results)
	var item map[string]any
	if call, id, done := s.next(results); !offersFapo || done {
		text := s.script.Final
		if !offersFapo {
			text = "ok"
		}
		item = map[string]any{"type": "message", "id": "msg_" + fmt.Sprint(len(results)), "role": "assistant", "status": "completed",
			"content": []any{map[string]any{"type": "output_text", "text": text, "annotations": []any{}}}}
	} else {
		item = map[string]any{"type": "function_call", "id": "fc_" + id, "call_id": id, "status": "completed",
			"arguments": string(marshalArgs(call.Args))}
		if call.Native {
			item["name"] = call.Tool
		} else {
			item["name"] = call.Tool
			item["namespace"] = strings.TrimSuffix(FapoPrefix, "__")
		}
	}
	respID := fmt.Sprintf("resp_%d", time.Now().UnixNano())
	sse := newSSE(w)
	sse.event("response.created", map[string]any{"type": "response.created",
		"response": map[string]any{"id": respID, "object": "response", "status": "in_progress", "output": []any{}}})
	sse.event("response.output_item.added", map[string]any{"type": "response.output_item.added", "output_index": 0, "item": item})
	sse.event("response.output_item.done", map[string]any{"type": "response.output_item.done", "output_index": 0, "item": item})
	sse.event("response.completed", map[string]any{"type": "response.completed", "response": map[string]any{
		"id": respID, "object": "response", "status": "completed", "output": []any{item},
		"usage": map[string]any{"input_tokens": len(body) / 4, "input_tokens_details": map[string]any{"cached_tokens": 0},
			"output_tokens": 10, "output_tokens_details": map[string]any{"reasoning_tokens": 0}, "total_tokens": len(body)/4 + 10}}})
}

// --- helpers ---

// flattenText reads a tool result's content: a string, or a list of blocks
// with text fields (both APIs use both shapes).
func flattenText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var blocks []struct {
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &blocks) == nil {
		parts := make([]string, 0, len(blocks))
		for _, b := range blocks {
			parts = append(parts, b.Text)
		}
		return strings.Join(parts, "\n")
	}
	return string(raw)
}

func marshalArgs(args any) []byte {
	if args == nil {
		return []byte("{}")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(args); err != nil {
		return []byte("{}")
	}
	return bytes.TrimSpace(buf.Bytes())
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

type sseWriter struct {
	w http.ResponseWriter
	f http.Flusher
}

func newSSE(w http.ResponseWriter) *sseWriter {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	return &sseWriter{w: w, f: f}
}

func (s *sseWriter) event(name string, data any) {
	b, _ := json.Marshal(data)
	fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", name, b)
	if s.f != nil {
		s.f.Flush()
	}
}

// Field extracts a top-level string or number field from a JSON tool result
// text ("" when absent), for steps that carry ids forward.
func Field(resultText, key string) string {
	var m map[string]any
	if json.Unmarshal([]byte(resultText), &m) != nil {
		// Clients may wrap the text; find the first JSON object in it.
		if i := strings.Index(resultText, "{"); i >= 0 {
			dec := json.NewDecoder(strings.NewReader(resultText[i:]))
			if dec.Decode(&m) != nil {
				return ""
			}
		}
	}
	switch v := m[key].(type) {
	case string:
		return v
	case float64:
		return fmt.Sprint(v)
	}
	return ""
}
