package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/provider/fakellm"
)

func openTestCache(t *testing.T) *Cache {
	t.Helper()
	c, err := OpenCache(filepath.Join(t.TempDir(), "cache", "responses.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// countingClient answers "answer to <last message>" and counts calls; it
// fails when the last message is "fail".
type countingClient struct{ n atomic.Int64 }

func (c *countingClient) Complete(_ context.Context, req Request) (Response, error) {
	c.n.Add(1)
	last := req.Messages[len(req.Messages)-1].Content
	if last == "fail" {
		return Response{}, &APIError{Provider: "openai", Model: req.Model, Status: 500}
	}
	return Response{Content: "answer to " + last, FinishReason: "stop", Usage: Usage{PromptTokens: 10, CompletionTokens: 5},
		Latency: 40 * time.Millisecond}, nil
}

func TestCacheHitMissOffline(t *testing.T) {
	cache := openTestCache(t)
	raw := &countingClient{}
	ns := CacheNamespace{Provider: "openai", BaseURL: "https://api.openai.com/v1"}
	online := WithCache(raw, cache, ns, false)
	ctx := context.Background()
	req := userReq("q1")
	req.Model = "gpt-4o-mini"

	first, err := online.Complete(ctx, req)
	require.NoError(t, err)
	require.False(t, first.CacheHit)

	second, err := online.Complete(ctx, req)
	require.NoError(t, err)
	require.True(t, second.CacheHit)
	require.Equal(t, first.Content, second.Content)
	require.Equal(t, first.Usage, second.Usage)
	require.Less(t, second.Latency, first.Latency, "a hit reports its own lookup time")
	require.EqualValues(t, 1, raw.n.Load())
	require.Equal(t, CacheStats{Hits: 1, Misses: 1}, cache.Stats())
	require.Equal(t, 1, cache.Len())

	offline := WithCache(raw, cache, ns, true)
	hit, err := offline.Complete(ctx, req)
	require.NoError(t, err)
	require.True(t, hit.CacheHit)

	other := req
	other.Sample = 1 // another sample of the same step is another entry
	_, err = offline.Complete(ctx, other)
	require.ErrorIs(t, err, ErrCacheMiss)
	require.ErrorContains(t, err, "offline: no cached response for this request; run once online or drop --offline")
	require.EqualValues(t, 1, raw.n.Load(), "offline never calls out")
}

func TestCacheNeverStoresErrors(t *testing.T) {
	cache := openTestCache(t)
	raw := &countingClient{}
	c := WithCache(raw, cache, CacheNamespace{Provider: "openai"}, false)
	for range 2 {
		_, err := c.Complete(context.Background(), userReq("fail"))
		require.Error(t, err)
	}
	require.EqualValues(t, 2, raw.n.Load())
	require.Zero(t, cache.Len())
}

func TestCachePersistsAcrossOpens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	cache, err := OpenCache(path)
	require.NoError(t, err)
	raw := &countingClient{}
	_, err = WithCache(raw, cache, CacheNamespace{}, false).Complete(context.Background(), userReq("q"))
	require.NoError(t, err)
	require.NoError(t, cache.Close())

	cache, err = OpenCache(path)
	require.NoError(t, err)
	defer cache.Close()
	resp, err := WithCache(raw, cache, CacheNamespace{}, true).Complete(context.Background(), userReq("q"))
	require.NoError(t, err)
	require.True(t, resp.CacheHit)
}

func TestCacheLockedByAnotherProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	held, err := OpenCache(path)
	require.NoError(t, err)
	defer held.Close()
	// flock is per open file, so a second open in this process stands in
	// for a second fapo process.
	_, err = openCache(path, 50*time.Millisecond)
	require.ErrorContains(t, err, "locked by another fapo process")
	require.ErrorContains(t, err, path)
}

func TestOpenCacheErrors(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "garbage.db")
	require.NoError(t, os.WriteFile(notDB, []byte("this is not a bbolt file, not at all, no pages here at all"), 0o644))
	_, err := OpenCache(notDB)
	require.ErrorContains(t, err, "delete it")

	blocker := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(blocker, nil, 0o644))
	_, err = OpenCache(filepath.Join(blocker, "sub", "c.db"))
	require.ErrorContains(t, err, "creating its directory")
}

