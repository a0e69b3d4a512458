package scoring

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/fapo-dev/fapo/engine/dataset"
)

const (
	defaultCommandTimeout = 60 * time.Second
	// maxCommandStdout bounds what a runaway scorer can make us hold.
	maxCommandStdout = 64 << 20
	// stderrTail is how much of a failing scorer's stderr goes into the
	// error: the end, where a traceback says what went wrong.
	stderrTail = 4 << 10
)

// commandScorer runs a user's executable speaking the JSON protocol of
// command-protocol.md, so a scorer can be written in any language.
type commandScorer struct {
	argv    []string
	name    string // argv as the user wrote it, for messages
	dir     string
	batch   bool
	timeout time.Duration
	step    string
}

func newCommandScorer(spec Spec, env Env) *commandScorer {
	t := defaultCommandTimeout
	if spec.TimeoutSeconds > 0 {
		t = time.Duration(spec.TimeoutSeconds * float64(time.Second))
	}
	return &commandScorer{
		argv:    spec.Command,
		name:    strings.Join(spec.Command, " "),
		dir:     env.Dir,
		batch:   spec.Batch,
		timeout: t,
		step:    spec.Step,
	}
}

// wireRequest is the protocol's stdin document.
type wireRequest struct {
	Mode  string     `json:"mode"`
	Items []wireItem `json:"items"`
}

type wireItem struct {
	Case   dataset.Case        `json:"case"`
	Output *string             `json:"output,omitempty"`
	Steps  map[string]wireStep `json:"steps,omitempty"`
}

type wireStep struct {
	Output string `json:"output"`
	Parsed any    `json:"parsed,omitempty"`
	Error  string `json:"error,omitempty"`
}

// wireResult is one element of the protocol's "results" array.
type wireResult struct {
	Composite *float64           `json:"composite_score"`
	Breakdown map[string]float64 `json:"score_breakdown"`
	Reason    string             `json:"reason"`
	Error     *string            `json:"error"`
}

func (s *commandScorer) errorf(format string, args ...any) error {
	return fmt.Errorf("command scorer %s: %s", s.name, fmt.Sprintf(format, args...))
}

func (s *commandScorer) Validate(c dataset.Case) error {
	return s.ValidateBatch(context.Background(), []dataset.Case{c})[0]
}

func (s *commandScorer) ValidateBatch(ctx context.Context, cases []dataset.Case) []error {
	items := make([]wireItem, len(cases))
	for i, c := range cases {
		items[i] = wireItem{Case: c}
	}
	results := s.dispatch(ctx, "validate", items)
	errs := make([]error, len(cases))
	for i, r := range results {
		errs[i] = r.Err
	}
	return errs
}

func (s *commandScorer) Score(ctx context.Context, c dataset.Case, out Output) (Result, error) {
	r := s.ScoreBatch(ctx, []Item{{Case: c, Output: out}})[0]
	return r.Result, r.Err
}

func (s *commandScorer) ScoreBatch(ctx context.Context, items []Item) []ItemResult {
	out := make([]ItemResult, len(items))
	var wire []wireItem
	var at []int
	for i, it := range items {
		text, err := outputText(s.step, it.Output)
		if err != nil {
			out[i].Err = err
			continue
		}
		wire = append(wire, wireItem{Case: it.Case, Output: &text, Steps: wireSteps(it.Output)})
		at = append(at, i)
	}
	for k, r := range s.dispatch(ctx, "score", wire) {
		out[at[k]] = r
	}
	return out
}

func wireSteps(out Output) map[string]wireStep {
	if out.Trace == nil {
		return nil
	}
	steps := make(map[string]wireStep, len(out.Trace.Steps))
	for _, st := range out.Trace.Steps {
		steps[st.StepID] = wireStep{Output: st.Output, Parsed: st.Parsed, Error: st.Error}
	}
	return steps
}

// dispatch runs all items in one process (batch mode) or one process per
// item, as many at a time as ScoreAll allows.
func (s *commandScorer) dispatch(ctx context.Context, mode string, items []wireItem) []ItemResult {
	if len(items) == 0 {
		return nil
	}
	if s.batch {
		return s.run(ctx, mode, items)
	}
	out := make([]ItemResult, len(items))
	forEach(ctx, len(items), 0, func(i int) {
		out[i] = s.run(ctx, mode, items[i:i+1])[0]
	}, func(i int, err error) { out[i].Err = err })
	return out
}

