package run

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/scoring"
)

// faultyModel answers like upperModel except where fail says so, with the
// error fail returns; down switches every call to a 500.
type faultyModel struct {
	fail  func(question string) error
	down  *atomic.Bool
	calls *atomic.Int64
}

func (m faultyModel) Client(string) (provider.Client, string, error) {
	up := upperModel{}
	c, model, _ := up.Client("")
	return provider.ClientFunc(func(ctx context.Context, req provider.Request) (provider.Response, error) {
		if m.calls != nil {
			m.calls.Add(1)
		}
		if m.down != nil && m.down.Load() {
			return provider.Response{}, &provider.APIError{Provider: "openai", Model: model, Status: http.StatusInternalServerError, Body: "secret body " + req.Messages[0].Content}
		}
		if m.fail != nil {
			if err := m.fail(req.Messages[0].Content); err != nil {
				return provider.Response{}, err
			}
		}
		return c.Complete(ctx, req)
	}), model, nil
}

func TestCauses(t *testing.T) {
	tests := []struct {
		err   error
		cause string // "" means not infrastructure: the variant's own failure
	}{
		{&provider.APIError{Status: 500}, "provider: HTTP 500"},
		{&provider.APIError{Status: 503}, "provider: HTTP 503"},
		{&provider.APIError{Status: 429}, "provider: HTTP 429"},
		{&provider.APIError{Status: 401}, "provider: HTTP 401"},
		{&provider.APIError{Status: 400, Body: "context length exceeded"}, ""},
		{&provider.APIError{Status: 422}, ""},
		{&net.DNSError{Err: "no such host", Name: "api.invalid"}, "provider: no such host"},
		{&net.OpError{Op: "dial", Err: os.NewSyscallError("connect", errConnRefused())}, "provider: connection refused"},
		{provider.ErrTimeout, "provider: timeout"},
		{context.DeadlineExceeded, "provider: timeout"},
		{provider.ErrMalformedResponse, "provider: malformed response"},
		{provider.ErrCacheMiss, "provider: cache miss"},
		{provider.ErrEmptyCompletion, "provider: empty completion"},
		{errors.New("something odd"), "provider: error"},
		{context.Canceled, ""},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			got, ok := causeOf(tt.err)
			require.Equal(t, tt.cause, got)
			require.Equal(t, tt.cause != "", ok)
		})
	}
	_, ok := scorerCauseOf(errors.New("scorer script exited 1"))
	require.False(t, ok, "a scorer that fails on an output is scoring it")
	c, ok := scorerCauseOf(&provider.APIError{Status: 502})
	require.True(t, ok)
	require.Equal(t, "scorer: HTTP 502", c)
	// A judge whose server answered nothing, retries spent: no score.
	c, ok = scorerCauseOf(fmt.Errorf("llm_judge: the model call failed: %w", provider.ErrEmptyCompletion))
	require.True(t, ok)
	require.Equal(t, "scorer: empty completion", c)
}

// TestErroredCasesAreInNoMean: cases whose model call hit the
// infrastructure are errored, counted by cause, and left out of the mean;
// a 400 (the request the variant built was wrong) is the variant's failure.
func TestErroredCasesAreInNoMean(t *testing.T) {
	store := NewStore(t.TempDir(), true)
	m := faultyModel{fail: func(q string) error {
		switch q {
		case "question 0", "question 1", "question 2":
			return &provider.APIError{Status: 500}
		case "question 4":
			return &net.DNSError{Err: "no such host", Name: "x.invalid"}
		case "question 5":
			return &provider.APIError{Status: 400, Body: "bad request"}
		}
		return nil
	}}
	r := &Runner{Store: store, Pipeline: &echoPipeline{}, Models: m, Scorer: exactScorer{}}
	var last Progress
	sum, err := r.Execute(context.Background(), sliceSource(makeCases(12)), Options{Split: dataset.Validation, Concurrency: 1, Redact: true,
		Progress: func(p Progress) { last = p }})
	require.NoError(t, err)
	require.Equal(t, 12, sum.Cases)
	require.Equal(t, 4, sum.Errored)
	require.Equal(t, 8, sum.Scored)
	require.Equal(t, []CauseCount{
		{Cause: "provider: HTTP 500", Count: 3, Hint: "retry when the provider is back"},
		{Cause: "provider: no such host", Count: 1, Hint: "check [model] base_url and your network"},
	}, sum.ErrorCauses)
	// Scored: 3, 5..11. Wrong: 3, 7, 11 (every fourth) and 5 (the 400).
	require.Equal(t, 4, sum.Failed)
	require.Equal(t, 1, sum.ExecErrors)
	require.InDelta(t, 100.0*4/8, sum.ScoreMean, 1e-9, "the mean is over the scored cases only")
	require.Equal(t, 4, last.Errored)
	require.InDelta(t, sum.ScoreMean, last.ScoreMean, 1e-9)

	inc := sum.Incomplete(12)
	require.NotNil(t, inc)
	inc.Consequence = "nothing was charged"
	require.Equal(t, "4 of 12 validation cases hit provider errors (HTTP 500 ×3, no such host ×1): retry when the provider is back; check [model] base_url and your network; nothing was charged", inc.Error())
	require.NotContains(t, inc.Error(), "secret")
	require.NotContains(t, inc.Error(), "c00")
	inc.Coarse = true
	require.Equal(t, "some validation cases hit provider errors (HTTP 500, no such host): retry when the provider is back; check [model] base_url and your network; nothing was charged", inc.Error())

	complete := &Summary{Split: "validation", Cases: 12, Scored: 12}
	require.Nil(t, complete.Incomplete(12))
	short := &Summary{Split: "validation", Cases: 10, Scored: 10}
	require.ErrorContains(t, short.Incomplete(12), "2 of 12 validation cases hit infrastructure errors (not run ×2)")
}

