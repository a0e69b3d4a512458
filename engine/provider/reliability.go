package provider

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"golang.org/x/time/rate"
)

// WithTimeout bounds each call to d; d <= 0 returns c unchanged. A call that
// runs out of time fails with an error matching both ErrTimeout and
// context.DeadlineExceeded, which WithRetry retries; a caller's own
// cancellation or deadline passes through untouched.
func WithTimeout(c Client, d time.Duration) Client {
	if d <= 0 {
		return c
	}
	return ClientFunc(func(ctx context.Context, req Request) (Response, error) {
		callCtx, cancel := context.WithTimeoutCause(ctx, d, ErrTimeout)
		defer cancel()
		resp, err := c.Complete(callCtx, req)
		if err != nil && ctx.Err() == nil && errors.Is(context.Cause(callCtx), ErrTimeout) {
			return resp, fmt.Errorf("%s: no response within %s: raise timeout_seconds in the model block or check that the server is up: %w (%w)",
				req.Model, d, ErrTimeout, context.DeadlineExceeded)
		}
		return resp, err
	})
}

// WithAnswerCheck turns a 2xx answer that says nothing (no text, no tool
// calls, finish reason "stop") into ErrEmptyCompletion, so that WithRetry
// retries it and a caller never takes it for the model's answer. An empty
// answer cut by max_tokens (finish reason "length") passes: that is the
// step's parameters at work, and attribution reports it as truncation.
func WithAnswerCheck(c Client) Client {
	return ClientFunc(func(ctx context.Context, req Request) (Response, error) {
		resp, err := c.Complete(ctx, req)
		if err == nil && resp.FinishReason == "stop" && emptyAnswer(resp) {
			return Response{}, withBilled(fmt.Errorf("%s: the server answered with an empty completion (finish_reason stop): %w", req.Model, ErrEmptyCompletion),
				resp.Usage.Plus(resp.Retried))
		}
		return resp, err
	})
}

// RetryPolicy shapes WithRetry.
type RetryPolicy struct {
	// MaxRetries is the number of attempts after the first; 0 disables.
	MaxRetries int
	// BaseDelay and MaxDelay bound the exponential backoff; zero values mean
	// 500ms and 30s.
	BaseDelay time.Duration
	MaxDelay  time.Duration
	// MaxRetryAfter is the longest Retry-After honored; a server asking for
	// more fails the call instead of stalling the run. Zero means 2 minutes.
	MaxRetryAfter time.Duration
}

func (p RetryPolicy) withDefaults() RetryPolicy {
	if p.BaseDelay <= 0 {
		p.BaseDelay = 500 * time.Millisecond
	}
	if p.MaxDelay <= 0 {
		p.MaxDelay = 30 * time.Second
	}
	if p.MaxRetryAfter <= 0 {
		p.MaxRetryAfter = 2 * time.Minute
	}
	return p
}

// backoff is "full jitter": a uniform wait in [0, min(max, base·2^attempt)],
// which spreads the retries of many concurrent cases instead of having them
// hit a recovering server in waves.
func (p RetryPolicy) backoff(attempt int) time.Duration {
	ceil := p.MaxDelay
	if attempt < 30 {
		if d := p.BaseDelay << attempt; d > 0 && d < ceil {
			ceil = d
		}
	}
	return rand.N(ceil + 1) //nolint:gosec // G404: retry jitter, not a secret
}

// WithRetry retries 429, 5xx, per-call timeouts, transport errors, cut or
// malformed 2xx bodies and empty completions with exponential backoff and
// full jitter, waiting at least what a Retry-After header asks. Other 4xx
// and cache misses fail at once, and so does a cancelled ctx.
func WithRetry(c Client, p RetryPolicy) Client {
	if p.MaxRetries <= 0 {
		return c
	}
	p = p.withDefaults()
	return ClientFunc(func(ctx context.Context, req Request) (Response, error) {
		var billed Usage // by the attempts that failed
		for attempt := 0; ; attempt++ {
			resp, err := c.Complete(ctx, req)
			if err == nil {
				resp.Retried = resp.Retried.Plus(billed)
				return resp, nil
			}
			billed = billed.Plus(BilledUsage(err))
			if ctx.Err() != nil {
				return resp, withBilled(err, billed)
			}
			if !retryable(err) {
				return resp, withBilled(err, billed)
			}
			if attempt >= p.MaxRetries {
				return resp, withBilled(fmt.Errorf("%w (gave up after %d attempts: raise max_retries, or lower concurrency or requests_per_minute)", err, attempt+1), billed)
			}
			wait := p.backoff(attempt)
			if ra := retryAfter(err); ra > 0 {
				if ra > p.MaxRetryAfter {
					return resp, withBilled(fmt.Errorf("%w (the server asked to wait %s, more than the %s this run will: try again later)", err, ra.Round(time.Second), p.MaxRetryAfter), billed)
				}
				wait = max(wait, ra)
			}
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return resp, withBilled(fmt.Errorf("%w (while waiting to retry: %v)", context.Cause(ctx), err), billed)
			case <-t.C:
			}
		}
	})
}

// WithRateLimit throttles calls to requestsPerMinute and an estimate of
// tokensPerMinute (prompt characters / 4 + max_tokens, since the real count
// is known only afterwards); 0 leaves that dimension unlimited. Waiting
// honors ctx. Bursts are one request, and up to a minute's worth of tokens so
// that any single call fits.
func WithRateLimit(c Client, requestsPerMinute, tokensPerMinute int) Client {
	if requestsPerMinute <= 0 && tokensPerMinute <= 0 {
		return c
	}
	var reqs, toks *rate.Limiter
	if requestsPerMinute > 0 {
		reqs = rate.NewLimiter(rate.Limit(float64(requestsPerMinute)/60), 1)
	}
	if tokensPerMinute > 0 {
		toks = rate.NewLimiter(rate.Limit(float64(tokensPerMinute)/60), tokensPerMinute)
	}
	return ClientFunc(func(ctx context.Context, req Request) (Response, error) {
		if reqs != nil {
			if err := reqs.Wait(ctx); err != nil {
				return Response{}, limiterErr(ctx, req, "requests_per_minute", err)
			}
		}
		if toks != nil {
			n := min(EstimateTokens(req), toks.Burst())
			if err := toks.WaitN(ctx, n); err != nil {
				return Response{}, limiterErr(ctx, req, "tokens_per_minute", err)
			}
		}
		return c.Complete(ctx, req)
	})
}

func limiterErr(ctx context.Context, req Request, limit string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%s: waiting for %s: %w", req.Model, limit, context.Cause(ctx))
	}
	// rate.Wait fails early when the wait would outlast ctx's deadline.
	return fmt.Errorf("%s: %s would delay this call past its deadline: raise %s or the timeout: %w", req.Model, limit, limit, err)
}

// EstimateTokens is the rate limiter's guess at a call's tokens: prompt
// characters / 4 plus max_tokens.
func EstimateTokens(req Request) int {
	chars := 0
	for _, m := range req.Messages {
		chars += len(m.Content)
	}
	n := chars / 4
	if req.Params.MaxTokens != nil {
		n += *req.Params.MaxTokens
	}
	return max(n, 1)
}
