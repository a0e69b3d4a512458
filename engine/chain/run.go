package chain

import (
	"context"
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider"
)

// Models resolves the model of an llm step. Name is a [models.NAME] block of
// tenant.toml, "" the tenant's default [model]; the returned string is the
// provider's model name to put in the request.
type Models interface {
	Client(name string) (provider.Client, string, error)
}

// execution is the state of one chain run on one case.
type execution struct {
	chain  *Chain
	models Models
	c      dataset.Case
	// data is what templates see; data["steps"] grows as steps finish, so a
	// template can never observe a later step even through range or index.
	data  map[string]any
	steps map[string]any
	dry   bool
	// skip holds the steps a branch step routed around.
	skip map[string]bool
	// capture, when set, sees every rendered template (Render).
	capture func(text string)
}

func (ch *Chain) newExecution(c dataset.Case, m Models, dry bool) *execution {
	ctxData := c.Context
	if ctxData == nil {
		ctxData = map[string]any{}
	}
	steps := make(map[string]any, len(ch.steps))
	return &execution{
		chain:  ch,
		models: m,
		c:      c,
		steps:  steps,
		data:   map[string]any{"case_token": ch.caseToken(c.CaseID), "context": ctxData, "steps": steps},
		dry:    dry,
	}
}

// Run executes the chain on one case. It always returns a complete trace: a
// step that fails sets Trace.Error and every later step is recorded as
// skipped, so attribution can see the cascade. A cancelled ctx fails the
// step in progress.
func (ch *Chain) Run(ctx context.Context, c dataset.Case, m Models) *Trace {
	if ch.ext != nil {
		return ch.runExternal(ctx, c, m, nil)
	}
	x := ch.newExecution(c, m, false)
	tr := &Trace{CaseID: c.CaseID, Steps: make([]StepTrace, 0, len(ch.steps))}
	failed := ""
	for _, s := range ch.steps {
		st := StepTrace{StepID: s.cfg.ID, Kind: s.cfg.Kind}
		if failed != "" {
			st.Skipped = true
			st.Error = fmt.Sprintf("not run: step %s failed", failed)
			tr.Steps = append(tr.Steps, st)
			continue
		}
		if x.skip[s.cfg.ID] {
			// Published empty, so a later step can test it with {{if}}.
			st.Skipped = true
			x.publish(s, &st)
			tr.Steps = append(tr.Steps, st)
			continue
		}
		start := time.Now()
		err := ctx.Err()
		if err == nil {
			err = runStep(ctx, x, s, &st)
		}
		st.LatencyMS = float64(time.Since(start).Microseconds()) / 1000
		if err != nil {
			st.Error = err.Error()
			tr.Error = fmt.Sprintf("step %q: %v", s.cfg.ID, err)
			failed = s.cfg.ID
		} else {
			x.publish(s, &st)
		}
		tr.Steps = append(tr.Steps, st)
	}
	if tr.Error == "" {
		if st := tr.Step(ch.output); st != nil {
			tr.Final = st.Output
		}
	}
	return tr
}

// runStep runs one step, turning a panic in a step kind into a step error:
// one bad case must not take down an evaluation of thousands.
func runStep(ctx context.Context, x *execution, s *step, st *StepTrace) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error in %s step: %v (a bug in fapo or a model client; please report it)", s.cfg.Kind, r)
		}
	}()
	return s.kind.run(ctx, x, s, st)
}

// publish makes a finished step's values visible to later templates.
func (x *execution) publish(s *step, st *StepTrace) {
	v := map[string]any{"output": st.Output}
	if st.Parsed != nil {
		v["parsed"] = st.Parsed
	}
	if s.cfg.Kind == "retrieve" {
		docs := make([]map[string]any, len(st.Retrieved))
		for i, d := range st.Retrieved {
			docs[i] = map[string]any{"id": d.ID, "title": d.Title, "score": d.Score, "text": d.Text}
		}
		v["retrieved"] = docs
	}
	x.steps[s.cfg.ID] = v
}

// render executes template role of s; the error names the template file and
// position, and a missing key says which key.
func (x *execution) render(s *step, role string) (string, error) {
	t := s.tmpl[role]
	if t == nil {
		return "", nil
	}
	return x.execute(t, role, x.data)
}

// maxRendered bounds what one template may render. No model takes a prompt
// this long, and without a bound a template that loops on a held-out value
// would make the review's memory and time (and so its answer) depend on
// held-out content.
const maxRendered = 1 << 20

// errTooLong stops a template that renders past maxRendered.
var errTooLong = fmt.Errorf("the rendered text passes %d bytes: shorten the template", maxRendered)

// boundedWriter is a strings.Builder that refuses to grow past maxRendered.
type boundedWriter struct{ strings.Builder }

func (w *boundedWriter) Write(p []byte) (int, error) {
	if w.Len()+len(p) > maxRendered {
		return 0, errTooLong
	}
	return w.Builder.Write(p)
}

// execute renders t with data through a bounded writer and hands the text
// to the capture hook (the review's render) when there is one.
func (x *execution) execute(t *template.Template, role string, data any) (string, error) {
	var b boundedWriter
	if err := t.Execute(&b, data); err != nil {
		return "", fmt.Errorf("render %s: %w", role, err)
	}
	if x.capture != nil {
		x.capture(b.String())
	}
	return b.String(), nil
}

// DryRun renders every template of the chain against c with stand-in values
// for step outputs, calling no model. It catches what Load cannot know: the
// keys a real case's context has and the shape of retrieve sources.
func (ch *Chain) DryRun(c dataset.Case) error {
	if ch.ext != nil {
		return nil // the program renders its own prompts; Load read them all
	}
	x := ch.newExecution(c, nil, true)
	var problems []Problem
	for _, s := range ch.steps {
		st := StepTrace{StepID: s.cfg.ID, Kind: s.cfg.Kind}
		if err := s.kind.placeholder(x, s, &st); err != nil {
			problems = append(problems, Problem{Step: s.cfg.ID, Msg: err.Error()})
		}
		// Later steps still get checked against a stand-in, so one broken
		// step does not hide the problems of the rest.
		if st.Output == "" {
			st.Output = placeholderOutput(s)
		}
		x.publish(s, &st)
	}
	if len(problems) > 0 {
		return &ValidationError{File: FileName, Problems: problems}
	}
	return nil
}

func placeholderOutput(s *step) string { return "<output of step " + s.cfg.ID + ">" }