func TestCacheKey(t *testing.T) {
	base := Request{Model: "m", Messages: []Message{{Role: "user", Content: "hi"}},
		JSONSchema: json.RawMessage(`{"type":"object","properties":{"a":{"type":"string"}}}`),
		Tools:      []ToolDef{{Name: "t", Parameters: json.RawMessage(`{"type": "object", "x": 1.50}`)}}}
	ns := CacheNamespace{Provider: "openai", BaseURL: "u"}
	key := func(ns CacheNamespace, r Request) string {
		k, err := cacheKey(ns, r)
		require.NoError(t, err)
		return string(k)
	}
	k0 := key(ns, base)

	same := base
	same.JSONSchema = json.RawMessage("{\n  \"properties\": {\"a\": {\"type\": \"string\"}},\n  \"type\": \"object\"\n}")
	same.Tools = []ToolDef{{Name: "t", Parameters: json.RawMessage(`{"x":1.50,"type":"object"}`)}}
	require.Equal(t, k0, key(ns, same), "formatting and key order of raw JSON do not split entries")

	differs := map[string]func(*CacheNamespace, *Request){
		"provider": func(n *CacheNamespace, _ *Request) { n.Provider = "sagemaker" },
		"base url": func(n *CacheNamespace, _ *Request) { n.BaseURL = "v" },
		"model":    func(_ *CacheNamespace, r *Request) { r.Model = "m2" },
		"message":  func(_ *CacheNamespace, r *Request) { r.Messages = []Message{{Role: "user", Content: "hi!"}} },
		"role":     func(_ *CacheNamespace, r *Request) { r.Messages = []Message{{Role: "system", Content: "hi"}} },
		"temp":     func(_ *CacheNamespace, r *Request) { r.Params.Temperature = ptr(0.0) },
		"schema":   func(_ *CacheNamespace, r *Request) { r.JSONSchema = json.RawMessage(`{"type":"array"}`) },
		"tools":    func(_ *CacheNamespace, r *Request) { r.Tools = nil },
		"sample":   func(_ *CacheNamespace, r *Request) { r.Sample = 2 },
	}
	for name, mutate := range differs {
		t.Run(name, func(t *testing.T) {
			n, r := ns, base
			mutate(&n, &r)
			require.NotEqual(t, k0, key(n, r))
		})
	}

	bad := base
	bad.JSONSchema = json.RawMessage(`{not json`)
	_, err := WithCache(&countingClient{}, openTestCache(t), ns, false).Complete(context.Background(), bad)
	require.ErrorContains(t, err, "cannot build the cache key")
	bad = base
	bad.Tools = []ToolDef{{Name: "t", Parameters: json.RawMessage(`[`)}}
	_, err = cacheKey(ns, bad)
	require.ErrorContains(t, err, "tool t parameters")
}

func TestCacheWriteErrorsDegradeToCalls(t *testing.T) {
	cache, err := OpenCache(filepath.Join(t.TempDir(), "c.db"))
	require.NoError(t, err)
	raw := &countingClient{}
	c := WithCache(raw, cache, CacheNamespace{}, false)
	require.NoError(t, cache.Close())
	resp, err := c.Complete(context.Background(), userReq("q"))
	require.NoError(t, err, "a broken cache costs a call, not the result")
	require.Equal(t, "answer to q", resp.Content)
	require.EqualValues(t, 1, cache.Stats().WriteErrors)
}

func TestLedger(t *testing.T) {
	l := NewLedger(map[string]Price{"gpt-4o-mini": {InputPerMTok: 0.15, OutputPerMTok: 0.60}})
	paid := Response{Usage: Usage{PromptTokens: 1_000_000, CompletionTokens: 500_000}}
	l.Record("gpt-4o-mini", paid, nil)
	l.Record("gpt-4o-mini", Response{Usage: Usage{PromptTokens: 1_000_000}, CacheHit: true}, nil)
	l.Record("gpt-4o-mini", Response{}, errors.New("boom"))
	l.Record("llama-local", Response{Usage: Usage{PromptTokens: 100, CompletionTokens: 10}}, nil)
	l.Record("judge", Response{CacheHit: true}, nil)

	r := l.Snapshot()
	require.Len(t, r.Models, 3)
	require.Equal(t, "gpt-4o-mini", r.Models[0].Model)
	g := r.Models[0]
	require.Equal(t, 1, g.Calls)
	require.Equal(t, 1, g.CacheHits)
	require.Equal(t, 1, g.Errors)
	require.Equal(t, 1_000_000, g.PromptTokens, "cache hits add no tokens")
	require.InDelta(t, 0.15+0.30, g.USD, 1e-9)
	require.False(t, g.Unpriced)

	require.Equal(t, "judge", r.Models[1].Model)
	require.False(t, r.Models[1].Unpriced, "a model answered only from cache cost nothing, priced or not")
	require.True(t, r.Models[2].Unpriced)
	require.Zero(t, r.Models[2].USD)
	require.Equal(t, []string{"llama-local"}, r.Unpriced)

	require.InDelta(t, 0.45, r.USD, 1e-9)
	require.Equal(t, 2, r.Calls)
	require.Equal(t, 2, r.CacheHits)
	require.Equal(t, 1, r.Errors)
	require.Equal(t, 1_000_100, r.PromptTokens)
	require.Equal(t, 500_010, r.CompletionTokens)
}

