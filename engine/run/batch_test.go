package run

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/engine/statedb"
)

// twoStepChain is extract → answer, the second step quoting the first's
// output, so a batched run needs two rounds.
func twoStepChain(t *testing.T) *chain.Chain {
	dir := t.TempDir()
	files := map[string]string{
		"chain.toml": `
output = "answer"

[[steps]]
id = "extract"
kind = "llm"
prompt = "prompts/extract.md"

[[steps]]
id = "answer"
kind = "llm"
prompt = "prompts/answer.md"
`,
		"prompts/extract.md": "Q: {{.context.question}}",
		"prompts/answer.md":  "{{.steps.extract.output}}",
	}
	for p, text := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(text), 0o644))
	}
	ch, err := chain.Load(dir)
	require.NoError(t, err)
	return ch
}

// twoStepModel answers "Q: x" with "X x" and "X x" with "X" upper-cased,
// so the chain's final answer is the question upper-cased; questions
// containing failOn get fault f.
func twoStepModel(opts ...fakellm.Option) *fakellm.Server {
	def := fakellm.WithDefault(func(r fakellm.Request) fakellm.Reply {
		if q, ok := strings.CutPrefix(r.LastUser(), "Q: "); ok {
			return fakellm.Reply{Content: "X " + q}
		}
		return fakellm.Reply{Content: strings.ToUpper(strings.TrimPrefix(r.LastUser(), "X "))}
	})
	return fakellm.New(append(opts, def)...)
}

type batchSetup struct {
	fake   *fakellm.Server
	cache  *provider.Cache
	client provider.Client
	store  *Store
}

func newBatchSetup(t *testing.T, batch bool, opts ...fakellm.Option) *batchSetup {
	fake := twoStepModel(opts...)
	t.Cleanup(fake.Close)
	db, err := statedb.Open(filepath.Join(t.TempDir(), "home"))
	require.NoError(t, err)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	cache, err := provider.OpenCache(db, "t", key)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cache.Close(); _ = db.Close() })
	client, err := provider.Stack(provider.Spec{Provider: "openai_compatible", Name: "m", BaseURL: fake.URL(),
		TimeoutSeconds: 10, MaxRetries: 1, Batch: batch},
		provider.StackOptions{Cache: cache, Options: provider.Options{BatchPoll: time.Millisecond}, Prices: batchPrices,
			Retry: provider.RetryPolicy{BaseDelay: time.Millisecond}})
	require.NoError(t, err)
	return &batchSetup{fake: fake, cache: cache, client: client, store: NewStore(t.TempDir(), true)}
}

type stackModels struct{ c provider.Client }

func (m stackModels) Client(string) (provider.Client, string, error) { return m.c, "m", nil }

var batchPrices = map[string]provider.Price{"m": {InputPerMTok: 1, OutputPerMTok: 10, BatchDiscount: 0.5}}

func (s *batchSetup) execute(t *testing.T, ch *chain.Chain, cases []dataset.Case, scope provider.Scope, split dataset.Split,
	batch bool, progress func(Progress)) *Summary {
	r := &Runner{Store: s.store, Pipeline: ch, Models: stackModels{s.client}, Scorer: exactScorer{}}
	sum, err := r.Execute(provider.WithScope(context.Background(), scope), sliceSource(cases), Options{
		Tenant: "t", Variant: "v0000", Split: split, Concurrency: 16, Total: len(cases), Batch: batch,
		Prices: batchPrices, Progress: progress, Redact: split.HeldOut()})
	require.NoError(t, err)
	return sum
}

func caseScores(t *testing.T, s *Store, id string) map[string]float64 {
	out := map[string]float64{}
	require.NoError(t, s.Cases(id, func(cr CaseResult) error { out[cr.CaseID] = cr.Score; return nil }))
	return out
}

