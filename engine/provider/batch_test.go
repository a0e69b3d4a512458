package provider

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/provider/fakellm"
)

func batchClient(t *testing.T, fake *fakellm.Server) Batcher {
	return batchClientAt(t, fake.URL())
}

func batchClientAt(t *testing.T, url string) Batcher {
	c, err := New(Spec{Provider: ProviderOpenAICompatible, Name: "m", BaseURL: url, Batch: true},
		Options{BatchPoll: time.Millisecond})
	require.NoError(t, err)
	b, ok := c.(Batcher)
	require.True(t, ok, "the OpenAI client batches")
	return b
}

// TestRunBatchAgainstTheDouble: requests go up as one file, the batch is
// polled to completion with growing counts, and each request gets its own
// line back: an answer, the HTTP status of a refused line (an APIError,
// as a live call would give), or ErrBatchFailed for a line the batch did
// not answer.
func TestRunBatchAgainstTheDouble(t *testing.T) {
	fake := fakellm.New(fakellm.WithBatchPolls(3),
		fakellm.WithRule(fakellm.LastUserContains("q3"), fakellm.Reply{Fault: fakellm.ServerError()}),
		fakellm.WithRule(fakellm.LastUserContains("q4"), fakellm.Reply{Fault: fakellm.Hang()}))
	defer fake.Close()
	var reqs []Request
	for i := range 6 {
		reqs = append(reqs, userReq(fmt.Sprintf("q%d", i)))
	}
	var seen []BatchProgress
	results, err := batchClient(t, fake).RunBatch(context.Background(), reqs, func(p BatchProgress) { seen = append(seen, p) })
	require.NoError(t, err)
	require.Len(t, results, 6)
	for i, r := range results {
		switch i {
		case 3:
			var api *APIError
			require.ErrorAs(t, r.Err, &api)
			require.Equal(t, 500, api.Status)
		case 4:
			require.ErrorIs(t, r.Err, ErrBatchFailed)
		default:
			require.NoError(t, r.Err)
			require.Equal(t, fmt.Sprintf("echo: q%d", i), r.Response.Content)
			require.Equal(t, "stop", r.Response.FinishReason)
			require.Positive(t, r.Response.Usage.PromptTokens)
		}
	}
	require.Zero(t, fake.Count(), "no live call")
	require.Equal(t, 6, fake.BatchLines())
	require.Equal(t, "validating", seen[0].Status)
	last := seen[len(seen)-1]
	require.Equal(t, BatchProgress{ID: last.ID, Status: "completed", Total: 6, Completed: 4, Failed: 2}, last)
	require.Greater(t, len(seen), 3, "polled while in progress")
}

// TestRunBatchCancelled: a run stopped while its batch is pending cancels
// the batch, so the provider stops working (and billing) for nobody.
func TestRunBatchCancelled(t *testing.T) {
	fake := fakellm.New(fakellm.WithBatchPolls(1_000_000))
	defer fake.Close()
	ctx, cancel := context.WithCancel(context.Background())
	var id string
	_, err := batchClient(t, fake).RunBatch(ctx, []Request{userReq("a"), userReq("b")}, func(p BatchProgress) {
		id = p.ID
		if p.Status == "in_progress" {
			cancel()
		}
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, "cancelled", fake.BatchStatus(id))
}

// TestRunBatchRefused: a server without the batch API (here: a path the
// double does not serve) refuses the upload; the batch fails as a whole
// with the HTTP status, nothing per request.
func TestRunBatchRefused(t *testing.T) {
	fake := fakellm.New()
	defer fake.Close()
	_, err := batchClientAt(t, fake.BaseURL()+"/no-batch-api").RunBatch(context.Background(), []Request{userReq("a")}, nil)
	var api *APIError
	require.True(t, errors.As(err, &api), "%v", err)
	require.Equal(t, 404, api.Status)
}
