package loop

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/fapo-dev/fapo/engine/attribution"
	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/scoring"
)

// InspectRequest selects train cases of a run.
type InspectRequest struct {
	Tenant   string
	Run      string
	MaxScore *float64 // only cases scoring at most this
	MinScore *float64
	Failed   bool // only scored cases below full marks
	Errored  bool // only cases with no answer because of the infrastructure
	// Step keeps cases whose failure was attributed to this step, or whose
	// trace has an error, a cut-off (finish reason length), an empty output
	// or a skip at it.
	Step string
	// Class keeps cases attributed to this failure class; Cluster to this
	// class@step cluster of the run's attribution.
	Class   string
	Cluster string
	CaseIDs []string // only these cases
	Offset  int
	Limit   int // default 5, at most 20
	// MaxChars bounds the whole page (default 40000): long step texts are
	// shortened, with a note saying so.
	MaxChars int
}

// CaseView is one inspected train case.
type CaseView struct {
	CaseID    string             `json:"case_id" jsonschema:"the train case's id"`
	Score     float64            `json:"composite_score" jsonschema:"the case's score, 0 to 100 (0 for an errored case, which is in no mean)"`
	Breakdown map[string]float64 `json:"score_breakdown,omitempty" jsonschema:"per scorer component, for composite scorers"`
	// Errored, Failed: the vocabulary of every tool.
	Errored    bool   `json:"errored,omitempty" jsonschema:"no answer because of provider or network errors; not scored"`
	Failed     bool   `json:"failed,omitempty" jsonschema:"scored below full marks"`
	Class      string `json:"class,omitempty" jsonschema:"the failure class attribution gave the case (infrastructure, truncation, cascade, retrieval, format, reasoning)"`
	RootStep   string `json:"root_step,omitempty" jsonschema:"the step attribution blamed"`
	Evidence   string `json:"evidence,omitempty" jsonschema:"why attribution chose that class, in one sentence"`
	ExecError  string `json:"exec_error,omitempty" jsonschema:"the pipeline's error, when it failed"`
	ScoreError string `json:"score_error,omitempty" jsonschema:"the scorer's error, when it could not score"`
	// Context and Expected are the train case's fields.
	Context  map[string]any `json:"context,omitempty" jsonschema:"the case's inputs, as templates see them under .context"`
	Expected map[string]any `json:"expected,omitempty" jsonschema:"the case's expected values (never visible to templates)"`
	Final    string         `json:"final_output" jsonschema:"the chain's output, what the scorer scored"`
	Steps    []StepView     `json:"steps" jsonschema:"each step in execution order"`
}

// StepView is one step of an inspected case.
type StepView struct {
	StepID       string   `json:"step_id" jsonschema:"the step's id in chain.toml"`
	Kind         string   `json:"kind" jsonschema:"llm, retrieve, parse, reflect, react, vote or branch"`
	Prompt       string   `json:"prompt,omitempty" jsonschema:"the rendered messages, each after a [role] line"`
	Output       string   `json:"output" jsonschema:"the step's output, what later steps read as .steps.ID.output"`
	Retrieved    []string `json:"retrieved,omitempty" jsonschema:"retrieve steps: titles of the passages retrieved, best first"`
	FinishReason string   `json:"finish_reason,omitempty" jsonschema:"the model's finish reason; length means cut off by max_tokens (class truncation)"`
	Tokens       int      `json:"tokens" jsonschema:"prompt plus completion tokens"`
	LatencyMS    float64  `json:"latency_ms" jsonschema:"wall time of the step"`
	CacheHits    int      `json:"cache_hits,omitempty" jsonschema:"model calls answered from the response cache"`
	Skipped      bool     `json:"skipped,omitempty" jsonschema:"a branch skipped the step"`
	Error        string   `json:"error,omitempty" jsonschema:"the step's error"`
}

// CasePage is one page of inspected cases.
type CasePage struct {
	Run       string     `json:"run" jsonschema:"the train run"`
	Variant   string     `json:"variant" jsonschema:"the variant the run evaluated"`
	Matched   int        `json:"matched" jsonschema:"cases matching the filters, over all pages"`
	Offset    int        `json:"offset" jsonschema:"position of the first case of this page among the matching ones"`
	Cases     []CaseView `json:"cases" jsonschema:"this page's cases, by case id"`
	Truncated bool       `json:"truncated" jsonschema:"long texts of this page were shortened"`
	Note      string     `json:"note,omitempty" jsonschema:"how to see more: the next offset, or fewer cases for longer texts"`
}