// TestResumeRerunsErroredCases: after an outage, resuming the run sends
// the errored cases again and nothing else, and the log keeps one line per
// case.
func TestResumeRerunsErroredCases(t *testing.T) {
	store := NewStore(t.TempDir(), false)
	var down atomic.Bool
	var calls atomic.Int64
	m := faultyModel{down: &down, calls: &calls, fail: func(q string) error {
		if strings.HasSuffix(q, "7") {
			return &provider.APIError{Status: 503}
		}
		return nil
	}}
	r := &Runner{Store: store, Pipeline: &echoPipeline{}, Models: m, Scorer: exactScorer{}}
	cases := makeCases(20)
	opts := Options{Tenant: "t", Variant: "v0000", Split: dataset.Train, Concurrency: 2, Chain: "abc"}
	sum, err := r.Execute(context.Background(), sliceSource(cases), opts)
	require.NoError(t, err)
	require.Equal(t, 2, sum.Errored) // question 7 and 17

	// Still down for those two: resuming re-sends exactly them.
	calls.Store(0)
	opts.Resume = sum.RunID
	sum, err = r.Execute(context.Background(), sliceSource(cases), opts)
	require.NoError(t, err)
	require.EqualValues(t, 2, calls.Load(), "only the errored cases run again")
	require.Equal(t, 2, sum.Errored)
	require.Equal(t, 20, countLines(t, store, sum.RunID), "one line per case")

	// The provider is back.
	calls.Store(0)
	m.fail = nil
	r.Models = m
	sum, err = r.Execute(context.Background(), sliceSource(cases), opts)
	require.NoError(t, err)
	require.EqualValues(t, 2, calls.Load())
	require.Zero(t, sum.Errored)
	require.Equal(t, 20, sum.Scored)
	require.Equal(t, 20, countLines(t, store, sum.RunID))
	require.InDelta(t, 75.0, sum.ScoreMean, 1e-9)
	require.Nil(t, sum.Incomplete(20))
}

// TestResumeRefusesAnotherRun: a run resumes only as what it started as.
func TestResumeRefusesAnotherRun(t *testing.T) {
	store := NewStore(t.TempDir(), false)
	r := &Runner{Store: store, Pipeline: &echoPipeline{}, Models: upperModel{}, Scorer: exactScorer{}}
	cases := makeCases(4)
	base := Options{Tenant: "t", Variant: "v0000", Split: dataset.Train, Chain: "hash-a"}
	sum, err := r.Execute(context.Background(), sliceSource(cases), base)
	require.NoError(t, err)
	before, err := os.ReadFile(filepath.Join(store.Dir(), sum.RunID, casesFile))
	require.NoError(t, err)

	tests := []struct {
		name string
		edit func(*Options)
		want string
	}{
		{"variant", func(o *Options) { o.Variant = "v0001" }, "it ran variant v0000, not v0001"},
		{"split", func(o *Options) { o.Split = dataset.Validation }, "it ran the train split, not validation"},
		{"chain", func(o *Options) { o.Chain = "hash-b" }, "it ran a chain whose files have changed since"},
		{"tenant", func(o *Options) { o.Tenant = "u" }, "it ran tenant t, not u"},
		{"repeats", func(o *Options) { o.Repeats = 3 }, "it ran each case once, not 3 times"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			o.Resume = sum.RunID
			tt.edit(&o)
			_, err := r.Execute(context.Background(), sliceSource(cases), o)
			require.ErrorContains(t, err, "cannot resume run "+sum.RunID+": "+tt.want)
			r, ok := refusal.Of(err)
			require.True(t, ok, "the mismatch is a refusal whose next step the front end names")
			require.Equal(t, refusal.NewRun, r.Next)
		})
	}
	after, err := os.ReadFile(filepath.Join(store.Dir(), sum.RunID, casesFile))
	require.NoError(t, err)
	require.Equal(t, before, after, "a refused resume changes nothing")

	// A run is executed by one process at a time.
	l, err := store.lock(sum.RunID)
	require.NoError(t, err)
	o := base
	o.Resume = sum.RunID
	_, err = r.Execute(context.Background(), sliceSource(cases), o)
	require.ErrorIs(t, err, ErrRunBusy)
	l.release()
	_, err = r.Execute(context.Background(), sliceSource(cases), o)
	require.NoError(t, err)
}

