package attribution

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/review"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/prompts"
)

// CaseSummary is what the analysis model sees of one failure: short
// excerpts of train content only.
type CaseSummary struct {
	CaseID   string `json:"case_id"`
	Step     string `json:"step"`
	Input    string `json:"input"`
	Output   string `json:"output"`
	Expected string `json:"expected"`
}

// Pattern is one named sub-pattern of reasoning failures.
type Pattern struct {
	Name         string   `json:"name" jsonschema:"short name of the pattern"`
	Description  string   `json:"description" jsonschema:"what the failures of the pattern have in common"`
	CaseIDs      []string `json:"case_ids" jsonschema:"the train cases showing it"`
	SuggestedFix string   `json:"suggested_fix,omitempty" jsonschema:"the analysis model's suggestion"`
}

// Analysis is the model's grouping of failures. Dropped reports what the
// model named that was not in its input, so invented cases never reach the
// agent silently.
type Analysis struct {
	Patterns []Pattern `json:"patterns" jsonschema:"named patterns among the reasoning failures"`
	// Dropped says, per pattern, which case ids were removed as unknown and
	// whether the pattern was dropped for having none left.
	Dropped []string `json:"dropped,omitempty" jsonschema:"what was removed from the model's answer: case ids not among the analyzed failures, patterns with no case or no name, patterns past the first 20"`
	// Unassigned are the input cases no pattern claims.
	Unassigned []string `json:"unassigned,omitempty" jsonschema:"reasoning failures in no pattern"`
	// Analyzed of Failures were sent to the model: a run with more
	// reasoning failures than maxAnalyzed is analyzed on its first ones.
	Analyzed int            `json:"analyzed" jsonschema:"reasoning failures the analysis model was shown"`
	Failures int            `json:"failures" jsonschema:"reasoning failures of the run; more than analyzed when only the first were shown"`
	Usage    provider.Usage `json:"usage" jsonschema:"tokens the analysis call used"`
}

const (
	// excerpt bounds the text of each summary field sent to the model.
	excerpt = 400
	// maxAnalyzed bounds the failures one analysis call is shown (about
	// 150 KB of excerpts), and with them every case list of its answer.
	maxAnalyzed = 100
	// maxPatterns bounds the patterns kept of one answer, and with them
	// the Dropped notes.
	maxPatterns = 20
)

// analysisSchema is the strict shape of the analysis answer.
var analysisSchema = json.RawMessage(`{"type":"object","additionalProperties":false,"required":["patterns"],
"properties":{"patterns":{"type":"array","items":{"type":"object","additionalProperties":false,
"required":["name","description","case_ids","suggested_fix"],
"properties":{"name":{"type":"string"},"description":{"type":"string"},
"case_ids":{"type":"array","items":{"type":"string"}},"suggested_fix":{"type":"string"}}}}}}`)

// Summaries builds the analysis input from the reasoning failures of a
// train run: the root step's last user message, its output and the expected
// answer, each clipped.
func Summaries(results []run.CaseResult, rep *Report, opts Options) []CaseSummary {
	byID := make(map[string]*run.CaseResult, len(results))
	for i := range results {
		byID[results[i].CaseID] = &results[i]
	}
	var out []CaseSummary
	for _, f := range rep.Failures {
		r := byID[f.CaseID]
		if f.Class != ClassReasoning || r == nil {
			continue
		}
		s := CaseSummary{CaseID: f.CaseID, Step: f.RootStep}
		if st := r.Trace.Step(f.RootStep); st != nil {
			for _, m := range st.Messages {
				if m.Role == "user" {
					s.Input = clip(m.Content, excerpt)
				}
			}
			s.Output = clip(st.Output, excerpt)
		}
		s.Expected = clip(strings.Join(answerTexts(r, opts.answerFields()), " | "), excerpt)
		out = append(out, s)
	}
	return out
}

