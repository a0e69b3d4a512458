package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/run"
)

// Options are the surroundings of a pipeline.
type Options struct {
	// Dir is where the program runs: the tenant's verified frozen files.
	Dir string
	// Environ is the program's environment (default os.Environ).
	Environ func() []string
	// HTTPClient posts to a URL pipeline (default http.DefaultClient).
	HTTPClient *http.Client
}

// Pipeline runs the cases of an external chain; it implements
// chain.Executor. It is safe for concurrent use; Close stops the program.
type Pipeline struct {
	spec Spec
	tr   transport
	gw   *gateway
	seq  atomic.Uint64
}

// New prepares the pipeline; the program starts with the first case.
func New(spec Spec, opts Options) (*Pipeline, error) {
	if problems := spec.Validate(); len(problems) > 0 {
		return nil, fmt.Errorf("[pipeline]: %s", problems[0])
	}
	gw, err := newGateway()
	if err != nil {
		return nil, err
	}
	p := &Pipeline{spec: spec, gw: gw}
	if spec.URL != "" {
		p.tr = newHTTPEndpoint(spec.URL, opts.HTTPClient, spec.concurrency(), spec.timeout())
	} else {
		p.tr = newProcessPool(spec.Command, opts.Dir, processEnv(opts.Environ), spec.concurrency(), spec.timeout())
	}
	return p, nil
}

// ChainSpec is what chain.External needs to load the tenant's chain.toml.
func (p *Pipeline) ChainSpec() chain.ExternalSpec {
	return chain.ExternalSpec{Executor: p, Switches: p.spec.Switches, Overrides: p.spec.StepOverrides}
}

type runKey struct{}

// BeginRun implements chain.RunScoper: the cases run under the returned
// context share one endpoint token, which end revokes, so that a program
// that keeps a token (or hands it on) cannot call models after its run.
func (p *Pipeline) BeginRun(ctx context.Context) (context.Context, func()) {
	r := p.gw.beginRun()
	return context.WithValue(ctx, runKey{}, r), func() { p.gw.endRun(r) }
}

// Close stops the program's processes and the model endpoint.
func (p *Pipeline) Close() error {
	return errors.Join(p.tr.close(), p.gw.close())
}

// RunCase sends one case to the program and turns its answer into a trace.
// A program that crashes, hangs or answers outside the protocol errors the
// case (Trace.Cause); a case it reports failed is the variant's failure,
// scored like a failed built-in step.
func (p *Pipeline) RunCase(ctx context.Context, x chain.ExternalCase, m chain.Models) *chain.Trace {
	r, _ := ctx.Value(runKey{}).(*gwRun)
	if r == nil || r.g != p.gw {
		// A case outside any run (doctor, a single replay) is a run of its own.
		r = p.gw.beginRun()
		defer p.gw.endRun(r)
	}
	slotID, s := p.gw.open(ctx, r, m)
	defer p.gw.release(slotID)
	id := strconv.FormatUint(p.seq.Add(1), 10)
	req := newRequest(id, x)
	req.Model = &wireModel{BaseURL: p.gw.baseURL(slotID), APIKey: r.token, Name: "default"}
	line, err := json.Marshal(req)
	if err != nil {
		return &chain.Trace{Error: "encode the request: " + err.Error()}
	}
	var resp *wireResponse
	f := p.tr.do(ctx, line, func(out []byte) (err error) {
		resp, err = decodeResponse(out, id)
		return err
	})
	if f == nil {
		return buildTrace(resp, s.takeCalls())
	}
	if f.cause == "cancelled" {
		return &chain.Trace{Error: f.msg}
	}
	return &chain.Trace{Error: "pipeline: " + f.msg, Cause: run.SourcePipeline + ": " + f.cause}
}

func (s *slot) takeCalls() []call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.calls
	s.calls = nil
	return out
}

// buildTrace turns the reported steps into a chain trace, filling each llm
// step's messages, tokens and finish reason from the calls it made through
// fapo's endpoint: what fapo saw beats what the program says.
func buildTrace(r *wireResponse, calls []call) *chain.Trace {
	tr := &chain.Trace{Steps: make([]chain.StepTrace, 0, len(r.Steps))}
	byStep := map[string][]call{}
	llmSteps := 0
	for _, s := range r.Steps {
		if s.Kind == "llm" {
			llmSteps++
		}
	}
	var loose []call
	for _, c := range calls {
		if c.step != "" {
			byStep[c.step] = append(byStep[c.step], c)
		} else {
			loose = append(loose, c)
		}
	}
	for _, s := range r.Steps {
		st := chain.StepTrace{StepID: s.ID, Kind: s.Kind, Messages: s.Messages, FinishReason: s.FinishReason,
			LatencyMS: s.LatencyMS, Error: s.Error, Retrieved: s.Retrieved}
		st.Input, _ = text(s.Input)
		st.Output, st.Parsed = text(s.Output)
		st.RawOutput = st.Output
		if s.Tokens != nil {
			st.PromptTokens, st.CompletionTokens = s.Tokens.Prompt, s.Tokens.Completion
		}
		mine := byStep[s.ID]
		delete(byStep, s.ID)
		if s.Kind == "llm" && llmSteps == 1 {
			mine, loose = append(mine, loose...), nil
		}
		applyCalls(&st, mine)
		if st.Error != "" && tr.Error == "" {
			tr.Error = fmt.Sprintf("step %q: %s", s.ID, st.Error)
		}
		tr.Steps = append(tr.Steps, st)
	}
	// Calls under a step the program did not report, or unlabelled ones
	// that no single llm step can own, still belong in the trace.
	for _, cs := range byStep {
		loose = append(loose, cs...)
	}
	if len(loose) > 0 {
		st := chain.StepTrace{StepID: "_model_calls", Kind: "llm"}
		applyCalls(&st, loose)
		st.Output = loose[len(loose)-1].resp.Content
		tr.Steps = append(tr.Steps, st)
	}
	final, _ := text(r.Output)
	switch {
	case r.Error != "" && tr.Error == "":
		tr.Error = r.Error
	case r.Error == "" && tr.Error == "":
		tr.Final = final
	}
	if r.Error != "" && r.Infrastructure {
		tr.Cause = run.SourcePipeline + ": reported infrastructure error"
	}
	return tr
}

func applyCalls(st *chain.StepTrace, calls []call) {
	if len(calls) == 0 {
		return
	}
	st.PromptTokens, st.CompletionTokens = 0, 0
	for _, c := range calls {
		st.Calls++
		if c.resp.CacheHit {
			st.CacheHits++
			// The program's own concurrency is unknown here: its calls
			// count as made one after another.
			st.CacheSavedMS += chain.SavedByCacheMS(c.resp)
		}
		st.PromptTokens += c.resp.Usage.PromptTokens
		st.CompletionTokens += c.resp.Usage.CompletionTokens
	}
	st.Messages = calls[0].req.Messages
	st.FinishReason = calls[len(calls)-1].resp.FinishReason
}