// run starts the command once for items and returns one result per item; a
// failure of the process as a whole is every item's error.
func (s *commandScorer) run(ctx context.Context, mode string, items []wireItem) []ItemResult {
	results, err := s.exec(ctx, mode, items)
	out := make([]ItemResult, len(items))
	for i := range out {
		if err != nil {
			out[i].Err = err
			continue
		}
		out[i] = s.decode(mode, i, len(items), items[i].Case.CaseID, results[i])
	}
	return out
}

func (s *commandScorer) exec(ctx context.Context, mode string, items []wireItem) ([]json.RawMessage, error) {
	req, err := json.Marshal(wireRequest{Mode: mode, Items: items})
	if err != nil {
		return nil, s.errorf("encode request: %v", err)
	}
	runCtx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	cmd := exec.CommandContext(runCtx, s.argv[0], s.argv[1:]...)
	cmd.Dir = s.dir
	cmd.Stdin = bytes.NewReader(req)
	stdout := &cappedBuffer{limit: maxCommandStdout}
	stderr := &tailBuffer{limit: stderrTail}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	killProcessGroup(cmd)
	// Children that keep the pipes open must not hold us past the kill.
	cmd.WaitDelay = time.Second

	err = cmd.Run()
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("command scorer %s: %w", s.name, ctx.Err())
	case runCtx.Err() != nil:
		return nil, s.errorf("timed out after %v and was killed; make it faster or raise scorer.timeout_seconds%s", s.timeout, stderr.suffix())
	case errors.Is(err, exec.ErrNotFound) || errors.Is(err, exec.ErrDot):
		return nil, s.errorf("%v; check scorer.command (it runs in %s)", err, s.dir)
	case err != nil:
		return nil, s.errorf("%v%s", err, stderr.suffix())
	case stdout.overflow:
		return nil, s.errorf("wrote more than %d bytes to stdout; write only the JSON response there and logs to stderr", maxCommandStdout)
	}

	var resp struct {
		Results *[]json.RawMessage `json:"results"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &resp); err != nil {
		return nil, s.errorf("stdout is not a JSON response (%v); it began %q%s; see engine/scoring/command-protocol.md", err, head(stdout.String(), 200), stderr.suffix())
	}
	if resp.Results == nil {
		return nil, s.errorf(`the response has no "results" array; it began %q; see engine/scoring/command-protocol.md`, head(stdout.String(), 200))
	}
	if n := len(*resp.Results); n != len(items) {
		return nil, s.errorf("returned %d results for %d items; answer one result per item, in order", n, len(items))
	}
	return *resp.Results, nil
}

// decode checks one element of "results"; i is its 0-based index.
func (s *commandScorer) decode(mode string, i, n int, caseID string, raw json.RawMessage) ItemResult {
	where := fmt.Sprintf("result %d of %d (case %s)", i+1, n, caseID)
	var w wireResult
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&w); err != nil {
		return ItemResult{Err: s.errorf("%s: not a result object: %v", where, err)}
	}
	if w.Error != nil {
		return ItemResult{Err: s.errorf("%s: %s", where, *w.Error)}
	}
	if mode == "validate" {
		return ItemResult{}
	}
	if w.Composite == nil {
		return ItemResult{Err: s.errorf(`%s: composite_score is missing; give a number in [0, 100] or an "error"`, where)}
	}
	if !inRange(*w.Composite) {
		return ItemResult{Err: s.errorf("%s: composite_score %v is outside [0, %v]", where, *w.Composite, MaxScore)}
	}
	for k, v := range w.Breakdown {
		if !inRange(v) {
			return ItemResult{Err: s.errorf("%s: score_breakdown %q = %v is outside [0, %v]", where, k, v, MaxScore)}
		}
	}
	return ItemResult{Result: Result{Composite: *w.Composite, Breakdown: w.Breakdown, Reason: w.Reason}}
}

func head(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// cappedBuffer stops growing at limit and remembers that it did.
type cappedBuffer struct {
	bytes.Buffer
	limit    int
	overflow bool
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.Len(); len(p) > room {
		b.overflow = true
		p = p[:max(room, 0)]
	}
	b.Buffer.Write(p)
	return len(p), nil
}

// tailBuffer keeps the last limit bytes written to it.
type tailBuffer struct {
	buf   []byte
	limit int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.limit; over > 0 {
		b.buf = b.buf[over:]
	}
	return len(p), nil
}

// suffix renders the captured stderr for an error message.
func (b *tailBuffer) suffix() string {
	s := strings.TrimSpace(string(b.buf))
	if s == "" {
		return ""
	}
	return "; stderr: " + s
}
