package provider

import (
	"context"
	"time"
)

// StackOptions are what Stack layers around a raw client.
type StackOptions struct {
	Options
	// Cache, when set, answers repeated requests in the scope (train or
	// held-out) each request's context carries (WithScope); Offline makes a
	// miss an error (ErrCacheMiss) instead of a call.
	Cache   *Cache
	Offline bool
	// Ledger, when set, records usage under the spec's model name. When it
	// is nil and Prices is set, Stack makes a ledger with those prices;
	// LedgerOf returns it.
	Ledger *Ledger
	Prices map[string]Price
	// Retry overrides the backoff timings; MaxRetries always comes from the
	// spec.
	Retry RetryPolicy
}

// Stack builds the client a run uses for one model block. From the inside
// out:
//
//	raw → timeout → answer check → retry → rate limit → batch → cache → usage
//
// The timeout bounds each attempt, so a hung attempt is retried rather than
// eating the whole budget. The answer check makes an empty completion an
// error the retries see, so no empty answer reaches the cache or a caller. The rate limiter sits outside the retries, which
// back off on their own, and inside the cache, so that cache hits neither
// wait nor spend the budget. The batch layer (WithBatch) sits inside the
// cache, so that only misses are batched and batch answers are stored like
// any other. Usage is outermost so that it sees every call,
// hit or miss, with its final outcome. Requests with an empty Model go to
// spec.Name. In offline mode without a raw client (no API key at hand), the
// cache alone answers.
func Stack(spec Spec, opts StackOptions) (Client, error) {
	// Resolved here too, not only in New: the cache namespace, the default
	// model and the ledger must name the server and model actually called.
	spec = spec.FromEnv(opts.getenv())
	raw, err := New(spec, opts.Options)
	if err != nil {
		if !(opts.Offline && opts.Cache != nil) {
			return nil, err
		}
		// Offline never calls out, so a missing key must not stop a replay.
		raw = ClientFunc(func(context.Context, Request) (Response, error) { return Response{}, err })
	}
	c := WithTimeout(raw, time.Duration(spec.TimeoutSeconds*float64(time.Second)))
	c = WithAnswerCheck(c)
	p := opts.Retry
	p.MaxRetries = spec.MaxRetries
	c = WithRetry(c, p)
	c = WithRateLimit(c, spec.RequestsPerMinute, spec.TokensPerMinute)
	var batcher Batcher
	if b, ok := raw.(Batcher); ok && spec.Batch {
		batcher = b
	}
	ns := CacheNamespace{Provider: spec.Provider, BaseURL: cacheBaseURL(spec)}
	c = WithBatch(c, batcher, ns)
	if opts.Cache != nil {
		c = WithCache(c, opts.Cache, ns, opts.Offline)
	}
	ledger := opts.Ledger
	if ledger == nil && opts.Prices != nil {
		ledger = NewLedger(opts.Prices)
	}
	if ledger != nil {
		c = WithUsage(c, ledger, spec.Name)
	}
	return &stacked{inner: c, model: spec.Name, ledger: ledger}, nil
}

type stacked struct {
	inner  Client
	model  string
	ledger *Ledger
}

func (s *stacked) Complete(ctx context.Context, req Request) (Response, error) {
	if req.Model == "" {
		req.Model = s.model
	}
	return s.inner.Complete(ctx, req)
}

// LedgerOf is the ledger a Stack client records into, or nil (for clients
// not built by Stack, or built without a ledger).
func LedgerOf(c Client) *Ledger {
	if s, ok := c.(*stacked); ok {
		return s.ledger
	}
	return nil
}

// cacheBaseURL tells apart servers that could answer the same model name
// differently: the base URL for OpenAI-style servers, the region and
// endpoint for SageMaker.
func cacheBaseURL(spec Spec) string {
	if spec.Provider == ProviderSageMaker {
		return "sagemaker://" + spec.Region + "/" + spec.Endpoint
	}
	return spec.BaseURL
}
