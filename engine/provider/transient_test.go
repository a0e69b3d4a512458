package provider

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/provider/fakellm"
)

// TestTransientFaultsRetried: each transient fault of the test double is
// retried through the full Stack. Once, and the call recovers with the real
// answer, which is cached; every time, and the call errors (never an empty
// success) and nothing is cached.
func TestTransientFaultsRetried(t *testing.T) {
	faults := []struct {
		name  string
		fault fakellm.Fault
		is    error
		says  string
	}{
		{"body cut mid-stream", fakellm.CutBody(), ErrMalformedResponse, "cut mid-stream"},
		{"200 that is not JSON", fakellm.Malformed(), ErrMalformedResponse, "malformed response"},
		{"200 JSON without choices", fakellm.NoChoices(), ErrMalformedResponse, "has no choices"},
		{"empty completion, finish stop", fakellm.Empty(), ErrEmptyCompletion, "empty completion (finish_reason stop)"},
	}
	const maxRetries = 2
	for _, f := range faults {
		for _, persists := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/persists=%v", f.name, persists), func(t *testing.T) {
				n := 1
				if persists {
					n = 100
				}
				fake := fakellm.New(fakellm.FailFirst(n, f.fault))
				defer fake.Close()
				cache := openTestCache(t)
				c := stackFor(t, fake, func(s *Spec, o *StackOptions) {
					s.MaxRetries = maxRetries
					o.Cache = cache
				})
				resp, err := c.Complete(trainCtx, userReq("hi"))
				if !persists {
					require.NoError(t, err)
					require.Equal(t, "echo: hi", resp.Content)
					require.Equal(t, 2, fake.Count(), "one fault, one retry")
					again, err := c.Complete(trainCtx, userReq("hi"))
					require.NoError(t, err)
					require.True(t, again.CacheHit, "the recovered answer is cached")
					require.Equal(t, 2, fake.Count())
					return
				}
				require.ErrorIs(t, err, f.is)
				require.ErrorContains(t, err, f.says)
				require.ErrorContains(t, err, fmt.Sprintf("gave up after %d attempts", maxRetries+1))
				require.Equal(t, Response{}, resp, "no answer comes with the error")
				require.Equal(t, maxRetries+1, fake.Count())
				require.Zero(t, cache.Len(), "nothing is cached")
				_, err = c.Complete(trainCtx, userReq("hi"))
				require.Error(t, err)
				require.Equal(t, 2*(maxRetries+1), fake.Count(), "the next call asks again")
			})
		}
	}
}

// TestAnswerCheckWithoutRetries: with max_retries 0 an empty completion is
// still an error, never an empty success.
func TestAnswerCheckWithoutRetries(t *testing.T) {
	fake := fakellm.New(fakellm.FailFirst(1, fakellm.Empty()))
	defer fake.Close()
	c := stackFor(t, fake, func(s *Spec, _ *StackOptions) { s.MaxRetries = 0 })
	_, err := c.Complete(trainCtx, userReq("hi"))
	require.ErrorIs(t, err, ErrEmptyCompletion)
	require.Equal(t, 1, fake.Count())
}

// TestEmptyCompletionsAreBilled: an answer that said nothing is retried
// and never taken for the model's answer, but the server charged for it:
// its tokens are the call's cost (Retried, the ledger), whether the call
// then answered or gave up, and a cached answer is one call's cost.
func TestEmptyCompletionsAreBilled(t *testing.T) {
	var n atomic.Int64
	emptyFirst := func(empties int64) Client {
		n.Store(0)
		return ClientFunc(func(context.Context, Request) (Response, error) {
			if n.Add(1) <= empties {
				return Response{FinishReason: "stop", Usage: Usage{PromptTokens: 100}}, nil
			}
			return Response{Content: "ok", FinishReason: "stop", Usage: Usage{PromptTokens: 100, CompletionTokens: 5}}, nil
		})
	}
	prices := map[string]Price{"m": {InputPerMTok: 1_000_000, OutputPerMTok: 1_000_000}} // $1 a token
	policy := fastRetry
	policy.MaxRetries = 2

	ledger := NewLedger(prices)
	c := WithUsage(WithRetry(WithAnswerCheck(emptyFirst(1)), policy), ledger, "m")
	resp, err := c.Complete(trainCtx, userReq("q"))
	require.NoError(t, err)
	require.Equal(t, Usage{PromptTokens: 100, CompletionTokens: 5}, resp.Usage, "the answer's own tokens")
	require.Equal(t, Usage{PromptTokens: 100}, resp.Retried, "the empty attempt's")
	require.InDelta(t, 205.0, ledger.Snapshot().Models[0].USD, 1e-9)

	ledger = NewLedger(prices)
	c = WithUsage(WithRetry(WithAnswerCheck(emptyFirst(3)), policy), ledger, "m")
	_, err = c.Complete(trainCtx, userReq("q"))
	require.ErrorIs(t, err, ErrEmptyCompletion)
	require.Equal(t, Usage{PromptTokens: 300}, BilledUsage(err), "three attempts, none answered")
	m := ledger.Snapshot().Models[0]
	require.Equal(t, 1, m.Errors)
	require.InDelta(t, 300.0, m.USD, 1e-9)

	cache := openTestCache(t)
	c = WithCache(WithRetry(WithAnswerCheck(emptyFirst(1)), policy), cache, CacheNamespace{}, false)
	_, err = c.Complete(trainCtx, userReq("cached"))
	require.NoError(t, err)
	resp, err = c.Complete(trainCtx, userReq("cached"))
	require.NoError(t, err)
	require.True(t, resp.CacheHit)
	require.Zero(t, resp.Retried, "a hit stands in for one call, not for its retries")
}
