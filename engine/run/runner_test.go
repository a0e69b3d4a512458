package run

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/scoring"
)

// echoPipeline is a one-step pipeline that asks the model for the case's
// question and returns its answer; hooks let tests fail or panic on a case.
type echoPipeline struct {
	calls  atomic.Int64
	before func(ctx context.Context, c dataset.Case) error
}

func (p *echoPipeline) Run(ctx context.Context, c dataset.Case, m chain.Models) *chain.Trace {
	p.calls.Add(1)
	t := &chain.Trace{CaseID: c.CaseID}
	if p.before != nil {
		if err := p.before(ctx, c); err != nil {
			t.Steps = append(t.Steps, chain.StepTrace{StepID: "answer", Kind: "llm", Error: err.Error()})
			t.Error = err.Error()
			return t
		}
	}
	client, model, err := m.Client("")
	if err != nil {
		t.Error = err.Error()
		return t
	}
	q, _ := c.Context["question"].(string)
	resp, err := client.Complete(ctx, provider.Request{Model: model, Messages: []provider.Message{{Role: "user", Content: q}}})
	st := chain.StepTrace{StepID: "answer", Kind: "llm", Output: resp.Content, Calls: 1, LatencyMS: float64(resp.Latency.Milliseconds()),
		PromptTokens: resp.Usage.PromptTokens, CompletionTokens: resp.Usage.CompletionTokens}
	if resp.CacheHit {
		st.CacheHits = 1
	}
	if err != nil {
		st.Error = err.Error()
		t.Error = err.Error()
	}
	t.Steps = append(t.Steps, st)
	t.Final = resp.Content
	return t
}

// upperModel answers the upper-cased question, like a deterministic model.
type upperModel struct {
	cacheHitEvery int
	n             *atomic.Int64
}

func (m upperModel) Client(name string) (provider.Client, string, error) {
	n := m.n
	if n == nil {
		n = new(atomic.Int64)
	}
	return provider.ClientFunc(func(ctx context.Context, req provider.Request) (provider.Response, error) {
		if err := ctx.Err(); err != nil {
			return provider.Response{}, err
		}
		hit := m.cacheHitEvery > 0 && n.Add(1)%int64(m.cacheHitEvery) == 0
		return provider.Response{Content: strings.ToUpper(req.Messages[0].Content), FinishReason: "stop",
			Usage: provider.Usage{PromptTokens: 1000, CompletionTokens: 100}, CacheHit: hit}, nil
	}), "test-model", nil
}

// exactScorer gives 100 when the output equals expected.answer.
type exactScorer struct{}

func (exactScorer) Validate(c dataset.Case) error {
	if _, ok := c.Expected["answer"].(string); !ok {
		return errors.New("expected.answer is missing")
	}
	return nil
}

func (exactScorer) Score(_ context.Context, c dataset.Case, out scoring.Output) (scoring.Result, error) {
	if out.Final == c.Expected["answer"] {
		return scoring.Result{Composite: 100}, nil
	}
	return scoring.Result{Composite: 0}, nil
}

// batchScorer records the size of every batch it receives.
type batchScorer struct {
	exactScorer
	mu      sync.Mutex
	batches []int
}

func (b *batchScorer) ScoreBatch(ctx context.Context, items []scoring.Item) []scoring.ItemResult {
	b.mu.Lock()
	b.batches = append(b.batches, len(items))
	b.mu.Unlock()
	out := make([]scoring.ItemResult, len(items))
	for i, it := range items {
		r, err := b.Score(ctx, it.Case, it.Output)
		out[i] = scoring.ItemResult{Result: r, Err: err}
	}
	return out
}

func makeCases(n int) []dataset.Case {
	cases := make([]dataset.Case, n)
	for i := range cases {
		q := fmt.Sprintf("question %d", i)
		answer := strings.ToUpper(q)
		if i%4 == 3 {
			answer = "something else" // a wrong answer every fourth case
		}
		cases[i] = dataset.Case{CaseID: fmt.Sprintf("c%03d", i), Context: map[string]any{"question": q},
			Expected: map[string]any{"answer": answer}}
	}
	return cases
}

