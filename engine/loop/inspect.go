package loop

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/run"
)

// InspectRequest selects train cases of a run.
type InspectRequest struct {
	Tenant   string
	Run      string
	MaxScore *float64 // only cases scoring at most this
	MinScore *float64
	Failed   bool     // only cases below the scorer's maximum or with an error
	Step     string   // only cases whose trace has an error or empty output at this step
	CaseIDs  []string // only these cases
	Offset   int
	Limit    int // default 5, at most 20
	// MaxChars bounds the whole page (default 40000): long step texts are
	// shortened, with a note saying so.
	MaxChars int
}

// CaseView is one inspected train case.
type CaseView struct {
	CaseID     string             `json:"case_id"`
	Score      float64            `json:"composite_score"`
	Breakdown  map[string]float64 `json:"score_breakdown,omitempty"`
	ExecError  string             `json:"exec_error,omitempty"`
	ScoreError string             `json:"score_error,omitempty"`
	Context    map[string]any     `json:"context,omitempty"`
	Expected   map[string]any     `json:"expected,omitempty"`
	Final      string             `json:"final_output"`
	Steps      []StepView         `json:"steps"`
}

// StepView is one step of an inspected case.
type StepView struct {
	StepID       string   `json:"step_id"`
	Kind         string   `json:"kind"`
	Prompt       string   `json:"prompt,omitempty"` // rendered messages, role-tagged
	Output       string   `json:"output"`
	Retrieved    []string `json:"retrieved,omitempty"` // titles, best first
	FinishReason string   `json:"finish_reason,omitempty"`
	Tokens       int      `json:"tokens"`
	LatencyMS    float64  `json:"latency_ms"`
	CacheHits    int      `json:"cache_hits,omitempty"`
	Skipped      bool     `json:"skipped,omitempty"`
	Error        string   `json:"error,omitempty"`
}

// CasePage is one page of inspected cases.
type CasePage struct {
	Run       string     `json:"run"`
	Variant   string     `json:"variant"`
	Matched   int        `json:"matched"`
	Offset    int        `json:"offset"`
	Cases     []CaseView `json:"cases"`
	Truncated bool       `json:"truncated"`
	Note      string     `json:"note,omitempty"`
}

