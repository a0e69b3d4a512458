package provider

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	openai "github.com/sashabaranov/go-openai"
)

// openaiClient serves "openai" and "openai_compatible" specs through
// go-openai.
type openaiClient struct {
	provider  string
	model     string // default when Request.Model is empty
	keyEnv    string
	reasoning *bool
	c         *openai.Client
	batchPoll time.Duration // 0: defaultBatchPoll
}

// errorCapture receives the status, headers and body of a failed HTTP
// response. go-openai's errors carry the status but drop the headers, and
// Retry-After lives in the headers, so the HTTP layer writes them here
// through the request context. It also receives the decoded answer of a
// successful one (decodeAnswer).
type errorCapture struct {
	status int
	header http.Header
	body   []byte
	// answer is the 2xx chat completion, decoded once by decodeAnswer;
	// nil when it did not decode (go-openai then decodes it, to report why).
	answer *wireAnswer
}

type captureKey struct{}

// capturingDoer is the HTTPDoer given to go-openai.
type capturingDoer struct{ hc *http.Client }

func (d capturingDoer) Do(req *http.Request) (*http.Response, error) {
	resp, err := d.hc.Do(req) //nolint:gosec // G704: the URL is the tenant's [model] base_url, the operator's choice
	if err != nil {
		return resp, err
	}
	capture, ok := req.Context().Value(captureKey{}).(*errorCapture)
	if !ok {
		return resp, nil
	}
	if resp.StatusCode < 400 {
		decodeAnswer(resp, capture)
		return resp, nil
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	capture.status, capture.header, capture.body = resp.StatusCode, resp.Header.Clone(), body
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}

// wireAnswer is the part of a chat completion fapo uses.
type wireAnswer struct {
	Choices []struct {
		Message struct {
			Content   string `json:"content"`
			ToolCalls []struct {
				ID       string `json:"id"`
				Function struct {
					Name      string `json:"name"`
					Arguments string `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
}

var bodyBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// decodeAnswer reads a 2xx body into a pooled buffer and decodes it once,
// into only the fields fapo uses. go-openai would decode it into its full
// response type, whose messages unmarshal themselves (a second reflection
// pass over the same JSON, with the scanner run twice); on this path it is
// handed an empty object instead. A body that does not read or decode is
// given back to go-openai as it came (the bytes read, then the read's
// error), so that its errors, which wrapErr classifies, are unchanged.
func decodeAnswer(resp *http.Response, capture *errorCapture) {
	buf := bodyBufs.Get().(*bytes.Buffer)
	buf.Reset()
	_, readErr := buf.ReadFrom(resp.Body)
	_ = resp.Body.Close()
	var a wireAnswer
	if readErr == nil && json.Unmarshal(buf.Bytes(), &a) == nil {
		bodyBufs.Put(buf) // the decoded strings are copies
		capture.answer = &a
		resp.Body = io.NopCloser(strings.NewReader("{}"))
		return
	}
	body := bytes.Clone(buf.Bytes())
	bodyBufs.Put(buf)
	var r io.Reader = bytes.NewReader(body)
	if readErr != nil {
		r = io.MultiReader(r, errReader{readErr})
	}
	resp.Body = io.NopCloser(r)
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

func newOpenAI(spec Spec, opts Options) (*openaiClient, error) {
	getenv := opts.Getenv
	keyEnv := spec.APIKeyEnv
	if spec.Provider == ProviderOpenAI && keyEnv == "" {
		keyEnv = "OPENAI_API_KEY"
	}
	key := ""
	if keyEnv != "" {
		key = getenv(keyEnv)
		if key == "" && !spec.keyOptional {
			return nil, fmt.Errorf("%s %s: environment variable %s is empty: export it with your API key, or set api_key_env in the model block to the variable that holds it", spec.Provider, spec.Name, keyEnv)
		}
	}
	cfg := openai.DefaultConfig(key)
	if spec.Provider == ProviderOpenAICompatible {
		if spec.BaseURL == "" {
			return nil, fmt.Errorf("%s %s: base_url is empty: set base_url in the model block to the server's OpenAI-compatible root (e.g. http://localhost:8000/v1)", spec.Provider, spec.Name)
		}
	}
	if spec.BaseURL != "" {
		cfg.BaseURL = strings.TrimRight(spec.BaseURL, "/")
	}
	cfg.HTTPClient = capturingDoer{hc: opts.httpClient()}
	return &openaiClient{
		provider: spec.Provider, model: spec.Name, keyEnv: keyEnv, reasoning: spec.Reasoning,
		c: openai.NewClientWithConfig(cfg), batchPoll: opts.BatchPoll,
	}, nil
}

// IsReasoningModel reports whether a model name belongs to a reasoning family
// (o1, o3, o4…, gpt-5*) that takes the developer role and
// max_completion_tokens and rejects sampling parameters. A provider prefix
// such as "openai/" (OpenRouter) is ignored.
func IsReasoningModel(name string) bool {
	n := strings.ToLower(name)
	if i := strings.LastIndexByte(n, '/'); i >= 0 {
		n = n[i+1:]
	}
	if strings.HasPrefix(n, "gpt-5") {
		return true
	}
	return len(n) >= 2 && n[0] == 'o' && n[1] >= '1' && n[1] <= '9'
}

func (o *openaiClient) isReasoning(model string) bool {
	if o.reasoning != nil {
		return *o.reasoning
	}
	return IsReasoningModel(model)
}

// chatRequest maps a Request onto go-openai. Reasoning models get the
// developer role instead of system, max_completion_tokens instead of
// max_tokens, and no temperature/top_p, which they reject.
func (o *openaiClient) chatRequest(req Request) (openai.ChatCompletionRequest, error) {
	model := req.Model
	if model == "" {
		model = o.model
	}
	reasoning := o.isReasoning(model)
	out := openai.ChatCompletionRequest{Model: model, Stop: req.Params.Stop, Seed: req.Params.Seed}
	for _, m := range req.Messages {
		role := m.Role
		if reasoning && role == openai.ChatMessageRoleSystem {
			role = openai.ChatMessageRoleDeveloper
		}
		cm := openai.ChatCompletionMessage{Role: role, Content: m.Content, Name: m.Name, ToolCallID: m.ToolCallID}
		for _, tc := range m.ToolCalls {
			cm.ToolCalls = append(cm.ToolCalls, openai.ToolCall{ID: tc.ID, Type: openai.ToolTypeFunction,
				Function: openai.FunctionCall{Name: tc.Name, Arguments: tc.Arguments}})
		}
		out.Messages = append(out.Messages, cm)
	}
	if p := req.Params.MaxTokens; p != nil {
		if reasoning {
			out.MaxCompletionTokens = *p
		} else {
			// max_tokens, deprecated upstream, is what the local and
			// compatible servers a tenant points at still read.
			out.MaxTokens = *p //nolint:staticcheck // SA1019: see above
		}
	}
	if !reasoning {
		out.Temperature = wireFloat(req.Params.Temperature)
		out.TopP = wireFloat(req.Params.TopP)
	}
	if len(req.JSONSchema) > 0 {
		if !json.Valid(req.JSONSchema) {
			return out, fmt.Errorf("%s %s: json_schema is not valid JSON: fix the step's output schema", o.provider, model)
		}
		out.ResponseFormat = &openai.ChatCompletionResponseFormat{
			Type: openai.ChatCompletionResponseFormatTypeJSONSchema,
			JSONSchema: &openai.ChatCompletionResponseFormatJSONSchema{
				Name: "output", Schema: json.RawMessage(req.JSONSchema), Strict: true,
			},
		}
	}
	for _, t := range req.Tools {
		fd := &openai.FunctionDefinition{Name: t.Name, Description: t.Description}
		if len(t.Parameters) > 0 {
			fd.Parameters = json.RawMessage(t.Parameters)
		}
		out.Tools = append(out.Tools, openai.Tool{Type: openai.ToolTypeFunction, Function: fd})
	}
	return out, nil
}

// wireFloat maps an optional parameter onto go-openai's omitempty float32.
// An explicit 0 would be dropped (and the server would use its default of
// 1), so it is sent as the smallest positive float32, the workaround the
// go-openai maintainers recommend (sashabaranov/go-openai#9).
func wireFloat(p *float64) float32 {
	if p == nil {
		return 0
	}
	if *p == 0 {
		return math.SmallestNonzeroFloat32
	}
	return float32(*p)
}

func (o *openaiClient) Complete(ctx context.Context, req Request) (Response, error) {
	creq, err := o.chatRequest(req)
	if err != nil {
		return Response{}, err
	}
	capture := &errorCapture{}
	start := time.Now()
	resp, err := o.c.CreateChatCompletion(context.WithValue(ctx, captureKey{}, capture), creq)
	latency := time.Since(start)
	if err != nil {
		return Response{}, o.wrapErr(creq.Model, capture, err)
	}
	if a := capture.answer; a != nil {
		return answerOf(o.provider, creq.Model, a, latency)
	}
	if len(resp.Choices) == 0 {
		return Response{}, fmt.Errorf("%s %s: %w: the answer has no choices", o.provider, creq.Model, ErrMalformedResponse)
	}
	ch := resp.Choices[0]
	out := Response{
		Content:      ch.Message.Content,
		FinishReason: normalizeFinish(string(ch.FinishReason)),
		Usage:        Usage{PromptTokens: resp.Usage.PromptTokens, CompletionTokens: resp.Usage.CompletionTokens},
		Latency:      latency,
	}
	for _, tc := range ch.Message.ToolCalls {
		out.ToolCalls = append(out.ToolCalls, ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: tc.Function.Arguments})
	}
	return out, nil
}

// answerOf maps the decoded answer as Complete maps go-openai's.
func answerOf(provider, model string, a *wireAnswer, latency time.Duration) (Response, error) {
	if len(a.Choices) == 0 {
		return Response{}, fmt.Errorf("%s %s: %w: the answer has no choices", provider, model, ErrMalformedResponse)
	}
	out := a.response()
	out.Latency = latency
	return out, nil
}

// response maps the first choice of a (which has one) onto a Response.
func (a *wireAnswer) response() Response {
	ch := a.Choices[0]
	out := Response{
		Content:      ch.Message.Content,
		FinishReason: normalizeFinish(ch.FinishReason),
		Usage:        Usage{PromptTokens: a.Usage.PromptTokens, CompletionTokens: a.Usage.CompletionTokens},
	}
	for _, tc := range ch.Message.ToolCalls {
		out.ToolCalls = append(out.ToolCalls, ToolCall{ID: tc.ID, Name: tc.Function.Name, Arguments: tc.Function.Arguments})
	}
	return out
}

func (o *openaiClient) wrapErr(model string, capture *errorCapture, err error) error {
	if capture.status != 0 {
		return &APIError{
			Provider: o.provider, Model: model, Status: capture.status,
			RetryAfter: parseRetryAfter(capture.header, time.Now()),
			Body:       errorMessage(capture.body),
			Hint:       hintFor(capture.status, o.keyEnv),
		}
	}
	// Failures of the HTTP exchange itself come back as *url.Error; a decode
	// failure of a 2xx body does not, whatever its cause.
	var ue *url.Error
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	if !errors.As(err, &ue) {
		switch {
		case errors.Is(err, io.ErrUnexpectedEOF):
			return fmt.Errorf("%s %s: %w: the body ended before its JSON did (cut mid-stream): %w", o.provider, model, ErrMalformedResponse, err)
		case errors.As(err, &syn) || errors.As(err, &typ):
			return fmt.Errorf("%s %s: %w: the body is not a chat completion (%v): if this persists, check that base_url is an OpenAI-compatible server", o.provider, model, ErrMalformedResponse, err)
		}
	}
	return fmt.Errorf("%s %s: %w", o.provider, model, err)
}

// errorMessage pulls "error.message" (OpenAI) or "message" (SageMaker,
// others) out of an error body, falling back to the trimmed raw body.
func errorMessage(body []byte) string {
	var e struct {
		Error *struct {
			Message string `json:"message"`
		} `json:"error"`
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &e) == nil {
		if e.Error != nil && e.Error.Message != "" {
			return e.Error.Message
		}
		if e.Message != "" {
			return e.Message
		}
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// normalizeFinish maps provider spellings onto stop, length, tool_calls and
// content_filter; TGI's "eos_token" and the legacy "function_call" included.
func normalizeFinish(s string) string {
	switch s {
	case "", "stop", "eos_token", "stop_sequence", "end_turn":
		return "stop"
	case "length", "max_tokens":
		return "length"
	case "tool_calls", "function_call", "tool_use":
		return "tool_calls"
	}
	return s
}