func sliceSource(cases []dataset.Case) Source {
	return func(ctx context.Context, fn func(dataset.Case) error) error {
		for _, c := range cases {
			if err := fn(c); err != nil {
				return err
			}
		}
		return nil
	}
}

func countLines(t *testing.T, store *Store, id string) int {
	n := 0
	require.NoError(t, store.Cases(id, func(CaseResult) error { n++; return nil }))
	return n
}

func TestExecuteScoresEveryCase(t *testing.T) {
	store := NewStore(t.TempDir(), false)
	p := &echoPipeline{}
	r := &Runner{Store: store, Pipeline: p, Models: upperModel{cacheHitEvery: 5, n: new(atomic.Int64)}, Scorer: exactScorer{}}
	var progress []Progress
	var mu sync.Mutex
	sum, err := r.Execute(context.Background(), sliceSource(makeCases(40)), Options{
		Tenant: "t", Variant: "v0000", Split: dataset.Train, Concurrency: 4, Total: 40,
		Prices:   map[string]provider.Price{"test-model": {InputPerMTok: 1, OutputPerMTok: 10}},
		Progress: func(pr Progress) { mu.Lock(); progress = append(progress, pr); mu.Unlock() },
	})
	require.NoError(t, err)
	require.True(t, ValidID(sum.RunID))
	require.Equal(t, 40, sum.Cases)
	require.InDelta(t, 75.0, sum.ScoreMean, 1e-9) // 30 of 40 right
	require.Equal(t, 0, sum.ExecErrors)
	require.Len(t, sum.Steps, 1)
	require.Equal(t, 40, sum.Steps[0].Runs)
	require.Equal(t, 40, sum.Usage.Calls)
	require.Equal(t, 8, sum.Usage.CacheHits)
	// 32 paid calls × (1000 × $1 + 100 × $10) per million tokens.
	require.InDelta(t, 32*0.002, sum.Usage.USD, 1e-12)
	require.Len(t, progress, 40)
	require.Equal(t, 40, progress[len(progress)-1].Done)
	require.Equal(t, 40, countLines(t, store, sum.RunID))

	got, err := store.Summary(sum.RunID)
	require.NoError(t, err)
	require.Equal(t, sum.ScoreMean, got.ScoreMean)
	require.Equal(t, "v0000", got.Variant)
}

func TestExecuteMarksFailedCasesAndKeepsGoing(t *testing.T) {
	store := NewStore(t.TempDir(), false)
	p := &echoPipeline{before: func(_ context.Context, c dataset.Case) error {
		switch c.CaseID {
		case "c001":
			return errors.New("provider: 500 Internal Server Error")
		case "c002":
			panic("template blew up")
		}
		return nil
	}}
	cases := makeCases(6)
	delete(cases[4].Expected, "answer") // unscorable: must not cost a model call
	r := &Runner{Store: store, Pipeline: p, Models: upperModel{}, Scorer: exactScorer{}}
	sum, err := r.Execute(context.Background(), sliceSource(cases), Options{Concurrency: 2})
	require.NoError(t, err)
	require.Equal(t, 6, sum.Cases)
	require.Equal(t, 2, sum.ExecErrors)
	require.Equal(t, 1, sum.ScoreErrors)
	require.EqualValues(t, 5, p.calls.Load(), "an invalid case is refused before the pipeline runs")

	results := map[string]CaseResult{}
	require.NoError(t, store.Cases(sum.RunID, func(cr CaseResult) error { results[cr.CaseID] = cr; return nil }))
	require.Contains(t, results["c001"].ExecError, "500")
	require.Contains(t, results["c002"].ExecError, "template blew up")
	require.Contains(t, results["c004"].ScoreError, "invalid case: expected.answer is missing")
	require.Zero(t, results["c001"].Score)
}

