// Package run evaluates a pipeline over a split: cases in parallel (bounded),
// steps in order within a case, every case scored and appended to the run's
// log as soon as it completes, so that a killed run resumes without repeating
// a finished case. It also keeps run ids unique and writes the run summary
// atomically.
package run

import (
	"fmt"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
)

// CaseResult is one line of a run's cases.jsonl.
type CaseResult struct {
	CaseID string `json:"case_id"`
	// Repeat is which evaluation of the case this is (from 0) when a run
	// evaluates each case several times.
	Repeat int `json:"repeat,omitempty"`
	// Score is the composite score; a case whose pipeline or scorer failed
	// scores 0 so that breaking a case never raises the mean. An errored
	// case (Cause set) has no score: its 0 enters no mean.
	Score     float64            `json:"composite_score"`
	Breakdown map[string]float64 `json:"score_breakdown,omitempty"`
	// ExecError is the first step error; ScoreError why scoring failed.
	ExecError  string `json:"exec_error,omitempty"`
	ScoreError string `json:"score_error,omitempty"`
	// Cause is set when the case errored: no answer because of the
	// infrastructure ("provider: HTTP 500"), in a fixed vocabulary that
	// carries nothing of the case. Resume runs errored cases again.
	Cause string      `json:"error_cause,omitempty"`
	Trace chain.Trace `json:"trace"`
	// Usage lists the model calls of this case per provider model.
	Usage []ModelUsage `json:"usage,omitempty"`
	// Expected is kept for train runs so that attribution and inspection can
	// compare; held-out runs live in the sealed store only.
	Expected map[string]any `json:"expected,omitempty"`
	Context  map[string]any `json:"context,omitempty"`
}

// key identifies the result within its run: a case id, and the repeat
// when there are several.
func (r *CaseResult) key() string { return resultKey(r.CaseID, r.Repeat) }

func resultKey(caseID string, repeat int) string {
	if repeat == 0 {
		return caseID
	}
	return fmt.Sprintf("%s\x00%d", caseID, repeat)
}

// Failed reports whether the case did not run or could not be scored
// (errored cases included; Errored tells them apart).
func (r *CaseResult) Failed() bool { return r.ExecError != "" || r.ScoreError != "" }

// Errored reports whether the case got no answer because of the
// infrastructure: it has no score.
func (r *CaseResult) Errored() bool { return r.Cause != "" }

// Case rebuilds the dataset case a result was produced from (without
// metadata), for attribution and oracle replay on train runs.
func (r *CaseResult) Case() dataset.Case {
	return dataset.Case{CaseID: r.CaseID, Context: r.Context, Expected: r.Expected}
}

// redact drops every text a case result holds, keeping its shape.
func (r *CaseResult) redact() {
	r.Context, r.Expected = nil, nil
	r.Trace.Final = ""
	if r.ExecError != "" {
		r.ExecError = "step failed"
	}
	if r.ScoreError != "" {
		r.ScoreError = "scoring failed"
	}
	r.Trace.Error = r.ExecError
	for i := range r.Trace.Steps {
		st := &r.Trace.Steps[i]
		st.Messages, st.Input, st.RawOutput, st.Output, st.Parsed = nil, "", "", "", nil
		st.Retrieved, st.ToolCalls, st.Samples = nil, nil, nil
		st.ParseError = ""
		if st.Error != "" {
			st.Error = "failed"
		}
	}
}
