// Package fakellm is a TEST DOUBLE: an OpenAI-compatible chat-completions
// server (and a SageMaker invocations endpoint) on httptest, for tests and
// benchmarks of everything that calls a model. It is not a model and never
// pretends to be one: every response names it in system_fingerprint and in
// the model field. Replies are scripted by rules matched on the request;
// latency and faults (429 with Retry-After, 5xx, hangs, malformed JSON,
// bodies cut mid-stream, answers without choices, empty completions,
// truncated output) are injected on demand so that retry, timeout, cache
// and attribution paths can be exercised without a network.
//
// It is an ordinary package, not a _test file, so that the tests of other
// packages (chain, run, scoring) can import it.
package fakellm

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Fingerprint marks every response as coming from this test double.
const Fingerprint = "fakellm-test-double"

// Message is one chat message as the double decodes it.
type Message struct {
	Role       string     `json:"role"`
	Content    string     `json:"content"`
	Name       string     `json:"name,omitempty"`
	ToolCalls  []wireCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

// Request is a decoded chat-completions (or SageMaker messages) request.
// Pointer fields are nil when the client left the parameter out, so tests
// can assert the exact request shape (e.g. no temperature for reasoning
// models).
type Request struct {
	Model               string          `json:"model"`
	Messages            []Message       `json:"messages"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	MaxTokens           *int            `json:"max_tokens"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	Seed                *int            `json:"seed"`
	Stop                []string        `json:"stop"`
	ResponseFormat      json.RawMessage `json:"response_format"`
	Tools               json.RawMessage `json:"tools"`
}

// LastUser is the content of the last user message, or "".
func (r Request) LastUser() string {
	for i := len(r.Messages) - 1; i >= 0; i-- {
		if r.Messages[i].Role == "user" {
			return r.Messages[i].Content
		}
	}
	return ""
}

// Recorded is one request the double received.
type Recorded struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
	// Chat is Body decoded; zero when Body was not valid JSON.
	Chat Request
	// Endpoint is the SageMaker endpoint name, "" for chat completions.
	Endpoint string
}

// ToolCall is a function call the double returns.
type ToolCall struct {
	ID        string
	Name      string
	Arguments string
}

// FaultKind selects an injected failure.
type FaultKind int

// Fault kinds. FaultNone is the zero value: answer normally.
const (
	FaultNone FaultKind = iota
	// FaultStatus answers with Fault.Status and a JSON error body.
	FaultStatus
	// FaultHang never answers; it returns only when the client gives up or
	// the server is closed.
	FaultHang
	// FaultMalformed answers 200 with a body that is not JSON.
	FaultMalformed
	// FaultCutBody answers 200 with a well-formed completion's headers and
	// Content-Length, sends half the body and drops the connection, as a
	// proxy or a crashing server does mid-stream.
	FaultCutBody
	// FaultNoChoices answers 200 with JSON that has no choices.
	FaultNoChoices
	// FaultEmpty answers 200 with a completion whose content is empty and
	// whose finish reason is "stop".
	FaultEmpty
)

// Fault is an injected failure. Build one with RateLimited, ServerError,
// Status, Hang, Malformed, CutBody, NoChoices or Empty.
type Fault struct {
	Kind   FaultKind
	Status int
	// RetryAfter is sent as the Retry-After header when not empty
	// (seconds or an HTTP date).
	RetryAfter string
}

// RateLimited is a 429 with the given Retry-After ("" for none).
func RateLimited(retryAfter string) Fault {
	return Fault{Kind: FaultStatus, Status: http.StatusTooManyRequests, RetryAfter: retryAfter}
}

// ServerError is a 500.
func ServerError() Fault { return Fault{Kind: FaultStatus, Status: http.StatusInternalServerError} }

// Status answers with any HTTP status and an OpenAI-style error body.
func Status(code int) Fault { return Fault{Kind: FaultStatus, Status: code} }

// Hang never answers.
func Hang() Fault { return Fault{Kind: FaultHang} }

// Malformed answers 200 with a body that is not JSON.
func Malformed() Fault { return Fault{Kind: FaultMalformed} }

// CutBody answers 200 and drops the connection halfway through the body.
func CutBody() Fault { return Fault{Kind: FaultCutBody} }

// NoChoices answers 200 with JSON without choices.
func NoChoices() Fault { return Fault{Kind: FaultNoChoices} }