// Analyze asks model to group failures into named sub-patterns. The answer
// must be the strict JSON the analysis prompt asks for; anything else is an
// error, never a guessed pattern.
func Analyze(ctx context.Context, client provider.Client, model string, failures []CaseSummary) (*Analysis, error) {
	if len(failures) == 0 {
		return nil, errors.New("no failures to analyze: the run has no reasoning failures on train cases")
	}
	total := len(failures)
	failures = failures[:min(total, maxAnalyzed)]
	system, err := prompts.Text(prompts.Analysis)
	if err != nil {
		return nil, err
	}
	var user strings.Builder
	for i, f := range failures {
		if i > 0 {
			user.WriteString("\n\n")
		}
		fmt.Fprintf(&user, "case_id: %s\nstep: %s\ninput: %s\noutput: %s\nexpected: %s",
			f.CaseID, f.Step, clip(f.Input, excerpt), clip(f.Output, excerpt), clip(f.Expected, excerpt))
	}
	zero := 0.0
	resp, err := client.Complete(ctx, provider.Request{Model: model, JSONSchema: analysisSchema,
		Params:   provider.Params{Temperature: &zero},
		Messages: []provider.Message{{Role: "system", Content: system}, {Role: "user", Content: user.String()}}})
	if err != nil {
		return nil, fmt.Errorf("failure analysis by model %s: %w", model, err)
	}
	var answer struct {
		Patterns []Pattern `json:"patterns"`
	}
	if err := review.DecodeJSONAnswer(resp.Content, &answer); err != nil {
		return nil, fmt.Errorf("failure analysis by model %s: the answer is not the JSON the analysis prompt asks for (%v); nothing was inferred from it", model, err)
	}
	if answer.Patterns == nil {
		return nil, fmt.Errorf("failure analysis by model %s: the answer has no \"patterns\" list; nothing was inferred from it", model)
	}

	known := map[string]bool{}
	for _, f := range failures {
		known[f.CaseID] = true
	}
	out := &Analysis{Patterns: []Pattern{}, Usage: resp.Usage, Analyzed: len(failures), Failures: total}
	claimed := map[string]bool{}
	if n := len(answer.Patterns); n > maxPatterns {
		answer.Patterns = answer.Patterns[:maxPatterns]
		out.Dropped = append(out.Dropped, fmt.Sprintf("%d patterns past the first %d: dropped", n-maxPatterns, maxPatterns))
	}
	for i, p := range answer.Patterns {
		name := strings.TrimSpace(p.Name)
		if name == "" {
			name = fmt.Sprintf("pattern #%d", i+1)
		}
		var keep, unknown []string
		for _, id := range p.CaseIDs {
			switch {
			case !known[id]:
				unknown = append(unknown, id)
			case !slices.Contains(keep, id):
				keep = append(keep, id)
			}
		}
		switch {
		case len(keep) == 0 && len(unknown) == 0:
			out.Dropped = append(out.Dropped, fmt.Sprintf("%s: dropped, it lists no case ids", name))
			continue
		case len(keep) == 0:
			out.Dropped = append(out.Dropped, fmt.Sprintf("%s: dropped, it names no case of the input (%s)", name, quoteList(unknown, 3)))
			continue
		case strings.TrimSpace(p.Name) == "":
			out.Dropped = append(out.Dropped, fmt.Sprintf("%s: dropped, it has no name", name))
			continue
		case len(unknown) > 0:
			out.Dropped = append(out.Dropped, fmt.Sprintf("%s: removed case ids not in the input (%s)", name, quoteList(unknown, 3)))
		}
		p.Name, p.CaseIDs = name, keep
		for _, id := range keep {
			claimed[id] = true
		}
		out.Patterns = append(out.Patterns, p)
	}
	for _, f := range failures {
		if !claimed[f.CaseID] {
			out.Unassigned = append(out.Unassigned, f.CaseID)
		}
	}
	return out, nil
}
