package provider

import (
	"context"
	"errors"
	"sync"
)

// A provider's batch API (OpenAI's Batch API: upload a file of requests,
// create a batch, poll it, download the output file) answers large runs at
// a discount and does the distributed work on the provider's side. A run
// cannot know a chain's requests in advance (a step's prompt quotes the
// previous step's answer), so a batched run goes in rounds:
//
//  1. Collect: the pipeline runs over every case with a BatchCollector in
//     the context (WithBatchCollector). Cache hits answer as usual; a miss
//     returns ErrDeferred instead of calling, and if its model batches the
//     request is recorded. Nothing of the pass is kept.
//  2. Submit: the recorded requests go to the provider as one batch per
//     model; the results are kept in the collector.
//  3. Repeat until a pass defers nothing new: each round reaches one step
//     further down the chain.
//  4. The run proper then executes as usual with the collector consuming
//     (Consume): a request the batch answered returns that answer, marked
//     Batch (priced at batch rates, stored in the response cache in the
//     run's scope, like any answer); one the batch failed on returns the
//     failure, an errored case; anything else calls the model live.

// ErrDeferred is a model call postponed to a batch; only collect passes see
// it.
var ErrDeferred = errors.New("model call deferred to a batch")

// ErrBatchFailed marks a request the provider's batch did not answer (the
// batch failed, expired or was cancelled, or its output has no line for
// the request): no answer, an infrastructure failure.
var ErrBatchFailed = errors.New("the provider's batch did not answer this request")

// Batcher is a raw client that can send many requests through its
// provider's batch API.
type Batcher interface {
	// RunBatch sends reqs as one batch, waits for it while reporting
	// progress, and returns one result per request, in order. An error
	// means the batch as a whole gave nothing.
	RunBatch(ctx context.Context, reqs []Request, progress func(BatchProgress)) ([]BatchResult, error)
}

// BatchResult is the provider's answer to one request of a batch: a
// response, or the error the request got.
type BatchResult struct {
	Response Response
	Err      error
}

// BatchProgress is the state of a batch as the provider reports it.
type BatchProgress struct {
	ID        string `json:"id"`
	Status    string `json:"status"`
	Total     int    `json:"total"`
	Completed int    `json:"completed"`
	Failed    int    `json:"failed"`
}

// BatchCollector gathers the deferred requests of collect passes and holds
// the batch results until the run proper consumes them. Safe for
// concurrent use.
type BatchCollector struct {
	mu         sync.Mutex
	collecting bool
	queued     map[Batcher][]deferred
	seen       map[string]bool // keys recorded in any round
	results    map[string]BatchResult
}

type deferred struct {
	key string
	req Request
}

// NewBatchCollector returns a collector in collect mode.
func NewBatchCollector() *BatchCollector {
	return &BatchCollector{collecting: true, queued: map[Batcher][]deferred{}, seen: map[string]bool{},
		results: map[string]BatchResult{}}
}

type batchKey struct{}

// WithBatchCollector makes ctx's model calls go through col.
func WithBatchCollector(ctx context.Context, col *BatchCollector) context.Context {
	return context.WithValue(ctx, batchKey{}, col)
}

func collectorOf(ctx context.Context) *BatchCollector {
	col, _ := ctx.Value(batchKey{}).(*BatchCollector)
	return col
}

// Collecting reports whether ctx's calls are a collect pass, whose answers
// are neither stored nor counted.
func Collecting(ctx context.Context) bool {
	col := collectorOf(ctx)
	if col == nil {
		return false
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	return col.collecting
}

// Consume ends collecting: from now on the results answer their requests
// once each, and every other call goes to the model.
func (c *BatchCollector) Consume() {
	c.mu.Lock()
	c.collecting = false
	c.mu.Unlock()
}

// BatchGroup is the requests of one round that go to one batcher.
type BatchGroup struct {
	Batcher Batcher
	keys    []string
	Reqs    []Request
}

// Take returns the requests recorded since the last Take, one group per
// batcher.
func (c *BatchCollector) Take() []BatchGroup {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []BatchGroup
	for b, ds := range c.queued {
		g := BatchGroup{Batcher: b}
		for _, d := range ds {
			g.keys = append(g.keys, d.key)
			g.Reqs = append(g.Reqs, d.req)
		}
		out = append(out, g)
	}
	c.queued = map[Batcher][]deferred{}
	return out
}

// Fill records a group's results; err fails every request of the group.
func (c *BatchCollector) Fill(g BatchGroup, results []BatchResult, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, k := range g.keys {
		switch {
		case err != nil:
			c.results[k] = BatchResult{Err: err}
		case i < len(results):
			r := results[i]
			r.Response.Batch = r.Err == nil
			c.results[k] = r
		default:
			c.results[k] = BatchResult{Err: ErrBatchFailed}
		}
	}
}

// Results counts the results held, answered and failed.
func (c *BatchCollector) Results() (answered, failed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.results {
		if r.Err != nil {
			failed++
		} else {
			answered++
		}
	}
	return answered, failed
}

// WithBatch is the stack's batch layer, inside the cache: without a
// collector in ctx it is c. b is nil for a model that does not batch
// (its misses are still deferred in a collect pass, so that no live call
// is made and left uncharged there).
func WithBatch(c Client, b Batcher, ns CacheNamespace) Client {
	return ClientFunc(func(ctx context.Context, req Request) (Response, error) {
		col := collectorOf(ctx)
		if col == nil {
			return c.Complete(ctx, req)
		}
		k, err := cacheKey(ns, req, RepeatOf(ctx))
		if err != nil {
			return c.Complete(ctx, req) // the cache layer reports it
		}
		key := string(k)
		col.mu.Lock()
		r, ok := col.results[key]
		collecting := col.collecting
		if ok && !collecting {
			delete(col.results, key) // answered and charged once
		}
		if !ok && collecting && b != nil && !col.seen[key] {
			col.seen[key] = true
			col.queued[b] = append(col.queued[b], deferred{key: key, req: req})
		}
		col.mu.Unlock()
		switch {
		case ok:
			return r.Response, r.Err
		case collecting:
			return Response{}, ErrDeferred
		}
		return c.Complete(ctx, req)
	})
}