// Empty answers 200 with an empty completion, finish reason "stop".
func Empty() Fault { return Fault{Kind: FaultEmpty} }

// Reply is what the double answers to one request.
type Reply struct {
	Content   string
	ToolCalls []ToolCall
	// FinishReason defaults to "stop", or "tool_calls" when ToolCalls is set.
	FinishReason string
	// Truncate > 0 cuts Content to that many bytes and reports finish
	// reason "length", as a model that ran out of max_tokens would.
	Truncate int
	// PromptTokens and CompletionTokens override the usage estimate
	// (characters / 4) when > 0.
	PromptTokens     int
	CompletionTokens int
	// Latency overrides the server-wide latency for this reply when > 0.
	Latency time.Duration
	Fault   Fault
}

// Match decides whether a rule applies to a request.
type Match func(Request) bool

// LastUserContains matches when the last user message contains substr.
func LastUserContains(substr string) Match {
	return func(r Request) bool { return strings.Contains(r.LastUser(), substr) }
}

// LastUserMatches matches the last user message against a regexp; it panics
// on a bad pattern, as regexp.MustCompile does, since patterns are test code.
func LastUserMatches(pattern string) Match {
	re := regexp.MustCompile(pattern)
	return func(r Request) bool { return re.MatchString(r.LastUser()) }
}

// AnyMessageContains matches when any message contains substr.
func AnyMessageContains(substr string) Match {
	return func(r Request) bool {
		for _, m := range r.Messages {
			if strings.Contains(m.Content, substr) {
				return true
			}
		}
		return false
	}
}

// AnyMessageMatches matches any message against a regexp.
func AnyMessageMatches(pattern string) Match {
	re := regexp.MustCompile(pattern)
	return func(r Request) bool {
		for _, m := range r.Messages {
			if re.MatchString(m.Content) {
				return true
			}
		}
		return false
	}
}

type rule struct {
	match Match
	reply func(Request) Reply
}

// Option configures a Server.
type Option func(*Server)

// WithRule answers requests matching m with a fixed reply. Rules are tried
// in the order given; the first match wins.
func WithRule(m Match, r Reply) Option {
	return WithRuleFunc(m, func(Request) Reply { return r })
}

// WithRuleFunc answers requests matching m with f(request).
func WithRuleFunc(m Match, f func(Request) Reply) Option {
	return func(s *Server) { s.rules = append(s.rules, rule{match: m, reply: f}) }
}

// WithDefault answers requests no rule matched. Without it the double echoes
// the last user message.
func WithDefault(f func(Request) Reply) Option {
	return func(s *Server) { s.def = f }
}

// WithAfter passes every planned reply (rules, default or echo) through f,
// which may rewrite it: answer differently per model name, set the usage a
// price test needs, or a latency. Later WithAfter options run after
// earlier ones.
func WithAfter(f func(Request, Reply) Reply) Option {
	return func(s *Server) { s.after = append(s.after, f) }
}

// WithLatency delays every reply by d (a Reply's own Latency wins).
func WithLatency(d time.Duration) Option {
	return func(s *Server) { s.latency = d }
}

// FailFirst injects fault f into the first n requests the server receives,
// whatever they are; later requests are answered normally.
func FailFirst(n int, f Fault) Option {
	return func(s *Server) { s.failFirst, s.firstFault = int64(n), f }
}

// WithSageMakerTGI makes the SageMaker handler answer in the Text Generation
// Inference shape [{"generated_text": ...}] instead of a chat completion.
func WithSageMakerTGI() Option {
	return func(s *Server) { s.tgi = true }
}

// WithoutRecording keeps no copy of the requests (Requests returns none;
// Count still counts them), so that a benchmark of 100,000 calls measures
// the client, not the double's growing log.
func WithoutRecording() Option {
	return func(s *Server) { s.noRecord = true }
}

// WithBatchPolls answers a batch's lines over n status polls (default 3),
// so that a client sees its progress grow: the double's batches advance
// when they are polled, not with the clock.
func WithBatchPolls(n int) Option {
	return func(s *Server) { s.batchPolls = max(n, 1) }
}

// Server is the running test double.
type Server struct {
	srv        *httptest.Server
	rules      []rule
	def        func(Request) Reply
	after      []func(Request, Reply) Reply
	latency    time.Duration
	failFirst  int64
	firstFault Fault
	tgi        bool
	noRecord   bool

	seq    atomic.Int64
	count  atomic.Int64
	done   chan struct{}
	closed sync.Once

	mu       sync.Mutex
	requests []Recorded

	batchPolls int // polls over which a batch's lines are answered
	files      map[string][]byte
	batches    map[string]*batch
	batchLines atomic.Int64
}