func TestResumeRepeatsNoCompletedCase(t *testing.T) {
	store := NewStore(t.TempDir(), false)
	cases := makeCases(30)
	ctx, cancel := context.WithCancel(context.Background())
	var seen sync.Map
	var crashed atomic.Bool
	p := &echoPipeline{before: func(ctx context.Context, c dataset.Case) error {
		if _, dup := seen.LoadOrStore(c.CaseID, true); dup {
			return fmt.Errorf("case %s ran twice", c.CaseID)
		}
		if c.CaseID == "c012" && crashed.CompareAndSwap(false, true) {
			cancel() // the crash: everything in flight is abandoned
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}}
	r := &Runner{Store: store, Pipeline: p, Models: upperModel{}, Scorer: exactScorer{}}
	_, err := r.Execute(ctx, sliceSource(cases), Options{Concurrency: 1})
	require.ErrorContains(t, err, "can be resumed")
	require.ErrorIs(t, err, context.Canceled)

	runs, err := os.ReadDir(store.Dir())
	require.NoError(t, err)
	require.Len(t, runs, 1)
	id := runs[0].Name()
	completed := countLines(t, store, id)
	require.Less(t, completed, 30)

	// Simulate a crash that tore the last line mid-write.
	f, err := os.OpenFile(filepath.Join(store.Dir(), id, casesFile), os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"case_id":"c0`)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	callsBefore := p.calls.Load()
	seen.Delete("c012") // the interrupted case was never completed
	sum, err := r.Execute(context.Background(), sliceSource(cases), Options{Concurrency: 3, Resume: id})
	require.NoError(t, err)
	require.Equal(t, id, sum.RunID)
	require.True(t, sum.Resumed)
	require.Equal(t, 30, sum.Cases)
	require.Zero(t, sum.ExecErrors, "no case ran twice")
	require.EqualValues(t, 30-completed, p.calls.Load()-callsBefore, "resume runs only the missing cases")
}

func TestBatchScorerReceivesBatches(t *testing.T) {
	store := NewStore(t.TempDir(), false)
	scorer := &batchScorer{}
	r := &Runner{Store: store, Pipeline: &echoPipeline{}, Models: upperModel{}, Scorer: scorer}
	sum, err := r.Execute(context.Background(), sliceSource(makeCases(70)), Options{Concurrency: 4})
	require.NoError(t, err)
	require.InDelta(t, 75.0, sum.ScoreMean, 2) // 70 cases: 53 right
	total := 0
	for _, n := range scorer.batches {
		require.LessOrEqual(t, n, batchSize)
		total += n
	}
	require.Equal(t, 70, total)
	require.Less(t, len(scorer.batches), 70, "cases are scored in batches, not one process per case")
}

func TestLimitAndUniqueRunIDs(t *testing.T) {
	store := NewStore(t.TempDir(), true)
	r := &Runner{Store: store, Pipeline: &echoPipeline{}, Models: upperModel{}, Scorer: exactScorer{},
		Now: func() time.Time { return time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC) }}
	ids := map[string]bool{}
	for range 5 {
		sum, err := r.Execute(context.Background(), sliceSource(makeCases(10)), Options{Limit: 3})
		require.NoError(t, err)
		require.Equal(t, 3, sum.Cases)
		require.False(t, ids[sum.RunID], "run id reused")
		ids[sum.RunID] = true
		fi, err := os.Stat(filepath.Join(store.Dir(), sum.RunID, summaryFile))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "held-out run artifacts are private")
	}
}