func TestLedgerConcurrent(t *testing.T) {
	l := NewLedger(nil)
	c := WithUsage(&countingClient{}, l, "m")
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 50 {
				_, _ = c.Complete(context.Background(), userReq("x"))
			}
		}()
	}
	for range 8 {
		<-done
	}
	r := l.Snapshot()
	require.Equal(t, 400, r.Calls)
	require.Equal(t, 400*10, r.PromptTokens)
}

func TestStackEndToEnd(t *testing.T) {
	fake := fakellm.New(fakellm.FailFirst(1, fakellm.RateLimited("0")))
	defer fake.Close()
	cache := openTestCache(t)
	c := stackFor(t, fake, func(s *Spec, o *StackOptions) {
		s.RequestsPerMinute, s.TokensPerMinute = 60_000, 6_000_000
		o.Cache = cache
		o.Prices = map[string]Price{"gpt-4o-mini": {InputPerMTok: 1, OutputPerMTok: 2}}
	})
	ledger := LedgerOf(c)
	require.NotNil(t, ledger)
	ctx := context.Background()

	r1, err := c.Complete(ctx, userReq("hello"))
	require.NoError(t, err)
	require.False(t, r1.CacheHit)
	r2, err := c.Complete(ctx, userReq("hello"))
	require.NoError(t, err)
	require.True(t, r2.CacheHit)
	require.Equal(t, r1.Content, r2.Content)
	require.Equal(t, 2, fake.Count(), "one 429, one answer, then the cache")
	require.Equal(t, "gpt-4o-mini", fake.Requests()[1].Chat.Model, "an empty Request.Model goes to spec.Name")

	rep := ledger.Snapshot()
	require.Equal(t, 1, rep.Calls)
	require.Equal(t, 1, rep.CacheHits)
	require.Positive(t, rep.USD)
	require.Nil(t, LedgerOf(ClientFunc(func(context.Context, Request) (Response, error) { return Response{}, nil })))
}

func TestStackOfflineWithoutKey(t *testing.T) {
	cache := openTestCache(t)
	spec := Spec{Provider: "openai", Name: "gpt-4o-mini"}
	_, err := Stack(spec, StackOptions{Options: Options{Getenv: env()}})
	require.ErrorContains(t, err, "OPENAI_API_KEY", "online, a missing key is an error up front")

	c, err := Stack(spec, StackOptions{Options: Options{Getenv: env()}, Cache: cache, Offline: true})
	require.NoError(t, err, "offline replay needs no key")
	_, err = c.Complete(context.Background(), userReq("q"))
	require.ErrorIs(t, err, ErrCacheMiss)
}

func TestCacheConcurrentWritesFlushOnClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	cache, err := OpenCache(path)
	require.NoError(t, err)
	raw := &countingClient{}
	c := WithCache(raw, cache, CacheNamespace{}, false)
	const workers, per = 16, 150 // 2,400 writes: more than the queue holds
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range per {
				_, err := c.Complete(context.Background(), userReq(fmt.Sprintf("q-%d-%d", w, i)))
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		require.NoError(t, <-errs)
	}
	require.Equal(t, workers*per, cache.Len())
	require.NoError(t, cache.Close())
	require.NoError(t, cache.Close(), "Close is idempotent")

	cache, err = OpenCache(path)
	require.NoError(t, err)
	defer cache.Close()
	require.Equal(t, workers*per, cache.Len(), "everything queued was written by Close")
	require.Zero(t, cache.Stats().WriteErrors)
}
