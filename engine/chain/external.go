package chain

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"text/template"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/internal/suggest"
)

// An external chain is a tenant's own program (tenant.toml [pipeline]) that
// runs the steps itself. Its chain.toml declares what a variant may change:
// the steps the program reports (id and kind), each step's prompt files and
// parameters, and the values of the structural switches the program
// declares. fapo renders nothing: the program receives the texts and
// parameters and uses them as it likes.

// ExternalKinds are the step kinds a program may report.
var ExternalKinds = []string{"llm", "retrieve", "parse", "tool", "other"}

// ExternalCase is what a program is asked to do for one case.
type ExternalCase struct {
	// CaseID is for the trace only: it is never sent to the program.
	CaseID string
	// Token is the case's opaque .case_token of this run.
	Token  string
	Inputs map[string]any
	// Prompts and Systems are the variant's prompt texts by step id.
	Prompts map[string]string
	Systems map[string]string
	// Params are each step's parameters (sampling parameters, k, model).
	Params map[string]map[string]any
	// Switches are the values of the structural switches.
	Switches map[string]any
	// Override, when set, asks the program to use this value for a step
	// instead of running it (oracle replay).
	Override *ExternalOverride
}

// ExternalOverride is a step's replayed value in an ExternalCase.
type ExternalOverride struct {
	Step      string         `json:"step"`
	Output    string         `json:"output"`
	Parsed    any            `json:"parsed,omitempty"`
	Retrieved []RetrievedDoc `json:"retrieved,omitempty"`
}

// Executor runs cases of an external chain: engine/pipeline implements it
// over a long-lived program or an HTTP endpoint. The trace it returns
// carries the reported steps; Trace.Cause is set when the program, not the
// variant, failed.
type Executor interface {
	RunCase(ctx context.Context, c ExternalCase, m Models) *Trace
}

// RunScoper is implemented by an Executor whose per-run resources live as
// long as one run: engine/pipeline's model-endpoint token, which a program
// must not be able to use once the run that handed it out has finished.
// BeginRun returns the context the run's cases execute under and the
// function that ends the run.
type RunScoper interface {
	BeginRun(ctx context.Context) (context.Context, func())
}

// BeginRun opens a run of the chain: cases run under the returned context
// share the run's resources, and end releases them. A chain without
// per-run resources returns ctx and a no-op; a case run outside any run
// gets resources of its own, for that case only.
func (ch *Chain) BeginRun(ctx context.Context) (context.Context, func()) {
	if ch.ext != nil {
		if rs, ok := ch.ext.spec.Executor.(RunScoper); ok {
			return rs.BeginRun(ctx)
		}
	}
	return ctx, func() {}
}

// ExternalSpec is what Load needs to know of tenant.toml [pipeline].
type ExternalSpec struct {
	Executor Executor
	// Switches are the structural switches the program declares.
	Switches []string
	// Overrides is set when the program accepts step overrides.
	Overrides bool
}

// External loads the chain as the declaration of an external program's
// steps, prompts and parameters (see ExternalCase) instead of a graph fapo
// executes.
func External(spec ExternalSpec) Option { return func(l *loader) { l.external = &spec } }

type external struct {
	spec     ExternalSpec
	switches map[string]any
}

// IsExternal reports whether the chain is run by the tenant's own program.
func (c *Chain) IsExternal() bool { return c.ext != nil }

// externalFile is chain.toml of an external pipeline.
type externalFile struct {
	Output   string         `toml:"output"`
	Switches map[string]any `toml:"switches"`
	Steps    []stepConfig   `toml:"steps"`
}

var externalStepKeys = []string{"model", "system", "prompt", "params", "k"}

// externalKind stands for every declared step: the program runs them, so
// fapo never calls run.
var externalKind = &kindSpec{keys: externalStepKeys, callsModel: true}
var externalModelFree = &kindSpec{keys: externalStepKeys}

func (l *loader) loadExternal(text string) *Chain {
	var fc externalFile
	md, ok := l.decode(text, &fc)
	if !ok {
		return nil
	}
	top := []string{"output", "switches", "steps"}
	for _, k := range md.Undecoded() {
		switch {
		case len(k) > 1 && k[0] == "switches":
		case len(k) > 1 && k[0] == "steps" && k[len(k)-2] == "params":
			// sampling parameters are checked by the typed decode
		case len(k) > 0 && k[0] == "steps":
			l.problem("", "unknown key %q: an external pipeline's step declares id, kind and %s", k.String(), strings.Join(externalStepKeys, ", "))
		default:
			l.problem("", "unknown key %q%s", k.String(), suggest.Hint(k.String(), top))
		}
	}
	if len(fc.Steps) == 0 {
		l.problem("", "no steps: declare each step the program reports as a [[steps]] table with an id and a kind (%s)", strings.Join(ExternalKinds, ", "))
		return nil
	}
	for name := range fc.Switches {
		if !slices.Contains(l.external.Switches, name) {
			declared := "the program declares none (tenant.toml [pipeline] switches)"
			if len(l.external.Switches) > 0 {
				declared = "the program declares " + strings.Join(l.external.Switches, ", ")
			}
			l.problem("", "switch %q is not one of the program's structural switches: %s", name, declared)
		}
	}
	for i, cfg := range fc.Steps {
		label := cfg.ID
		switch {
		case cfg.ID == "":
			label = fmt.Sprintf("#%d", i+1)
			l.problem(label, "id is empty; give every step the id the program reports it under")
		case !idPattern.MatchString(cfg.ID):
			l.problem(label, "id must be letters, digits and _ (not starting with a digit)")
		}
		if j, dup := l.ids[cfg.ID]; dup && cfg.ID != "" {
			l.problem(label, "duplicate id: steps #%d and #%d are both %q", j+1, i+1, cfg.ID)
		} else if cfg.ID != "" {
			l.ids[cfg.ID] = i
		}
		if !slices.Contains(ExternalKinds, cfg.Kind) {
			l.problem(label, "kind %q is not a kind a program reports; use one of %s", cfg.Kind, strings.Join(ExternalKinds, ", "))
		}
		k := externalModelFree
		if cfg.Kind == "llm" {
			k = externalKind
		}
		s := &step{cfg: cfg, kind: k, tmpl: map[string]*template.Template{}, texts: map[string]string{}}
		for role, rel := range map[string]string{"system": cfg.System, "prompt": cfg.Prompt} {
			if rel == "" {
				continue
			}
			if b, ok := l.readFile(label, "prompt file", rel); ok {
				s.texts[role] = string(b)
			}
		}
		l.steps = append(l.steps, s)
	}
	out := fc.Output
	if out == "" {
		out = fc.Steps[len(fc.Steps)-1].ID
	} else if _, ok := l.ids[out]; !ok {
		l.problem("", "output = %q names no step", out)
	}
	c := &Chain{corpus: l.corpus, output: out, steps: l.steps, byID: map[string]*step{}, files: l.files,
		ext: &external{spec: *l.external, switches: fc.Switches}}
	c.tokenKey = newTokenKey()
	for _, s := range l.steps {
		c.byID[s.cfg.ID] = s
	}
	return c
}

