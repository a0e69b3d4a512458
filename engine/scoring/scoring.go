// Package scoring judges a pipeline's output against a case's expected values.
// Every scorer validates cases up front and returns a composite score in
// [0, 100] with a breakdown; a score out of range or NaN is an error, never
// clamped. Scorers see the whole step trace, so they may judge intermediate
// steps (pipeline-aware scoring) and not only the final answer.
package scoring

import (
	"context"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
)

// MaxScore is the best composite score any scorer gives.
const MaxScore = 100.0

// Output is what a scorer judges: the chain's final output and, for
// pipeline-aware scorers, the trace of every step.
type Output struct {
	Final string
	Trace *chain.Trace // may be nil when scoring a bare answer
}

// Result is one case's score.
type Result struct {
	Composite float64            `json:"composite_score"`
	Breakdown map[string]float64 `json:"score_breakdown,omitempty"`
	// Reason explains the score in words when the scorer has one (an LLM
	// judge's reason, a command scorer's note), for the agent and attribution.
	Reason string `json:"reason,omitempty"`
}

// Scorer judges one case at a time.
type Scorer interface {
	// Validate reports why a case cannot be scored (missing expected field,
	// label outside the allowed set, ...), before any model call is spent.
	Validate(c dataset.Case) error
	Score(ctx context.Context, c dataset.Case, out Output) (Result, error)
}

// Item is one case and output of a batch.
type Item struct {
	Case   dataset.Case
	Output Output
}

// ItemResult is the score of one Item, or why it could not be scored.
type ItemResult struct {
	Result Result
	Err    error
}

// BatchScorer scores many cases in one go, so that a scorer with a costly
// start (a Python process) is started once per batch and not once per case.
type BatchScorer interface {
	Scorer
	ScoreBatch(ctx context.Context, items []Item) []ItemResult
}

// BatchValidator validates many cases in one go, for the same reason as
// BatchScorer. ValidateAll uses it when a scorer has it.
type BatchValidator interface {
	ValidateBatch(ctx context.Context, cases []dataset.Case) []error
}
