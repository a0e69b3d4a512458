package run

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/scoring"
)

// Pipeline runs one case. *chain.Chain implements it.
type Pipeline interface {
	Run(ctx context.Context, c dataset.Case, m chain.Models) *chain.Trace
}

// Source streams the cases of a split (dataset.ReadFile, the sealed store's
// ReadSplit) without holding them all.
type Source func(ctx context.Context, fn func(dataset.Case) error) error

// Progress is reported after every completed case.
type Progress struct {
	RunID string
	Done  int // cases completed in this run, resumed ones included
	Total int // 0 when unknown
	// Failed counts scored cases below full marks; Errored cases that got
	// no answer because of the infrastructure.
	Failed    int
	Errored   int
	ScoreMean float64 // mean over the cases scored so far
	// Batch is set while a batched run waits for the provider's batch:
	// its id, status and request counts.
	Batch *provider.BatchProgress
}

// Options configure one run.
type Options struct {
	Tenant  string
	Variant string
	Split   dataset.Split
	// Concurrency bounds the cases in flight (default 8).
	Concurrency int
	// Limit stops after this many cases of the source (0 = all).
	Limit int
	// Total is the number of cases the source holds, for progress (0 = unknown).
	Total int
	// Resume continues run id instead of starting a new one: scored cases
	// are not run again, errored ones are. The run must have been started
	// with the same tenant, variant, split and Chain.
	Resume string
	// Chain identifies what the pipeline executes (a hash of the variant's
	// files), so that a resumed run never mixes two chains.
	Chain string
	// KeepCaseData stores each case's context and expected values in the run
	// log. Train runs keep them for attribution; held-out runs do too but
	// live in the sealed store.
	KeepCaseData bool
	// Redact strips every text of the trace (messages, outputs, retrieved
	// passages, tool results) before the case is written, keeping only its
	// shape: step ids, kinds, errors, finish reasons, tokens and latency.
	// Held-out runs are redacted so that no held-out content is stored even
	// in the sealed store; their scores are all compare needs.
	Redact bool
	// OnCase sees each result before it is written (and before redaction),
	// e.g. to count failure classes of a held-out run.
	OnCase func(*CaseResult)
	Prices map[string]provider.Price
	// Progress is called as cases complete, one call at a time.
	Progress func(Progress)
	// Labels are copied into the summary (e.g. session id, purpose).
	Labels map[string]string
	// Repeats evaluates every case this many times (0 and 1: once), each
	// repeat under its own index in the response cache, so a stochastic
	// pipeline is sampled afresh and a rerun is answered from the cache.
	Repeats int
	// Batch sends the run's model calls through the batch API of the
	// models that have one ([model] batch = true) when the run is held
	// out, or has at least BatchMinTrainCases cases: the requests are
	// collected and batched first, then the run completes as usual with
	// the batch's answers (see batch.go).
	Batch bool
	// OnStart is called with the run id once it is allocated (or resumed),
	// before any case runs: the server records the run in its index there,
	// so that every run id a tool later accepts is one the server started.
	// An error stops the run before it costs anything.
	OnStart func(runID string) error
}

// Runner evaluates a pipeline over cases and writes the run to a store.
type Runner struct {
	Store    *Store
	Pipeline Pipeline
	Models   chain.Models
	Scorer   scoring.Scorer
	Now      func() time.Time // for tests; defaults to time.Now
}

// batchSize is how many cases a batch scorer receives at once: large enough
// that a process start is amortized, small enough that progress stays live.
const batchSize = 32