// externalCase builds what the program receives for c.
func (ch *Chain) externalCase(c dataset.Case) ExternalCase {
	in := c.Context
	if in == nil {
		in = map[string]any{}
	}
	x := ExternalCase{CaseID: c.CaseID, Token: ch.caseToken(c.CaseID), Inputs: in,
		Prompts: map[string]string{}, Systems: map[string]string{}, Params: map[string]map[string]any{},
		Switches: maps.Clone(ch.ext.switches)}
	if x.Switches == nil {
		x.Switches = map[string]any{}
	}
	for _, s := range ch.steps {
		if t, ok := s.texts["prompt"]; ok {
			x.Prompts[s.cfg.ID] = t
		}
		if t, ok := s.texts["system"]; ok {
			x.Systems[s.cfg.ID] = t
		}
		p := map[string]any{}
		pp := s.cfg.Params
		if pp.Temperature != nil {
			p["temperature"] = *pp.Temperature
		}
		if pp.TopP != nil {
			p["top_p"] = *pp.TopP
		}
		if pp.MaxTokens != nil {
			p["max_tokens"] = *pp.MaxTokens
		}
		if pp.Seed != nil {
			p["seed"] = *pp.Seed
		}
		if len(pp.Stop) > 0 {
			p["stop"] = slices.Clone(pp.Stop)
		}
		if pp.N != nil {
			p["n"] = *pp.N
		}
		if s.cfg.K > 0 {
			p["k"] = s.cfg.K
		}
		if s.cfg.Model != "" {
			p["model"] = s.cfg.Model
		}
		x.Params[s.cfg.ID] = p
	}
	return x
}

func (ch *Chain) runExternal(ctx context.Context, c dataset.Case, m Models, ov *ExternalOverride) *Trace {
	x := ch.externalCase(c)
	x.Override = ov
	tr := ch.ext.spec.Executor.RunCase(ctx, x, m)
	if tr == nil {
		return &Trace{CaseID: c.CaseID, Error: "internal error: the external pipeline returned no trace"}
	}
	tr.CaseID = c.CaseID
	return tr
}

// CanOverride says whether RunWithOverrides can stand a value in for a
// step: always for a chain fapo executes; for an external pipeline only
// when the program declares it honours "override". Callers refuse up front
// with this error, so that a program that would ignore the override is
// never scored as if the gold had not helped.
func (ch *Chain) CanOverride() error {
	if ch.ext != nil && !ch.ext.spec.Overrides {
		return errors.New("the tenant's program does not accept step overrides, so oracle replay cannot stand gold in for a step; " +
			"if it can, handle \"override\" in its requests (fapo_pipeline.py: case.overridden(step)) and set step_overrides = true in tenant.toml [pipeline]")
	}
	return nil
}

// runExternalOverride is RunWithOverrides of an external chain: one step
// at a time, and only when the program accepts overrides.
func (ch *Chain) runExternalOverride(ctx context.Context, c dataset.Case, m Models, overrides map[string]StepOverride) *Trace {
	if err := ch.CanOverride(); err != nil {
		return &Trace{CaseID: c.CaseID, Error: err.Error()}
	}
	if len(overrides) != 1 {
		return &Trace{CaseID: c.CaseID, Error: "an external pipeline replays one step override at a time"}
	}
	for id, o := range overrides {
		out := o.Output
		if out == "" && len(o.Retrieved) > 0 {
			out = formatPassages(o.Retrieved)
		}
		return ch.runExternal(ctx, c, m, &ExternalOverride{Step: id, Output: out, Parsed: o.Parsed, Retrieved: slices.Clone(o.Retrieved)})
	}
	return nil
}

// renderExternal is Render of an external chain: fapo cannot know what the
// program will show its model, so every prompt text the variant gives it
// is what the review gate scans.
func (ch *Chain) renderExternal() Rendering {
	var r Rendering
	for _, s := range ch.steps {
		for _, role := range []string{"system", "prompt"} {
			if t, ok := s.texts[role]; ok {
				r.Prompts = append(r.Prompts, t)
			}
		}
	}
	r.FinalFromModel = true
	return r
}