// New starts a test double; Close it when done.
func New(opts ...Option) *Server {
	s := &Server{done: make(chan struct{}), batchPolls: 3, files: map[string][]byte{}, batches: map[string]*batch{}}
	for _, o := range opts {
		o(s)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/chat/completions", s.chat)
	mux.HandleFunc("POST /chat/completions", s.chat)
	mux.HandleFunc("POST /endpoints/{name}/invocations", s.sagemaker)
	for _, root := range []string{"/v1", ""} {
		mux.HandleFunc("POST "+root+"/files", s.uploadFile)
		mux.HandleFunc("GET "+root+"/files/{id}/content", s.fileContent)
		mux.HandleFunc("POST "+root+"/batches", s.createBatch)
		mux.HandleFunc("GET "+root+"/batches/{id}", s.retrieveBatch)
		mux.HandleFunc("POST "+root+"/batches/{id}/cancel", s.cancelBatch)
	}
	s.srv = httptest.NewServer(mux)
	return s
}

// URL is the OpenAI-compatible base URL (ending in /v1), suitable for
// base_url. The SageMaker endpoint URL is BaseURL().
func (s *Server) URL() string { return s.srv.URL + "/v1" }

// BaseURL is the server root, the endpoint URL of the fake SageMaker runtime.
func (s *Server) BaseURL() string { return s.srv.URL }

// Close releases hanging handlers and shuts the server down.
func (s *Server) Close() {
	s.closed.Do(func() { close(s.done) })
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// Requests returns a copy of every request received so far, in arrival order.
func (s *Server) Requests() []Recorded {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Recorded(nil), s.requests...)
}

// Count is the number of requests received so far.
func (s *Server) Count() int { return int(s.count.Load()) }

func (s *Server) record(r *http.Request, endpoint string) (Request, []byte, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return Request{}, nil, err
	}
	var req Request
	decErr := json.Unmarshal(body, &req)
	s.count.Add(1)
	if s.noRecord {
		return req, body, decErr
	}
	rec := Recorded{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body, Endpoint: endpoint}
	if decErr == nil {
		rec.Chat = req
	}
	s.mu.Lock()
	s.requests = append(s.requests, rec)
	s.mu.Unlock()
	return req, body, decErr
}

// plan decides the reply for one request: injected first-N faults win, then
// rules in order, then the default.
func (s *Server) plan(req Request) Reply {
	n := s.seq.Add(1)
	var rep Reply
	matched := false
	for _, r := range s.rules {
		if r.match(req) {
			rep, matched = r.reply(req), true
			break
		}
	}
	if !matched {
		if s.def != nil {
			rep = s.def(req)
		} else {
			rep = Reply{Content: "echo: " + req.LastUser()}
		}
	}
	for _, f := range s.after {
		rep = f(req, rep)
	}
	if n <= s.failFirst {
		rep.Fault = s.firstFault
	}
	return rep
}

// wait sleeps for the reply's latency; false means the client went away.
func (s *Server) wait(r *http.Request, rep Reply) bool {
	d := s.latency
	if rep.Latency > 0 {
		d = rep.Latency
	}
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-s.done:
		return false
	}
}

// fault writes an injected fault; false means no fault applies. req is the
// request being answered, for faults shaped like a completion.
func (s *Server) fault(w http.ResponseWriter, r *http.Request, req Request, f Fault) bool {
	switch f.Kind {
	case FaultStatus:
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		writeJSON(w, f.Status, map[string]any{"error": map[string]any{
			"message": fmt.Sprintf("%s: injected %d %s", Fingerprint, f.Status, http.StatusText(f.Status)),
			"type":    "fakellm_injected", "code": f.Status,
		}})
		return true
	case FaultHang:
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		return true
	case FaultMalformed:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_, _ = io.WriteString(w, `{"id": "fakellm-malformed", "choices": [{"message": {"content": "trunc`)
		return true
	case FaultCutBody:
		body, _ := json.Marshal(completion(req, Reply{Content: Fingerprint + ": this body is cut before its end"}))
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body[:len(body)/2])
		_ = http.NewResponseController(w).Flush()
		// The documented way to end a response abruptly: the server drops
		// the connection without completing the declared length.
		panic(http.ErrAbortHandler)
	case FaultNoChoices:
		writeJSON(w, http.StatusOK, map[string]any{"id": "fakellm-no-choices", "object": "chat.completion",
			"model": Fingerprint + "/" + req.Model, "system_fingerprint": Fingerprint, "choices": []any{}})
		return true
	case FaultEmpty:
		c := completion(req, Reply{})
		c.Choices[0].Message.Content, c.Choices[0].FinishReason = "", "stop"
		writeJSON(w, http.StatusOK, c)
		return true
	}
	return false
}

