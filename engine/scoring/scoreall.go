package scoring

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"sort"
	"sync"

	"github.com/fapo-dev/fapo/engine/dataset"
)

// ScoreAll scores items, in one batch when s is a BatchScorer and otherwise
// with at most concurrency Score calls at a time (concurrency <= 0 means the
// number of CPUs). Every result is checked: a NaN, infinite or out-of-range
// score becomes that item's error, never a clamped number, so a broken scorer
// cannot quietly skew a comparison.
func ScoreAll(ctx context.Context, s Scorer, items []Item, concurrency int) []ItemResult {
	// Batch scorers that wrap others (composite, json_field) call ScoreAll
	// again without knowing the caller's bound; the context carries it.
	if concurrency > 0 {
		ctx = context.WithValue(ctx, concurrencyKey{}, concurrency)
	}
	var res []ItemResult
	if b, ok := s.(BatchScorer); ok {
		res = b.ScoreBatch(ctx, items)
		if len(res) != len(items) {
			err := fmt.Errorf("scorer returned %d results for %d items; this is a bug in the scorer", len(res), len(items))
			res = make([]ItemResult, len(items))
			for i := range res {
				res[i].Err = err
			}
		}
	} else {
		res = make([]ItemResult, len(items))
		forEach(ctx, len(items), concurrency, func(i int) {
			r, err := s.Score(ctx, items[i].Case, items[i].Output)
			res[i] = ItemResult{Result: r, Err: err}
		}, func(i int, err error) { res[i].Err = err })
	}
	for i := range res {
		if res[i].Err == nil {
			res[i].Err = CheckResult(res[i].Result)
		}
	}
	return res
}

type concurrencyKey struct{}

// ValidateAll validates cases, in one batch when s is a BatchValidator. The
// i-th error belongs to the i-th case; nil means the case can be scored.
func ValidateAll(ctx context.Context, s Scorer, cases []dataset.Case) []error {
	if b, ok := s.(BatchValidator); ok {
		errs := b.ValidateBatch(ctx, cases)
		if len(errs) == len(cases) {
			return errs
		}
		err := fmt.Errorf("scorer returned %d validation results for %d cases; this is a bug in the scorer", len(errs), len(cases))
		errs = make([]error, len(cases))
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	errs := make([]error, len(cases))
	for i, c := range cases {
		if err := ctx.Err(); err != nil {
			errs[i] = err
			continue
		}
		errs[i] = s.Validate(c)
	}
	return errs
}

// CheckResult reports a composite or breakdown score that is NaN, infinite or
// outside [0, MaxScore].
func CheckResult(r Result) error {
	if !inRange(r.Composite) {
		return fmt.Errorf("scorer returned %v; scores must lie in [0, %v]", r.Composite, MaxScore)
	}
	keys := make([]string, 0, len(r.Breakdown))
	for k := range r.Breakdown {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if v := r.Breakdown[k]; !inRange(v) {
			return fmt.Errorf("scorer returned %v for score_breakdown %q; scores must lie in [0, %v]", v, k, MaxScore)
		}
	}
	return nil
}

func inRange(v float64) bool {
	return !math.IsNaN(v) && v >= 0 && v <= MaxScore
}

// forEach calls do(i) for i in [0, n) with bounded parallelism (concurrency
// <= 0: the bound of the enclosing ScoreAll, else the CPUs); an index not
// started before ctx is done gets skip(i, ctx.Err()) instead.
func forEach(ctx context.Context, n, concurrency int, do func(i int), skip func(i int, err error)) {
	if concurrency <= 0 {
		concurrency = runtime.GOMAXPROCS(0)
		if c, ok := ctx.Value(concurrencyKey{}).(int); ok {
			concurrency = c
		}
	}
	if concurrency == 1 || n == 1 {
		// Nothing to overlap: a goroutine per item would only add a
		// hand-off between threads to every case of a run.
		for i := range n {
			if err := ctx.Err(); err != nil {
				skip(i, err)
				continue
			}
			do(i)
		}
		return
	}
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	for i := range n {
		select {
		case <-ctx.Done():
			skip(i, ctx.Err())
			continue
		case sem <- struct{}{}:
		}
		if err := ctx.Err(); err != nil {
			<-sem
			skip(i, err)
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			do(i)
		}()
	}
	wg.Wait()
}