// TestBatchedValidationRun: a 2,000-case validation run with [model]
// batch = true goes through the test double's batch endpoints (file
// upload, batch create, polls, output file) in two rounds for a two-step
// chain, reports the batch's progress, fills the response cache in the
// held-out scope, prices its calls at the batch discount, and scores
// every case as the same run without batch does.
func TestBatchedValidationRun(t *testing.T) {
	const n = 2000
	cases := makeCases(n)
	ch := twoStepChain(t)

	b := newBatchSetup(t, true, fakellm.WithBatchPolls(4))
	var mu sync.Mutex
	var batchProgress []provider.BatchProgress
	last := Progress{}
	sum := b.execute(t, ch, cases, provider.ScopeHeldOut, dataset.Validation, true, func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Batch != nil {
			batchProgress = append(batchProgress, *p.Batch)
		}
		last = p
	})
	require.Zero(t, b.fake.Count(), "no live chat call: every request went through the batch")
	require.Equal(t, 2, b.fake.Batches(), "one batch per step of the chain")
	require.Equal(t, 2*n, b.fake.BatchLines())
	require.Equal(t, n, sum.Cases)
	require.Equal(t, n, sum.Scored)
	require.Zero(t, sum.Errored)
	require.InDelta(t, 75.0, sum.ScoreMean, 1e-9)
	require.Equal(t, 2*n, sum.Usage.Calls)
	require.Zero(t, sum.Usage.CacheHits)
	require.Equal(t, n, last.Done)
	// The provider's ledger saw each call once: the collect passes' deferred
	// calls are neither calls nor errors.
	ledger := provider.LedgerOf(b.client).Snapshot()
	require.Equal(t, 2*n, ledger.Calls)
	require.Zero(t, ledger.Errors)
	require.InDelta(t, sum.Usage.USD, ledger.USD, 1e-9)

	// Progress: both batches, seen growing to completion.
	require.NotEmpty(t, batchProgress)
	ids := map[string]bool{}
	for _, p := range batchProgress {
		ids[p.ID] = true
		require.Equal(t, n, p.Total)
	}
	require.Len(t, ids, 2)
	require.Equal(t, "completed", batchProgress[len(batchProgress)-1].Status)
	require.Equal(t, n, batchProgress[len(batchProgress)-1].Completed)
	require.Contains(t, batchProgress, provider.BatchProgress{ID: batchProgress[len(batchProgress)-1].ID,
		Status: "in_progress", Total: n, Completed: n / 4}, "counts grow poll by poll")

	// The cache holds every answer, held out: the same held-out run is all
	// hits, a train request with the same prompt is not.
	require.Equal(t, 2*n, b.cache.Len())
	again := b.execute(t, ch, cases[:50], provider.ScopeHeldOut, dataset.Validation, false, nil)
	require.Equal(t, 100, again.Usage.CacheHits)
	require.Zero(t, b.fake.Count())
	train := b.execute(t, ch, cases[:50], provider.ScopeTrain, dataset.Train, false, nil)
	require.Zero(t, train.Usage.CacheHits, "held-out entries are invisible to train requests")
	require.Equal(t, 100, b.fake.Count())

	// The same run without batch: the same scores, at the full price.
	live := newBatchSetup(t, false)
	liveSum := live.execute(t, ch, cases, provider.ScopeHeldOut, dataset.Validation, true, nil)
	require.Zero(t, live.fake.Batches(), "a model without batch = true is called live")
	require.Equal(t, 2*n, live.fake.Count())
	require.Equal(t, liveSum.ScoreMean, sum.ScoreMean)
	require.Equal(t, liveSum.Scored, sum.Scored)
	require.Equal(t, liveSum.Failed, sum.Failed)
	require.Equal(t, caseScores(t, live.store, liveSum.RunID), caseScores(t, b.store, sum.RunID))
	require.Equal(t, liveSum.Usage.PromptTokens, sum.Usage.PromptTokens)
	require.InDelta(t, liveSum.Usage.USD/2, sum.Usage.USD, 1e-9, "batch answers cost the declared discount")
}

// TestBatchErrorsAreErroredCases: requests the batch answered with a 500
// or not at all are errored cases (in no mean), never zeros; a small
// train run is not batched.
func TestBatchErrorsAreErroredCases(t *testing.T) {
	cases := makeCases(40)
	ch := twoStepChain(t)
	b := newBatchSetup(t, true,
		fakellm.WithRule(fakellm.LastUserContains("question 5"), fakellm.Reply{Fault: fakellm.ServerError()}),
		fakellm.WithRule(fakellm.LastUserContains("question 6"), fakellm.Reply{Fault: fakellm.Hang()}))
	sum := b.execute(t, ch, cases, provider.ScopeHeldOut, dataset.Validation, true, nil)
	require.Zero(t, b.fake.Count())
	require.Equal(t, 40, sum.Cases)
	require.Equal(t, 2, sum.Errored, "question 5 and 6 got no answer")
	require.Equal(t, 38, sum.Scored)
	causes := map[string]int{}
	for _, c := range sum.ErrorCauses {
		causes[c.Cause] = c.Count
	}
	require.Equal(t, map[string]int{"provider: HTTP 500": 1, "provider: batch failed": 1}, causes)
	// 38 scored cases, every fourth (3, 7, …, 39 but not the errored) wrong.
	right := 0
	for i := range 40 {
		if i != 5 && i != 6 && i%4 != 3 {
			right++
		}
	}
	require.InDelta(t, 100*float64(right)/38, sum.ScoreMean, 1e-9)

	small := newBatchSetup(t, true)
	smallSum := small.execute(t, ch, cases, provider.ScopeTrain, dataset.Train, true, nil)
	require.Zero(t, small.fake.Batches(), fmt.Sprintf("a train run under %d cases is not batched", BatchMinTrainCases))
	require.Equal(t, 80, small.fake.Count())
	require.Equal(t, 40, smallSum.Scored)
}

// TestBatchedRunWithRepeats: each repeat of a case has its own cache
// entries, so its own batch requests; every one is answered by the batch.
func TestBatchedRunWithRepeats(t *testing.T) {
	b := newBatchSetup(t, true)
	r := &Runner{Store: b.store, Pipeline: twoStepChain(t), Models: stackModels{b.client}, Scorer: exactScorer{}}
	sum, err := r.Execute(provider.WithScope(context.Background(), provider.ScopeHeldOut), sliceSource(makeCases(20)), Options{
		Tenant: "t", Variant: "v0000", Split: dataset.Validation, Concurrency: 4, Total: 20, Batch: true, Repeats: 3, Redact: true})
	require.NoError(t, err)
	require.Equal(t, 60, sum.Cases)
	require.Zero(t, sum.Errored)
	require.Zero(t, b.fake.Count(), "no repeat was called live")
	require.Equal(t, 2*60, b.fake.BatchLines())
}
