// Package dataset holds the cases a tenant is optimized and judged on: the JSONL
// case format, a streaming reader that reports problems with file:line, seeded
// stratified splits, and the sealed store that keeps held-out splits out of the
// agent's workspace.
package dataset

import (
	"strings"

	"github.com/fapo-dev/fapo/engine/internal/jsontext"
)

// Case is one line of a dataset file.
//
// Context is what the pipeline may read; Expected is what the scorer compares
// against; Metadata carries provenance and optional grouping (metadata.group
// keeps related cases in the same split).
type Case struct {
	CaseID   string         `json:"case_id"`
	TaskType string         `json:"task_type"`
	Context  map[string]any `json:"context"`
	Expected map[string]any `json:"expected"`
	Metadata map[string]any `json:"metadata,omitempty"`
}

// Split names one part of a sealed dataset.
type Split string

const (
	Train      Split = "train"
	Validation Split = "validation"
	Test       Split = "test"
)

// Valid reports whether s names a known split.
func (s Split) Valid() bool { return s == Train || s == Validation || s == Test }

// HeldOut reports whether s lives only in the sealed store.
func (s Split) HeldOut() bool { return s == Validation || s == Test }

// Lookup returns the value at a dotted path such as "expected.label",
// "metadata.group" or "expected.answers.0"; the first segment names a
// top-level field, the rest is read as jsontext.Lookup reads it.
func (c Case) Lookup(path string) (any, bool) {
	root, rest, _ := strings.Cut(path, ".")
	var cur any
	switch root {
	case "case_id":
		cur = c.CaseID
	case "task_type":
		cur = c.TaskType
	case "context":
		cur = c.Context
	case "expected":
		cur = c.Expected
	case "metadata":
		cur = c.Metadata
	default:
		return nil, false
	}
	cur, err := jsontext.Lookup(cur, rest)
	if err != nil {
		return nil, false
	}
	if m, ok := cur.(map[string]any); ok && m == nil {
		return nil, false
	}
	return cur, true
}