// TestScorerInfrastructureErrors: a judge whose server fails errors the
// case; a scorer rejecting the output scores it 0.
func TestScorerInfrastructureErrors(t *testing.T) {
	store := NewStore(t.TempDir(), false)
	s := scorerFunc(func(c dataset.Case) error {
		switch c.CaseID {
		case "c000":
			return &provider.APIError{Status: 502}
		case "c001":
			return errors.New("the judge's answer is not JSON")
		}
		return nil
	})
	r := &Runner{Store: store, Pipeline: &echoPipeline{}, Models: upperModel{}, Scorer: s}
	sum, err := r.Execute(context.Background(), sliceSource(makeCases(4)), Options{})
	require.NoError(t, err)
	require.Equal(t, 1, sum.Errored)
	require.Equal(t, "scorer: HTTP 502", sum.ErrorCauses[0].Cause)
	require.Equal(t, 1, sum.ScoreErrors)
	require.Equal(t, 3, sum.Scored)
}

type scorerFunc func(dataset.Case) error

func (scorerFunc) Validate(dataset.Case) error { return nil }

func (f scorerFunc) Score(ctx context.Context, c dataset.Case, out scoring.Output) (scoring.Result, error) {
	if err := f(c); err != nil {
		return scoring.Result{}, err
	}
	return exactScorer{}.Score(ctx, c, out)
}

func errConnRefused() error { return syscall.ECONNREFUSED }

// swallowingPipeline answers with a fallback when its second model call
// fails, as a vote step does when its judge is down ("majority used") or an
// external program that catches the gateway's 502.
type swallowingPipeline struct{}

func (swallowingPipeline) Run(ctx context.Context, c dataset.Case, m chain.Models) *chain.Trace {
	t := &chain.Trace{CaseID: c.CaseID}
	client, model, _ := m.Client("")
	q, _ := c.Context["question"].(string)
	first, err := client.Complete(ctx, provider.Request{Model: model, Messages: []provider.Message{{Role: "user", Content: q}}})
	if err != nil {
		t.Error = err.Error()
		return t
	}
	if _, err := client.Complete(ctx, provider.Request{Model: model, Messages: []provider.Message{{Role: "user", Content: "judge " + q}}}); err != nil {
		t.Steps = append(t.Steps, chain.StepTrace{StepID: "vote", Kind: "vote", Output: first.Content, ParseError: err.Error() + "; majority used"})
		t.Final = first.Content
		return t
	}
	t.Final = first.Content
	return t
}

// TestSwallowedProviderFailureIsErrored: a case whose pipeline went on
// after a model call failed has no answer to score, even though the
// pipeline produced an output: it is errored, in no mean.
func TestSwallowedProviderFailureIsErrored(t *testing.T) {
	m := faultyModel{fail: func(q string) error {
		if q == "judge question 1" {
			return &provider.APIError{Status: 503}
		}
		return nil
	}}
	r := &Runner{Store: NewStore(t.TempDir(), true), Pipeline: swallowingPipeline{}, Models: m, Scorer: exactScorer{}}
	sum, err := r.Execute(context.Background(), sliceSource(makeCases(4)), Options{Split: dataset.Validation, Concurrency: 1, Redact: true})
	require.NoError(t, err)
	require.Equal(t, 1, sum.Errored)
	require.Equal(t, 3, sum.Scored)
	require.Equal(t, []CauseCount{{Cause: "provider: HTTP 503", Count: 1, Hint: "retry when the provider is back"}}, sum.ErrorCauses)
	require.NotNil(t, sum.Incomplete(4), "a held-out run with a swallowed failure is no result")
}