// Execute runs the pipeline over src and returns the run summary. When ctx
// is cancelled the run stops promptly, keeps the cases already completed and
// returns a *StoppedError naming the run id to resume.
func (r *Runner) Execute(ctx context.Context, src Source, opts Options) (*Summary, error) {
	now := time.Now
	if r.Now != nil {
		now = r.Now
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	started := now()
	meta := &Meta{Tenant: opts.Tenant, Variant: opts.Variant, Split: string(opts.Split), Chain: opts.Chain, Labels: opts.Labels, Started: started.UTC()}
	if opts.Repeats > 1 {
		meta.Repeats = opts.Repeats
	}
	x := &execution{r: r, opts: opts, done: map[string]bool{}, acc: newSummarizer(opts.Prices)}
	var err error
	if opts.Resume != "" {
		err = x.resume(meta)
	} else {
		err = x.start(meta, started)
	}
	if err != nil {
		return nil, err
	}
	defer x.lock.release()
	if x.log, err = r.Store.openCaseLog(x.runID); err != nil {
		return nil, err
	}

	// A pipeline with per-run resources (an external program's endpoint
	// token) gets them for this run only: they end when it does.
	if rs, ok := r.Pipeline.(chain.RunScoper); ok {
		var end func()
		ctx, end = rs.BeginRun(ctx)
		defer end()
	}
	if opts.batched() {
		bctx, err := r.prefillBatches(ctx, src, opts, x.done, func(bp provider.BatchProgress) { x.report(&bp) })
		if err != nil {
			_ = x.log.close()
			return nil, x.stopped(err)
		}
		ctx = bctx
	}
	if err := x.evaluate(ctx, src); err != nil {
		return nil, err
	}
	return x.finish(started, now())
}

// execution is one run of Execute in progress: the run it writes to and
// what its completed cases add up to so far, resumed ones included.
type execution struct {
	r     *Runner
	opts  Options
	runID string
	lock  *runLock
	log   *caseLog
	done  map[string]bool // result keys a resumed run already holds

	mu    sync.Mutex // guards stats and acc, and serializes OnCase
	stats runningStats
	acc   *summarizer
	// progressMu serializes Progress calls, so that a callback needs no
	// lock of its own and sees Done never go down.
	progressMu sync.Mutex
}

// resume takes up the run opts.Resume, which must be the same run (sameRun),
// and counts its recorded cases as done.
func (x *execution) resume(meta *Meta) error {
	s, id := x.r.Store, x.opts.Resume
	if !s.Exists(id) {
		return fmt.Errorf("cannot resume run %s: it does not exist in %s", id, s.Dir())
	}
	was, err := s.Meta(id)
	if err != nil {
		return fmt.Errorf("cannot resume run %s: %w", id, err)
	}
	if err := sameRun(was, meta); err != nil {
		return fmt.Errorf("cannot resume run %s: %w", id, err)
	}
	if x.opts.OnStart != nil {
		if err := x.opts.OnStart(id); err != nil {
			return err
		}
	}
	if x.lock, err = s.lock(id); err != nil {
		return fmt.Errorf("cannot resume run %s: %w", id, err)
	}
	x.runID = id
	if err := s.prepareResume(id); err != nil {
		x.lock.release()
		return fmt.Errorf("cannot resume run %s: %w", id, err)
	}
	if err := s.Cases(id, func(cr CaseResult) error {
		x.done[cr.key()] = true
		x.stats.add(&cr)
		x.acc.add(&cr)
		return nil
	}); err != nil {
		x.lock.release()
		return fmt.Errorf("cannot resume run %s: %w", id, err)
	}
	return nil
}

// start allocates a new run, records it (OnStart) and writes its meta.
func (x *execution) start(meta *Meta, started time.Time) error {
	s := x.r.Store
	id, err := s.newRunDir(started)
	if err != nil {
		return err
	}
	if x.opts.OnStart != nil {
		if err := x.opts.OnStart(id); err != nil {
			s.removeEmpty(id)
			return err
		}
	}
	if x.lock, err = s.lock(id); err != nil {
		return err
	}
	x.runID = id
	if err := s.writeMeta(id, meta); err != nil {
		x.lock.release()
		return fmt.Errorf("run %s: %w", id, err)
	}
	return nil
}

// report sends progress, with the batch's state while a batch is awaited.
func (x *execution) report(batch *provider.BatchProgress) {
	if x.opts.Progress == nil {
		return
	}
	x.progressMu.Lock()
	defer x.progressMu.Unlock()
	x.mu.Lock()
	p := Progress{RunID: x.runID, Done: x.stats.n, Total: x.opts.Total, Failed: x.stats.failed, Errored: x.stats.errored,
		ScoreMean: x.stats.mean(), Batch: batch}
	x.mu.Unlock()
	x.opts.Progress(p)
}

// complete records one scored (or errored) case: OnCase sees it first,
// then it is redacted if asked, written, and counted.
func (x *execution) complete(cr *CaseResult) error {
	if x.opts.OnCase != nil {
		x.mu.Lock() // callers need not synchronize
		x.opts.OnCase(cr)
		x.mu.Unlock()
	}
	if x.opts.Redact {
		cr.redact()
	}
	if err := x.log.append(cr); err != nil {
		// No case id: the error of a held-out run reaches the agent.
		return fmt.Errorf("run %s: write a case result: %w", x.runID, err)
	}
	x.mu.Lock()
	x.stats.add(cr)
	x.acc.add(cr)
	x.mu.Unlock()
	x.report(nil)
	return nil
}

// stopped is the run's failure, naming it so that it can be resumed.
func (x *execution) stopped(err error) error {
	x.mu.Lock()
	n := x.stats.n
	x.mu.Unlock()
	return &StoppedError{RunID: x.runID, Done: n, Err: err}
}

// evaluate runs every case not done yet: one goroutine feeds the jobs,
// opts.Concurrency workers run them, and a batch scorer, if the scorer is
// one, scores their answers batchSize at a time. It closes the case log.
func (x *execution) evaluate(ctx context.Context, src Source) error {
	g, gctx := errgroup.WithContext(ctx)
	jobs := make(chan job)
	g.Go(func() error { return x.feed(gctx, src, jobs) })

	batch, isBatch := x.r.Scorer.(scoring.BatchScorer)
	var scored chan keyedItem
	var pending sync.Map // result key → *CaseResult awaiting a batch score
	if isBatch {
		scored = make(chan keyedItem, batchSize)
	}
	var workers sync.WaitGroup
	for range x.opts.Concurrency {
		workers.Add(1)
		g.Go(func() error {
			defer workers.Done()
			return x.work(gctx, jobs, scored, &pending)
		})
	}
	if isBatch {
		g.Go(func() error {
			workers.Wait()
			close(scored)
			return nil
		})
		g.Go(func() error { return x.scoreBatches(gctx, batch, scored, &pending) })
	}

	runErr := g.Wait()
	if err := x.log.close(); err != nil && runErr == nil {
		runErr = fmt.Errorf("run %s: close case log: %w", x.runID, err)
	}
	if runErr == nil && ctx.Err() != nil {
		runErr = ctx.Err()
	}
	if runErr != nil {
		return x.stopped(runErr)
	}
	return nil
}

// feed sends a job for every repeat of every case up to opts.Limit that
// the run does not hold yet, and closes jobs.
func (x *execution) feed(ctx context.Context, src Source, jobs chan<- job) error {
	defer close(jobs)
	repeats := max(x.opts.Repeats, 1)
	seen := 0
	err := src(ctx, func(c dataset.Case) error {
		if x.opts.Limit > 0 && seen >= x.opts.Limit {
			return errStop
		}
		seen++
		for rep := range repeats {
			if x.done[resultKey(c.CaseID, rep)] {
				continue
			}
			select {
			case jobs <- job{c, rep}:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	if errors.Is(err, errStop) {
		return nil
	}
	return err
}

// work runs jobs until there are none: a case is completed at once, or,
// when scored is set (a batch scorer) and it got an answer, parked in
// pending and its item sent to be scored.
func (x *execution) work(ctx context.Context, jobs <-chan job, scored chan<- keyedItem, pending *sync.Map) error {
	for jb := range jobs {
		cr, item, ok := x.r.runCase(provider.WithRepeat(ctx, jb.repeat), jb.c, x.opts)
		cr.Repeat = jb.repeat
		if ctx.Err() != nil {
			// Interrupted mid-case: the result may be partial, so it is
			// not recorded and the case runs again on resume.
			return ctx.Err()
		}
		if !ok || scored == nil {
			if err := x.complete(cr); err != nil {
				return err
			}
			continue
		}
		pending.Store(cr.key(), cr)
		select {
		case scored <- keyedItem{cr.key(), item}:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// scoreBatches scores the parked answers batchSize at a time and completes
// their cases.
func (x *execution) scoreBatches(ctx context.Context, batch scoring.BatchScorer, scored <-chan keyedItem, pending *sync.Map) error {
	var items []scoring.Item
	var keys []string
	flush := func() error {
		if len(items) == 0 {
			return nil
		}
		results := scoring.ScoreAll(ctx, batch, items, 1)
		for i := range items {
			v, _ := pending.LoadAndDelete(keys[i])
			cr := v.(*CaseResult)
			applyScore(cr, results[i])
			if err := x.complete(cr); err != nil {
				return err
			}
		}
		items, keys = items[:0], keys[:0]
		return nil
	}
	for it := range scored {
		items, keys = append(items, it.item), append(keys, it.key)
		if len(items) == batchSize {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// finish writes the summary of a completed run.
func (x *execution) finish(started, finished time.Time) (*Summary, error) {
	opts := x.opts
	sum := x.acc.summary(x.runID)
	if repeats := max(opts.Repeats, 1); repeats > 1 {
		sum.Repeats = repeats
	}
	sum.Tenant, sum.Variant, sum.Split, sum.Chain = opts.Tenant, opts.Variant, string(opts.Split), opts.Chain
	sum.Started, sum.Finished = started, finished
	sum.Resumed = opts.Resume != ""
	sum.Labels = opts.Labels
	if err := x.r.Store.writeSummary(sum); err != nil {
		return nil, err
	}
	return sum, nil
}

var errStop = errors.New("limit reached")

// job is one evaluation of a case: its repeat-th (from 0).
type job struct {
	c      dataset.Case
	repeat int
}

// keyedItem is a result awaiting its batch score, by result key.
type keyedItem struct {
	key  string
	item scoring.Item
}

// StoppedError is a run that did not finish: interrupted (Err is then a
// context error) or stopped by a failure of its own (a case log that
// cannot be written, a source that cannot be read). Its completed cases
// are kept; resuming it runs only the rest.
type StoppedError struct {
	RunID string
	Done  int // cases completed, resumed ones included
	Err   error
}

func (e *StoppedError) Error() string {
	if e.Interrupted() {
		return fmt.Sprintf("run %s interrupted after %d cases (%v); its completed cases are kept and it can be resumed", e.RunID, e.Done, e.Err)
	}
	return fmt.Sprintf("run %s stopped after %d cases: %v; its completed cases are kept and it can be resumed once that is fixed", e.RunID, e.Done, e.Err)
}

func (e *StoppedError) Unwrap() error { return e.Err }

// Interrupted reports whether the run was cancelled or ran out of time.
func (e *StoppedError) Interrupted() bool {
	return errors.Is(e.Err, context.Canceled) || errors.Is(e.Err, context.DeadlineExceeded)
}

// runCase validates, runs and (for plain scorers) scores one case. It
// returns ok=false when the result is final without scoring (invalid case or
// execution error), and the item to score otherwise.
func (r *Runner) runCase(ctx context.Context, c dataset.Case, opts Options) (cr *CaseResult, item scoring.Item, ok bool) {
	cr = &CaseResult{CaseID: c.CaseID}
	if opts.KeepCaseData {
		cr.Context, cr.Expected = c.Context, c.Expected
	}
	if err := r.Scorer.Validate(c); err != nil {
		// Checked before any model call: an unscorable case costs nothing.
		cr.ScoreError = "invalid case: " + err.Error()
		cr.Trace = chain.Trace{CaseID: c.CaseID}
		return cr, item, false
	}
	models := newMeteredModels(r.Models, opts.Prices)
	trace := r.safeRun(ctx, c, models)
	cr.Trace = *trace
	cr.Usage = models.snapshot()
	if trace.Error != "" {
		cr.ExecError = trace.Error
		// The step failed and a model call of this case had hit the
		// infrastructure: no answer, not a wrong one.
		cr.Cause = models.infraCause()
		if cr.Cause == "" {
			// An external program that crashed, hung or broke the protocol.
			cr.Cause = trace.Cause
		}
		return cr, item, false
	}
	if cause := models.infraCause(); cause != "" {
		// A step went on without an answer it asked for (a vote whose
		// judge failed, a program that caught the gateway's 502): the
		// output is what the outage left, so the case has no answer to
		// score, not a wrong one.
		cr.ExecError = "a model call of this case failed (" + cause + ") and a step went on without its answer"
		cr.Cause = cause
		return cr, item, false
	}
	item = scoring.Item{Case: c, Output: scoring.Output{Final: trace.Final, Trace: &cr.Trace}}
	if _, isBatch := r.Scorer.(scoring.BatchScorer); isBatch {
		return cr, item, true
	}
	applyScore(cr, scoring.ScoreAll(ctx, r.Scorer, []scoring.Item{item}, 1)[0])
	return cr, item, true
}

// safeRun turns a panic in a step into an execution error of that case: one
// bad case must never take the run down.
func (r *Runner) safeRun(ctx context.Context, c dataset.Case, m chain.Models) (t *chain.Trace) {
	defer func() {
		if p := recover(); p != nil {
			t = &chain.Trace{CaseID: c.CaseID, Error: fmt.Sprintf("internal error: %v\n%s", p, debug.Stack())}
		}
	}()
	t = r.Pipeline.Run(ctx, c, m)
	if t == nil {
		t = &chain.Trace{CaseID: c.CaseID, Error: "internal error: pipeline returned no trace"}
	}
	return t
}

func applyScore(cr *CaseResult, res scoring.ItemResult) {
	if res.Err != nil {
		cr.ScoreError = res.Err.Error()
		cr.Score, cr.Breakdown = 0, nil
		if cause, ok := scorerCauseOf(res.Err); ok {
			cr.Cause = cause
		}
		return
	}
	cr.Score, cr.Breakdown = res.Result.Composite, res.Result.Breakdown
}

// runningStats tracks the live figures shown in progress.
type runningStats struct {
	n, scored, failed, errored int
	sum                        float64
}

func (s *runningStats) add(cr *CaseResult) {
	s.n++
	if cr.Errored() {
		s.errored++
		return
	}
	s.scored++
	s.sum += cr.Score
	if cr.Score < scoring.MaxScore {
		s.failed++
	}
}

func (s *runningStats) mean() float64 {
	if s.scored == 0 {
		return 0
	}
	return s.sum / float64(s.scored)
}

// sameRun refuses to continue a run as something else than it started as.
func sameRun(was, now *Meta) error {
	var diffs []string
	if was.Tenant != now.Tenant {
		diffs = append(diffs, fmt.Sprintf("tenant %s, not %s", was.Tenant, now.Tenant))
	}
	if was.Split != now.Split {
		diffs = append(diffs, fmt.Sprintf("the %s split, not %s", was.Split, now.Split))
	}
	if was.Variant != now.Variant {
		diffs = append(diffs, fmt.Sprintf("variant %s, not %s", was.Variant, now.Variant))
	}
	if was.Variant == now.Variant && was.Chain != now.Chain {
		diffs = append(diffs, "a chain whose files have changed since")
	}
	if w, n := max(was.Repeats, 1), max(now.Repeats, 1); w != n {
		diffs = append(diffs, fmt.Sprintf("each case %s, not %s", times(w), times(n)))
	}
	if len(diffs) == 0 {
		return nil
	}
	return refusal.New(refusal.NewRun, "", fmt.Sprintf("it ran %s: one run never mixes two pipelines", strings.Join(diffs, ", ")))
}

func times(n int) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}
