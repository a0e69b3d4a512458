package chain

import (
	"time"

	"github.com/fapo-dev/fapo/engine/provider"
)

// StepTrace records everything one step did for one case. Attribution reads
// it to find the step a failure started at; the inspect tools show it to the
// agent for train cases only.
type StepTrace struct {
	StepID string `json:"step_id"`
	Kind   string `json:"kind"`
	// Input is what an external program reports it gave the step (a query,
	// the text parsed); built-in steps record their inputs as Messages.
	Input string `json:"input,omitempty"`
	// Messages are the rendered messages sent to the model (llm-like steps).
	Messages []provider.Message `json:"messages,omitempty"`
	// RawOutput is what the step produced before parsing (model text,
	// concatenated retrieved passages, the parsed step's input).
	RawOutput string `json:"raw_output"`
	// Output is the value later steps see as {{.steps.ID.output}}.
	Output string `json:"output"`
	// Parsed is the structured value of a JSON output or a parse step, seen
	// as {{.steps.ID.parsed}}; nil when the step produces plain text.
	Parsed any `json:"parsed,omitempty"`
	// Retrieved lists what a retrieve step returned, best first.
	Retrieved []RetrievedDoc `json:"retrieved,omitempty"`
	// ToolCalls lists the tool calls of a react step, in order.
	ToolCalls []ToolCallTrace `json:"tool_calls,omitempty"`
	// Samples holds the n outputs of a sampled or voting step.
	Samples []string `json:"samples,omitempty"`
	// ParseError says why a parse step's extraction failed when its on_fail
	// policy (raw or empty) stood in for the value; attribution reads it as
	// a format failure even though the step did not error.
	ParseError string `json:"parse_error,omitempty"`
	// Rounds counts reflect rounds or react iterations.
	Rounds int `json:"rounds,omitempty"`

	FinishReason     string  `json:"finish_reason,omitempty"`
	PromptTokens     int     `json:"prompt_tokens"`
	CompletionTokens int     `json:"completion_tokens"`
	Calls            int     `json:"calls"`
	CacheHits        int     `json:"cache_hits"`
	LatencyMS        float64 `json:"latency_ms"`
	// CacheSavedMS is how much sooner the step finished because calls were
	// answered from the cache: LatencyMS is as measured, and a comparison
	// of variants adds this back, so that a variant whose unchanged steps
	// hit the cache is not faster for it.
	CacheSavedMS float64 `json:"cache_saved_ms,omitempty"`
	// Skipped is set when a branch step routed around this step, or when an
	// earlier step failed (Error then says which).
	Skipped bool `json:"skipped,omitempty"`
	// Error is set when the step failed; the case is then an execution error.
	Error string `json:"error,omitempty"`
}

// RetrievedDoc is one passage a retrieve step returned.
type RetrievedDoc struct {
	ID    string  `json:"id"`
	Title string  `json:"title,omitempty"`
	Score float64 `json:"score"`
	Text  string  `json:"text"`
}

// ToolCallTrace records one tool call of a react step.
type ToolCallTrace struct {
	Name        string  `json:"name"`
	Arguments   string  `json:"arguments"`
	ResultChars int     `json:"result_chars"`
	Result      string  `json:"result,omitempty"`
	Error       string  `json:"error,omitempty"`
	LatencyMS   float64 `json:"latency_ms"`
}

// Trace is the whole execution of a chain on one case.
type Trace struct {
	CaseID string      `json:"case_id"`
	Steps  []StepTrace `json:"steps"`
	// Final is the output of the chain's output step.
	Final string `json:"final"`
	// Error is the first step error, if any step failed.
	Error string `json:"error,omitempty"`
	// Cause is set by an external pipeline whose program, not the variant,
	// failed (it crashed, hung, or answered outside the protocol): the case
	// errored. It uses the fixed vocabulary of run's error causes; the run
	// stores it on the case result, not here.
	Cause string `json:"-"`
}

// Step returns the trace of the step with the given id, or nil.
func (t *Trace) Step(id string) *StepTrace {
	for i := range t.Steps {
		if t.Steps[i].StepID == id {
			return &t.Steps[i]
		}
	}
	return nil
}

// SavedByCacheMS is how much sooner calls issued together returned because
// some were answered from the cache. Calls issued together (a step's
// samples) are waited for together, so it is the slowest of them as first
// asked less the slowest as answered; for one call, what its hit saved.
func SavedByCacheMS(resps ...provider.Response) float64 {
	var asked, answered time.Duration
	for _, r := range resps {
		answered = max(answered, r.Latency)
		if r.CacheHit {
			asked = max(asked, r.OriginalLatency)
		} else {
			asked = max(asked, r.Latency)
		}
	}
	return float64(max(asked-answered, 0).Microseconds()) / 1000
}
