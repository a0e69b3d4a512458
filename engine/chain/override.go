package chain

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/fapo-dev/fapo/engine/dataset"
)

// StepOverride stands in for a step's result in an oracle replay: the step
// is not run, later steps see these values as if it had produced them.
type StepOverride struct {
	// Output is what later steps read as {{.steps.ID.output}}. When it is
	// empty and Retrieved is set, it is the passages formatted exactly as a
	// retrieve step formats them.
	Output string
	// Parsed is {{.steps.ID.parsed}}. When nil it is derived the way the
	// step itself would derive it: Output for a parse step, Output decoded
	// as JSON for an llm step with a json_schema.
	Parsed any
	// Retrieved is {{.steps.ID.retrieved}} of a retrieve step.
	Retrieved []RetrievedDoc
}

// RunWithOverrides executes the chain on one case like Run, except that the
// steps named in overrides are not run: their trace holds the override and
// no model call, and every other step, downstream ones included, runs
// normally. An override for an unknown step fails the case before any call.
//
// It runs a copy of the chain whose overridden steps have a kind that only
// replays the override, so the executor loop (skips, branches, errors) is
// the one Run uses and cannot drift from it.
func (ch *Chain) RunWithOverrides(ctx context.Context, c dataset.Case, m Models, overrides map[string]StepOverride) *Trace {
	if len(overrides) == 0 {
		return ch.Run(ctx, c, m)
	}
	var unknown []string
	for id := range overrides {
		if ch.byID[id] == nil {
			unknown = append(unknown, id)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return &Trace{CaseID: c.CaseID, Error: fmt.Sprintf("override for unknown step %s; the chain's steps are %s",
			strings.Join(unknown, ", "), strings.Join(ch.stepIDs(), ", "))}
	}
	if ch.ext != nil {
		return ch.runExternalOverride(ctx, c, m, overrides)
	}
	cp := &Chain{corpus: ch.corpus, output: ch.output, files: ch.files, tokenKey: ch.tokenKey,
		steps: make([]*step, len(ch.steps)), byID: make(map[string]*step, len(ch.steps))}
	for i, s := range ch.steps {
		if ov, ok := overrides[s.cfg.ID]; ok {
			s = s.overridden(ov)
		}
		cp.steps[i] = s
		cp.byID[s.cfg.ID] = s
	}
	return cp.Run(ctx, c, m)
}

// overridden returns a step that keeps s's configuration (so its trace and
// published views look like s's) but replays ov instead of running. The
// corpus index is not copied: a replayed step never searches.
func (s *step) overridden(ov StepOverride) *step {
	k := *s.kind
	k.run = func(_ context.Context, _ *execution, s *step, st *StepTrace) error {
		st.Retrieved = slices.Clone(ov.Retrieved)
		st.Output = ov.Output
		if st.Output == "" && len(ov.Retrieved) > 0 {
			st.Output = formatPassages(ov.Retrieved)
		}
		st.RawOutput = st.Output
		st.Parsed = ov.Parsed
		if st.Parsed == nil {
			switch {
			case s.cfg.Kind == "parse":
				st.Parsed = st.Output
			case s.schema != nil:
				v, err := parseJSONText(st.Output)
				if err == nil && s.validator != nil {
					err = validateOutput(s.validator, v)
				}
				if err != nil {
					return fmt.Errorf("override of step %s is not the JSON its schema asks for: %w", s.cfg.ID, err)
				}
				st.Parsed = v
			}
		}
		return nil
	}
	return &step{cfg: s.cfg, kind: &k, tmpl: s.tmpl, texts: s.texts, regex: s.regex, schema: s.schema, validator: s.validator, reads: s.reads}
}

func (ch *Chain) stepIDs() []string {
	ids := make([]string, len(ch.steps))
	for i, s := range ch.steps {
		ids[i] = s.cfg.ID
	}
	return ids
}

// PassagesFromValue reads passages in any shape a retrieve step's source
// accepts (strings, {title, text}, HotpotQA {title, sentences} or
// [title, [sentences]]), so that gold passages for an override are the
// same documents the step would have searched.
func PassagesFromValue(v any) ([]RetrievedDoc, error) {
	docs, err := docsFromValue(v)
	if err != nil {
		return nil, err
	}
	out := make([]RetrievedDoc, len(docs))
	for i, d := range docs {
		out[i] = RetrievedDoc{ID: d.ID, Title: d.Title, Text: d.Text}
	}
	return out, nil
}
