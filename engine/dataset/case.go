// Package dataset holds the cases a tenant is optimized and judged on: the JSONL
// case format, a streaming reader that reports problems with file:line, seeded
// stratified splits, and the sealed store that keeps held-out splits out of the
// agent's workspace.
package dataset

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
