package run

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider"
)

// BatchMinTrainCases is the size from which a train run goes through the
// batch API when its model batches: a smaller one is interactive work,
// where the batch API's hours of latency would cost more than they save.
const BatchMinTrainCases = 1000

// maxBatchRounds bounds the collect-and-submit rounds of a batched run:
// each reaches one step further down the chain.
const maxBatchRounds = 32

// batched reports whether a run goes through the batch API.
func (o Options) batched() bool {
	return o.Batch && (o.Split.HeldOut() || o.Total >= BatchMinTrainCases)
}

// prefillBatches runs the collect passes and batches of a batched run (see
// provider's batch.go) over the cases not yet done, and returns ctx for
// the run proper, whose calls consume the batch results. Invalid cases are
// skipped, as the run proper refuses them before any call. Progress goes
// to report with the batch's state; nothing is written.
func (r *Runner) prefillBatches(ctx context.Context, src Source, opts Options, done map[string]bool,
	report func(provider.BatchProgress)) (context.Context, error) {
	col := provider.NewBatchCollector()
	cctx := provider.WithBatchCollector(ctx, col)
	for round := 0; round < maxBatchRounds; round++ {
		if err := r.collectPass(cctx, src, opts, done); err != nil {
			return nil, err
		}
		groups := col.Take()
		if len(groups) == 0 {
			break
		}
		for _, g := range groups {
			results, err := g.Batcher.RunBatch(ctx, g.Reqs, report)
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if err != nil && !errors.Is(err, provider.ErrBatchFailed) {
				// The batch API itself failed (upload refused, a key without
				// batch access): nothing was answered or charged.
				return nil, fmt.Errorf("batch: %w", err)
			}
			// A failed batch fails its requests: errored cases, never zeros.
			col.Fill(g, results, err)
		}
	}
	col.Consume()
	return cctx, nil
}

// collectPass runs the pipeline over the cases to do with the collector in
// ctx, discarding what it produces.
func (r *Runner) collectPass(ctx context.Context, src Source, opts Options, done map[string]bool) error {
	g, gctx := errgroup.WithContext(ctx)
	repeats := max(opts.Repeats, 1)
	cases := make(chan job)
	g.Go(func() error {
		defer close(cases)
		seen := 0
		err := src(gctx, func(c dataset.Case) error {
			if opts.Limit > 0 && seen >= opts.Limit {
				return errStop
			}
			seen++
			if r.Scorer.Validate(c) != nil {
				return nil
			}
			for rep := range repeats {
				if done[resultKey(c.CaseID, rep)] {
					continue
				}
				select {
				case cases <- job{c, rep}:
				case <-gctx.Done():
					return gctx.Err()
				}
			}
			return nil
		})
		if errors.Is(err, errStop) {
			return nil
		}
		return err
	})
	for range opts.Concurrency {
		g.Go(func() error {
			for jb := range cases {
				// Each repeat has its own cache entries, so its own requests.
				_ = r.safeRun(provider.WithRepeat(gctx, jb.repeat), jb.c, r.Models)
			}
			return gctx.Err()
		})
	}
	return g.Wait()
}