func TestStoreRefusesBadIDs(t *testing.T) {
	store := NewStore(t.TempDir(), false)
	for _, id := range []string{"../../etc", "r20261123T101500Z-zzzzzz", "", "r1"} {
		_, err := store.Summary(id)
		require.ErrorContains(t, err, "is not a run id", id)
	}
	_, err := store.Summary("r20261123T101500Z-abcdef")
	require.ErrorContains(t, err, "does not exist")
	r := &Runner{Store: store, Pipeline: &echoPipeline{}, Models: upperModel{}, Scorer: exactScorer{}}
	_, err = r.Execute(context.Background(), sliceSource(nil), Options{Resume: "r20261123T101500Z-abcdef"})
	require.ErrorContains(t, err, "cannot resume")
}

func TestRedactKeepsNoText(t *testing.T) {
	store := NewStore(t.TempDir(), true)
	cases := makeCases(5)
	cases[1].Context["question"] = "CANARY-held-out-text"
	var seen []string
	r := &Runner{Store: store, Pipeline: &echoPipeline{}, Models: upperModel{}, Scorer: exactScorer{}}
	sum, err := r.Execute(context.Background(), sliceSource(cases), Options{Redact: true, KeepCaseData: true,
		OnCase: func(cr *CaseResult) { seen = append(seen, cr.Trace.Final) }})
	require.NoError(t, err)
	require.Equal(t, 5, sum.Cases)
	require.Contains(t, seen, "CANARY-HELD-OUT-TEXT", "OnCase sees the full result before redaction")
	raw, err := os.ReadFile(filepath.Join(store.Dir(), sum.RunID, casesFile))
	require.NoError(t, err)
	require.NotContains(t, strings.ToLower(string(raw)), "canary")
	require.Contains(t, string(raw), `"composite_score"`)
}

// TestSummaryAccumulatesWhatTheLogHolds: the summary is accumulated as
// cases complete, never by re-reading the case log, and it must be the
// summary the log itself gives — across a resume, with scored, failed,
// errored (infrastructure) and unscorable cases, breakdowns and usage.
func TestSummaryAccumulatesWhatTheLogHolds(t *testing.T) {
	store := NewStore(t.TempDir(), false)
	cases := makeCases(40)
	delete(cases[7].Expected, "answer")
	ctx, cancel := context.WithCancel(context.Background())
	var stopped atomic.Bool
	p := &echoPipeline{before: func(ctx context.Context, c dataset.Case) error {
		switch {
		case c.CaseID == "c005":
			return errors.New("template failed")
		case c.CaseID == "c020" && stopped.CompareAndSwap(false, true):
			cancel()
			<-ctx.Done()
			return ctx.Err()
		}
		return nil
	}}
	flaky := failingOn{upperModel{cacheHitEvery: 3, n: new(atomic.Int64)}, "question 9"}
	r := &Runner{Store: store, Pipeline: p, Models: flaky, Scorer: exactScorer{}}
	opts := Options{Concurrency: 1, Prices: map[string]provider.Price{"test-model": {InputPerMTok: 1, OutputPerMTok: 10}}}
	_, err := r.Execute(ctx, sliceSource(cases), opts)
	var stop *StoppedError
	require.ErrorAs(t, err, &stop)

	opts.Resume, opts.Concurrency = stop.RunID, 4
	sum, err := r.Execute(context.Background(), sliceSource(cases), opts)
	require.NoError(t, err)
	require.Equal(t, 40, sum.Cases)
	require.Positive(t, sum.Failed)
	require.Equal(t, 1, sum.ScoreErrors)
	require.Equal(t, 1, sum.Errored)

	fromLog, err := summarize(store, sum.RunID, opts.Prices)
	require.NoError(t, err)
	fromLog.Tenant, fromLog.Variant, fromLog.Split, fromLog.Chain = sum.Tenant, sum.Variant, sum.Split, sum.Chain
	fromLog.Started, fromLog.Finished, fromLog.Resumed, fromLog.Labels, fromLog.Repeats = sum.Started, sum.Finished, sum.Resumed, sum.Labels, sum.Repeats
	require.Equal(t, fromLog, sum)
}

// failingOn is a model whose server times out on one question.
type failingOn struct {
	upperModel
	question string
}