// InspectCases pages through the cases of a train run: only a train run
// the server recorded in its index (see trainRun), never a directory found
// in the workspace.
func (w *Workspace) InspectCases(ctx context.Context, req InspectRequest) (*CasePage, error) {
	t, err := w.tenant(req.Tenant)
	if err != nil {
		return nil, err
	}
	store, sum, err := w.trainRun(ctx, t, req.Run)
	if err != nil {
		return nil, err
	}
	limit := req.Limit
	if limit <= 0 {
		limit = 5
	}
	limit = min(limit, 20)
	maxChars := req.MaxChars
	if maxChars <= 0 || maxChars > 40000 {
		maxChars = 40000
	}
	ids := map[string]bool{}
	for _, id := range req.CaseIDs {
		ids[id] = true
	}
	var matched []run.CaseResult
	err = store.Cases(req.Run, func(cr run.CaseResult) error {
		if !matches(&cr, req, ids) {
			return nil
		}
		matched = append(matched, cr)
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(matched, func(i, j int) bool { return matched[i].CaseID < matched[j].CaseID })
	page := &CasePage{Run: req.Run, Variant: sum.Variant, Matched: len(matched), Offset: req.Offset, Cases: []CaseView{}}
	if req.Offset < 0 || req.Offset > len(matched) {
		return nil, fmt.Errorf("offset %d is past the %d matching cases", req.Offset, len(matched))
	}
	// Each case gets an equal share of the page; texts beyond it are cut.
	// JSON escaping and nested contexts can still push a page over, so the
	// share shrinks until it fits, and failing that the page holds fewer
	// cases (the note says where to continue).
	end := min(req.Offset+limit, len(matched))
	for fits := false; !fits; {
		share := maxChars / max(1, end-req.Offset)
		for range 8 {
			page.Cases, page.Truncated = page.Cases[:0], false
			for _, cr := range matched[req.Offset:end] {
				cv, cut := caseView(&cr, share)
				page.Truncated = page.Truncated || cut
				page.Cases = append(page.Cases, cv)
			}
			if b, err := json.Marshal(page); err == nil && len(b) <= maxChars-500 { // room for the note
				fits = true
				break
			}
			share /= 2
		}
		if !fits && end-req.Offset > 1 {
			end--
		} else {
			fits = true
		}
	}
	if page.Truncated {
		page.Note = "long texts were shortened to keep the page under ~40k characters; ask for fewer cases (limit) or one case_id to see more"
	}
	if end < len(matched) {
		page.Note = strings.TrimSpace(page.Note + fmt.Sprintf(" %d more cases match: call again with offset %d", len(matched)-end, end))
	}
	return page, nil
}

func matches(cr *run.CaseResult, req InspectRequest, ids map[string]bool) bool {
	if len(ids) > 0 && !ids[cr.CaseID] {
		return false
	}
	if req.Failed && !(cr.Failed() || cr.Score < 100) {
		return false
	}
	if req.MaxScore != nil && cr.Score > *req.MaxScore {
		return false
	}
	if req.MinScore != nil && cr.Score < *req.MinScore {
		return false
	}
	if req.Step != "" {
		st := cr.Trace.Step(req.Step)
		if st == nil || !(st.Error != "" || strings.TrimSpace(st.Output) == "" || st.Skipped) {
			return false
		}
	}
	return true
}

// caseView renders a case within a character budget.
func caseView(cr *run.CaseResult, budget int) (CaseView, bool) {
	cv := CaseView{CaseID: cr.CaseID, Score: cr.Score, Breakdown: cr.Breakdown, ExecError: cr.ExecError,
		ScoreError: cr.ScoreError, Context: cr.Context, Expected: cr.Expected}
	texts := 1 + 2*len(cr.Trace.Steps) + 1 // final, prompt+output per step, context
	per := max(40, budget/max(1, texts))
	cut := false
	clip := func(s string) string {
		c, was := clipText(s, per)
		cut = cut || was
		return c
	}
	cv.Final = clip(cr.Trace.Final)
	cv.Context = clipMap(cr.Context, per, &cut)
	for _, st := range cr.Trace.Steps {
		sv := StepView{StepID: st.StepID, Kind: st.Kind, Output: clip(st.Output), FinishReason: st.FinishReason,
			Tokens: st.PromptTokens + st.CompletionTokens, LatencyMS: st.LatencyMS, CacheHits: st.CacheHits,
			Skipped: st.Skipped, Error: st.Error}
		sv.Prompt = clip(renderMessages(st))
		for _, d := range st.Retrieved {
			sv.Retrieved = append(sv.Retrieved, d.Title)
		}
		cv.Steps = append(cv.Steps, sv)
	}
	return cv, cut
}

func renderMessages(st chain.StepTrace) string {
	var b strings.Builder
	for _, m := range st.Messages {
		fmt.Fprintf(&b, "[%s]\n%s\n", m.Role, m.Content)
	}
	return b.String()
}

func clipText(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf(" …[%d more characters]", len(s)-cut), true
}

// clipMap shortens long strings inside a case context (HotpotQA carries
// ten paragraphs per case).
func clipMap(m map[string]any, n int, cut *bool) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = clipValue(v, n, cut)
	}
	return out
}

func clipValue(v any, n int, cut *bool) any {
	switch x := v.(type) {
	case string:
		s, was := clipText(x, n)
		*cut = *cut || was
		return s
	case map[string]any:
		return clipMap(x, n, cut)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = clipValue(e, max(16, n/max(1, len(x))), cut)
		}
		return out
	}
	return v
}