func (s *Server) chat(w http.ResponseWriter, r *http.Request) {
	req, _, err := s.record(r, "")
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]any{
			"message": Fingerprint + ": request body is not a chat completion: " + err.Error(), "type": "invalid_request_error"}})
		return
	}
	rep := s.plan(req)
	if !s.wait(r, rep) || s.fault(w, r, req, rep.Fault) {
		return
	}
	writeJSON(w, http.StatusOK, completion(req, rep))
}

func (s *Server) sagemaker(w http.ResponseWriter, r *http.Request) {
	req, _, err := s.record(r, r.PathValue("name"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"message": Fingerprint + ": payload is not a messages request: " + err.Error()})
		return
	}
	rep := s.plan(req)
	if !s.wait(r, rep) || s.fault(w, r, req, rep.Fault) {
		return
	}
	c := completion(req, rep)
	if s.tgi {
		writeJSON(w, http.StatusOK, []map[string]string{{"generated_text": c.Choices[0].Message.Content}})
		return
	}
	writeJSON(w, http.StatusOK, c)
}

type wireCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type wireChoice struct {
	Index   int `json:"index"`
	Message struct {
		Role      string     `json:"role"`
		Content   string     `json:"content"`
		ToolCalls []wireCall `json:"tool_calls,omitempty"`
	} `json:"message"`
	FinishReason string `json:"finish_reason"`
}

type wireCompletion struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"`
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	SystemFingerprint string       `json:"system_fingerprint"`
	Choices           []wireChoice `json:"choices"`
	Usage             struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
}

// completion shapes a reply as an OpenAI chat completion. A max_tokens (or
// max_completion_tokens) smaller than the reply's estimated length truncates
// it with finish reason "length", so parameter changes have a visible effect.
func completion(req Request, rep Reply) wireCompletion {
	content, finish := rep.Content, rep.FinishReason
	limit := 0
	if req.MaxCompletionTokens != nil {
		limit = *req.MaxCompletionTokens
	} else if req.MaxTokens != nil {
		limit = *req.MaxTokens
	}
	if rep.Truncate > 0 && rep.Truncate < len(content) {
		content, finish = content[:rep.Truncate], "length"
	} else if limit > 0 && len(content) > limit*4 {
		content, finish = content[:limit*4], "length"
	}
	if finish == "" {
		finish = "stop"
		if len(rep.ToolCalls) > 0 {
			finish = "tool_calls"
		}
	}
	var c wireCompletion
	c.ID = fmt.Sprintf("fakellm-%d", time.Now().UnixNano())
	c.Object = "chat.completion"
	c.Created = time.Now().Unix()
	c.Model = Fingerprint + "/" + req.Model
	c.SystemFingerprint = Fingerprint
	c.Choices = make([]wireChoice, 1)
	ch := &c.Choices[0]
	ch.Message.Role = "assistant"
	ch.Message.Content = content
	ch.FinishReason = finish
	for i, tc := range rep.ToolCalls {
		var w wireCall
		w.ID, w.Type = tc.ID, "function"
		if w.ID == "" {
			w.ID = fmt.Sprintf("call_%d", i)
		}
		w.Function.Name, w.Function.Arguments = tc.Name, tc.Arguments
		ch.Message.ToolCalls = append(ch.Message.ToolCalls, w)
	}
	c.Usage.PromptTokens = rep.PromptTokens
	if c.Usage.PromptTokens <= 0 {
		chars := 0
		for _, m := range req.Messages {
			chars += len(m.Content)
		}
		c.Usage.PromptTokens = max(1, chars/4)
	}
	c.Usage.CompletionTokens = rep.CompletionTokens
	if c.Usage.CompletionTokens <= 0 {
		c.Usage.CompletionTokens = max(1, len(content)/4)
	}
	c.Usage.TotalTokens = c.Usage.PromptTokens + c.Usage.CompletionTokens
	return c
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
