package chain

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"

	"github.com/fapo-dev/fapo/engine/dataset"
)

func newTokenKey() (k [16]byte) {
	_, _ = rand.Read(k[:]) // crypto/rand.Read never fails on supported platforms
	return k
}

// caseToken is the opaque .case_token of a case: the same for every step of
// one run, unrelated across runs and to the case id.
func (ch *Chain) caseToken(caseID string) string {
	h := sha256.New()
	h.Write(ch.tokenKey[:])
	h.Write([]byte(caseID))
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// Rendering is what a chain would show its models for one case, computed
// without a model call: the review gate scans it for answers.
type Rendering struct {
	// Prompts holds every rendered template (messages of model steps,
	// inputs of model-free steps) and the outputs of model-free steps, in
	// step order.
	Prompts []string
	// Sourced holds what retrieve steps drew from the case or the tenant's
	// corpus: input, not text the variant wrote.
	Sourced []string
	// Final is the output step's value when a model-free step produced it
	// ("" when a model step did, or it failed).
	Final string
	// FinalFromModel is set when a model-calling step produced the output.
	FinalFromModel bool
}

// Render runs the chain on c with stand-ins for every model output (stand-in
// set 0 or 1 differ in every value) and model-free steps (parse, retrieve,
// branch) run for real, recording every rendered template. A failed step
// does not stop the rendering: later steps see an empty value.
func (ch *Chain) Render(c dataset.Case, standIn int) Rendering {
	if ch.ext != nil {
		return ch.renderExternal()
	}
	x := ch.newExecution(c, nil, true)
	var r Rendering
	x.capture = func(text string) { r.Prompts = append(r.Prompts, text) }
	for _, s := range ch.steps {
		st := StepTrace{StepID: s.cfg.ID, Kind: s.cfg.Kind}
		switch {
		case x.skip[s.cfg.ID]:
			st.Skipped = true
		case s.kind.callsModel:
			_ = s.kind.placeholder(x, s, &st)
			st.Output = fmt.Sprintf("<output %d of step %s>", standIn, s.cfg.ID)
			if st.Parsed != nil {
				st.Parsed = restamp(st.Parsed, standIn)
			}
		default:
			if err := s.kind.run(context.Background(), x, s, &st); err != nil {
				st = StepTrace{StepID: s.cfg.ID, Kind: s.cfg.Kind}
			} else if s.cfg.Kind == "retrieve" {
				r.Sourced = append(r.Sourced, st.Output)
			} else {
				r.Prompts = append(r.Prompts, st.Output)
			}
		}
		x.publish(s, &st)
		if s.cfg.ID == ch.output {
			r.FinalFromModel = s.kind.callsModel && !st.Skipped
			if !r.FinalFromModel {
				r.Final = st.Output
			}
		}
	}
	return r
}

// restamp makes a placeholder structured value differ between stand-in
// sets, so that a value that does not change is known not to come from it.
func restamp(v any, n int) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[k] = restamp(e, n)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = restamp(e, n)
		}
		return out
	case string:
		return fmt.Sprintf("%s#%d", t, n)
	case float64:
		return float64(n + 1)
	case bool:
		return n == 1
	}
	return v
}

// ModelFreeOutput says why the chain's final output depends on no model
// call, or "" when it does. It walks the graph (the output step and every
// step it reads, transitively; a template that reads .steps whole reads
// every earlier step), then renders each of cases with two different sets
// of model stand-ins: a model-free output step whose value does not change
// ignores its models, however its templates are wired.
func (ch *Chain) ModelFreeOutput(cases ...dataset.Case) string {
	out := ch.byID[ch.output]
	if out == nil || ch.ext != nil {
		// An external program's answer is its own: fapo cannot see which
		// of its steps produced it.
		return ""
	}
	if msg := ch.graphModelFree(out); msg != "" {
		return msg
	}
	for _, c := range cases {
		a, b := ch.Render(c, 0), ch.Render(c, 1)
		if !a.FinalFromModel && a.Final != "" && a.Final == b.Final {
			return fmt.Sprintf("the chain's output step %q gives the same value whatever its models answer: its output ignores every model call; make the output come from a model's answer", ch.output)
		}
	}
	return ""
}

func (ch *Chain) graphModelFree(out *step) string {
	seen := map[string]bool{}
	var walk func(s *step) bool
	walk = func(s *step) bool {
		if seen[s.cfg.ID] {
			return false
		}
		seen[s.cfg.ID] = true
		if s.kind.callsModel {
			return true
		}
		deps := s.reads
		if s.readsAllSteps() {
			deps = nil
			for _, e := range ch.steps {
				if e == s {
					break
				}
				deps = append(deps, e.cfg.ID)
			}
		}
		for _, id := range deps {
			if d := ch.byID[id]; d != nil && walk(d) {
				return true
			}
		}
		return false
	}
	if walk(out) {
		return ""
	}
	var kinds []string
	for id := range seen {
		kinds = append(kinds, fmt.Sprintf("%s (%s)", id, ch.byID[id].cfg.Kind))
	}
	slices.Sort(kinds)
	return fmt.Sprintf("the chain's output step %q depends on no model call (it reads only %v): a pipeline whose answer is computed without a model is a lookup, not a prompt; make the output come from an llm, reflect, react or vote step", ch.output, kinds)
}

// readsAllSteps reports whether a template of s reads .steps as a whole
// ({{range .steps}}, {{json .steps}}), which reaches every earlier step.
func (s *step) readsAllSteps() bool {
	for _, t := range s.tmpl {
		var refs [][]string
		for _, tt := range t.Templates() {
			if tt.Tree != nil {
				collectRefs(tt.Root, true, &refs)
			}
		}
		for _, r := range refs {
			if len(r) == 1 && r[0] == "steps" {
				return true
			}
		}
	}
	return false
}
