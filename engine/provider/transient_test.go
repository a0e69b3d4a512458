package provider

import (
	"fmt"
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
