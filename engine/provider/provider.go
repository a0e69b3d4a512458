// Package provider talks to language models: OpenAI through go-openai, any
// OpenAI-compatible server by base URL, and SageMaker endpoints. Around the raw
// clients it layers what a long evaluation needs: retries with backoff that
// honor Retry-After, per-call timeouts, request and token rate limits, a
// response cache keyed by the canonical request, and a usage and cost ledger.
package provider

import (
	"context"
	"encoding/json"
	"time"
)

// Message is one chat message in provider-neutral form.
type Message struct {
	Role       string     `json:"role"` // system, developer, user, assistant, tool
	Content    string     `json:"content"`
	Name       string     `json:"name,omitempty"`
	ToolCalls  []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID string     `json:"tool_call_id,omitempty"`
}

// ToolCall is a function call requested by the model.
type ToolCall struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	Arguments string `json:"arguments"` // JSON text, as the model produced it
}

// ToolDef declares a function the model may call.
type ToolDef struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"` // JSON Schema
}

// Params are the sampling parameters of one call. Nil pointers mean "provider
// default" and are left out of the request (and of the cache key).
type Params struct {
	Temperature *float64 `json:"temperature,omitempty" toml:"temperature"`
	TopP        *float64 `json:"top_p,omitempty" toml:"top_p"`
	MaxTokens   *int     `json:"max_tokens,omitempty" toml:"max_tokens"`
	Seed        *int     `json:"seed,omitempty" toml:"seed"`
	Stop        []string `json:"stop,omitempty" toml:"stop"`
}

// Request is one chat completion. Model is the provider's model name; the
// Client decides where it goes. Sample distinguishes the n samples of a step
// so that each has its own cache entry.
type Request struct {
	Model      string          `json:"model"`
	Messages   []Message       `json:"messages"`
	Params     Params          `json:"params"`
	JSONSchema json.RawMessage `json:"json_schema,omitempty"` // structured output, when set
	Tools      []ToolDef       `json:"tools,omitempty"`
	Sample     int             `json:"sample,omitempty"`
}

// Usage counts tokens of one call.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens" jsonschema:"prompt tokens"`
	CompletionTokens int `json:"completion_tokens" jsonschema:"completion tokens"`
}

// Plus is u and v together.
func (u Usage) Plus(v Usage) Usage {
	return Usage{PromptTokens: u.PromptTokens + v.PromptTokens, CompletionTokens: u.CompletionTokens + v.CompletionTokens}
}

// Response is the model's answer to one Request.
type Response struct {
	Content      string        `json:"content"`
	ToolCalls    []ToolCall    `json:"tool_calls,omitempty"`
	FinishReason string        `json:"finish_reason"` // stop, length, tool_calls, content_filter
	Usage        Usage         `json:"usage"`
	CacheHit     bool          `json:"cache_hit"`
	Latency      time.Duration `json:"latency"`
	// OriginalLatency is, for a cache hit, how long the request took when
	// it was first asked (0 for entries stored before it was kept):
	// Latency is then the lookup's time, which is not what a production
	// run would wait.
	OriginalLatency time.Duration `json:"original_latency,omitempty"`
	// Batch is set on an answer that came through the provider's batch
	// API: it is priced at the batch rates.
	Batch bool `json:"batch,omitempty"`
	// Retried is what the attempts before this answer were billed and
	// did not answer (empty completions, retried): a cost of the call,
	// not tokens of its answer. Never cached: a hit is one call.
	Retried Usage `json:"retried,omitzero"`
}

// Client completes chat requests. Implementations must be safe for concurrent
// use and must return promptly when ctx is cancelled.
type Client interface {
	Complete(ctx context.Context, req Request) (Response, error)
}

// ClientFunc adapts a function to Client.
type ClientFunc func(ctx context.Context, req Request) (Response, error)

// Complete calls f.
func (f ClientFunc) Complete(ctx context.Context, req Request) (Response, error) { return f(ctx, req) }