// InspectCases pages through the cases of a train run: only a train run
// the server recorded in its index (see trainRun), never a directory found
// in the workspace.
func (w *Workspace) InspectCases(ctx context.Context, req InspectRequest) (*CasePage, error) {
	t, err := w.tenant(req.Tenant)
	if err != nil {
		return nil, err
	}
	sum, cases, err := w.trainRun(ctx, t, req.Run)
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
	all := cases
	// The run's attribution, as attribute gives it: the class, cluster and
	// step filters read it.
	ch, err := w.chainOf(t, nil, sum.Variant)
	if err != nil {
		return nil, err
	}
	rep := attribution.Attribute(all, ch.Steps(), AttributionOptions(t))
	byCase := map[string]*attribution.Failure{}
	for i := range rep.Failures {
		byCase[rep.Failures[i].CaseID] = &rep.Failures[i]
	}
	if err := checkClassFilters(&req, rep); err != nil {
		return nil, err
	}
	var matched []run.CaseResult
	for i := range all {
		if matches(&all[i], byCase[all[i].CaseID], req, ids) {
			matched = append(matched, all[i])
		}
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
				if f := byCase[cr.CaseID]; f != nil {
					cv.Class, cv.RootStep, cv.Evidence = f.Class, f.RootStep, f.Evidence
				}
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

// checkClassFilters normalizes the class and cluster filters and refuses
// names the run's attribution cannot match, naming those it can.
func checkClassFilters(req *InspectRequest, rep *attribution.Report) error {
	if req.Class != "" {
		req.Class = strings.ToLower(strings.TrimSpace(req.Class))
		if !slices.Contains(attribution.Classes, req.Class) {
			return fmt.Errorf("class %q is not a failure class: use one of %s", clipID(req.Class), strings.Join(attribution.Classes, ", "))
		}
	}
	if req.Cluster == "" {
		return nil
	}
	req.Cluster = strings.ReplaceAll(req.Cluster, " ", "")
	var names []string
	for _, c := range rep.Clusters {
		if strings.EqualFold(c.Name(), req.Cluster) {
			req.Cluster = c.Name()
			return nil
		}
		names = append(names, c.Name())
	}
	if len(names) == 0 {
		return fmt.Errorf("cluster %q: run %s has no failure clusters (nothing was attributed): drop cluster, or filter with failed, errored or case_ids", clipID(req.Cluster), req.Run)
	}
	return fmt.Errorf("cluster %q is not a cluster of this run's attribution: use one of %s (class@step)", clipID(req.Cluster), strings.Join(names, ", "))
}

func matches(cr *run.CaseResult, f *attribution.Failure, req InspectRequest, ids map[string]bool) bool {
	if len(ids) > 0 && !ids[cr.CaseID] {
		return false
	}
	if req.Failed && (cr.Errored() || cr.Score >= scoring.MaxScore) {
		return false
	}
	if req.Errored && !cr.Errored() {
		return false
	}
	if req.MaxScore != nil && cr.Score > *req.MaxScore {
		return false
	}
	if req.MinScore != nil && cr.Score < *req.MinScore {
		return false
	}
	if req.Class != "" && (f == nil || f.Class != req.Class) {
		return false
	}
	if req.Cluster != "" && (f == nil || f.Class+"@"+f.RootStep != req.Cluster) {
		return false
	}
	if req.Step != "" {
		st := cr.Trace.Step(req.Step)
		attributed := f != nil && f.RootStep == req.Step
		troubled := st != nil && (st.Error != "" || strings.TrimSpace(st.Output) == "" || st.Skipped || st.FinishReason == "length")
		if !attributed && !troubled {
			return false
		}
	}
	return true
}

// caseView renders a case within a character budget.
func caseView(cr *run.CaseResult, budget int) (CaseView, bool) {
	cv := CaseView{CaseID: cr.CaseID, Score: cr.Score, Breakdown: cr.Breakdown, ExecError: cr.ExecError,
		Errored: cr.Errored(), Failed: !cr.Errored() && cr.Score < scoring.MaxScore,
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

// clipText shortens s to at most n bytes as a JSON string (what a tool
// result carries: a newline or a quote is two bytes there, a '<' six, as
// encoding/json escapes it), cut at a character and marked with how much
// was left out.
func clipText(s string, n int) (string, bool) {
	size := 0
	for i, r := range s {
		size += jsonSize(r, s[i:])
		if size > n {
			return s[:i] + fmt.Sprintf(" …[%d more characters]", len(s)-i), true
		}
	}
	return s, false
}

// jsonSize is how many bytes encoding/json writes for r, the rune at the
// start of rest.
func jsonSize(r rune, rest string) int {
	switch {
	case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t' || r == '\b' || r == '\f':
		return 2
	case r < 0x20 || r == '<' || r == '>' || r == '&' || r == '\u2028' || r == '\u2029':
		return 6
	case r == utf8.RuneError:
		if _, w := utf8.DecodeRuneInString(rest); w == 1 {
			return 6 // invalid UTF-8, written as \ufffd
		}
	}
	return utf8.RuneLen(r)
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