func (m failingOn) Client(name string) (provider.Client, string, error) {
	c, model, err := m.upperModel.Client(name)
	return provider.ClientFunc(func(ctx context.Context, req provider.Request) (provider.Response, error) {
		if req.Messages[0].Content == m.question {
			return provider.Response{}, fmt.Errorf("no answer: %w", provider.ErrTimeout)
		}
		return c.Complete(ctx, req)
	}), model, err
}

// retriedModel answers every call after a first attempt that said nothing
// (billed, 1000 prompt tokens), or, with giveUp, fails every call that
// way after two billed attempts.
type retriedModel struct{ giveUp bool }

func (m retriedModel) Client(string) (provider.Client, string, error) {
	return provider.ClientFunc(func(context.Context, provider.Request) (provider.Response, error) {
		empty := provider.ClientFunc(func(context.Context, provider.Request) (provider.Response, error) {
			return provider.Response{FinishReason: "stop", Usage: provider.Usage{PromptTokens: 1000}}, nil
		})
		_, err := provider.WithAnswerCheck(empty).Complete(context.Background(), provider.Request{Model: "test-model"})
		if m.giveUp {
			return provider.Response{}, fmt.Errorf("gave up: %w", err)
		}
		return provider.Response{Content: "X", FinishReason: "stop", Usage: provider.Usage{PromptTokens: 1000, CompletionTokens: 100},
			Retried: provider.BilledUsage(err)}, nil
	}), "test-model", nil
}

// TestRunChargesBilledAttemptsThatDidNotAnswer: the usage of a run, tokens
// and cost, counts what the provider billed for answers that said nothing,
// in cases that then answered and in cases that errored.
func TestRunChargesBilledAttemptsThatDidNotAnswer(t *testing.T) {
	prices := map[string]provider.Price{"test-model": {InputPerMTok: 1, OutputPerMTok: 10}}
	for _, tt := range []struct {
		name   string
		giveUp bool
		prompt int     // tokens per case
		usd    float64 // per case
	}{
		{"answered after an empty completion", false, 2000, 0.001 + 0.002},
		{"errored after an empty completion", true, 1000, 0.001},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &Runner{Store: NewStore(t.TempDir(), false), Pipeline: &echoPipeline{}, Models: retriedModel{tt.giveUp}, Scorer: exactScorer{}}
			sum, err := r.Execute(context.Background(), sliceSource(makeCases(4)), Options{Tenant: "t", Variant: "v0000",
				Split: dataset.Train, Concurrency: 2, Total: 4, Prices: prices})
			require.NoError(t, err)
			require.InDelta(t, 4*tt.usd, sum.Usage.USD, 1e-12)
			require.Equal(t, 4*tt.prompt, sum.Usage.PromptTokens)
		})
	}
}

// TestProgressIsCalledOneAtATime: the Progress callback is never entered
// twice at once, sees Done never go down, and is called once per case.
func TestProgressIsCalledOneAtATime(t *testing.T) {
	var inside, overlaps atomic.Int64
	var calls, last int
	down := false
	r := &Runner{Store: NewStore(t.TempDir(), false), Pipeline: &echoPipeline{}, Models: upperModel{}, Scorer: exactScorer{}}
	_, err := r.Execute(context.Background(), sliceSource(makeCases(200)), Options{Tenant: "t", Variant: "v0000",
		Split: dataset.Train, Concurrency: 16, Total: 200, Progress: func(p Progress) {
			if inside.Add(1) > 1 {
				overlaps.Add(1)
			}
			time.Sleep(50 * time.Microsecond)
			calls++ // unsynchronized on purpose: the race detector sees overlaps too
			down = down || p.Done < last
			last = p.Done
			inside.Add(-1)
		}})
	require.NoError(t, err)
	require.Zero(t, overlaps.Load())
	require.False(t, down)
	require.Equal(t, 200, calls)
}
