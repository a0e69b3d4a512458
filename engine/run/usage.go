package run

import (
	"context"
	"slices"
	"sort"
	"sync"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/provider"
)

// Usage counts the model calls of a case or a run and what they cost.
// Cache hits are counted but cost nothing.
type Usage struct {
	Calls            int     `json:"calls"`
	CacheHits        int     `json:"cache_hits"`
	PromptTokens     int     `json:"prompt_tokens"`
	CompletionTokens int     `json:"completion_tokens"`
	USD              float64 `json:"usd"`
	// Unpriced lists models called without a price in tenant.toml; their
	// calls count as $0, which the summary says rather than hides.
	Unpriced []string `json:"unpriced,omitempty"`
}

// ModelUsage is the usage of one provider model.
type ModelUsage struct {
	Model string `json:"model"`
	Usage
}

// add folds o into u.
func (u *Usage) add(o Usage) {
	u.Calls += o.Calls
	u.CacheHits += o.CacheHits
	u.PromptTokens += o.PromptTokens
	u.CompletionTokens += o.CompletionTokens
	u.USD += o.USD
	for _, m := range o.Unpriced {
		if !slices.Contains(u.Unpriced, m) {
			u.Unpriced = append(u.Unpriced, m)
		}
	}
	sort.Strings(u.Unpriced)
}

// meteredModels hands the pipeline clients that record every call of one
// case, so that usage is part of the case's line in the run log and a
// resumed run's totals include the cases finished before the crash.
type meteredModels struct {
	base   chain.Models
	prices map[string]provider.Price

	mu      sync.Mutex
	byModel map[string]*Usage
	// cause is the infrastructure failure of the case's latest failed
	// model call, "" when none failed that way.
	cause string
}

func newMeteredModels(base chain.Models, prices map[string]provider.Price) *meteredModels {
	return &meteredModels{base: base, prices: prices, byModel: map[string]*Usage{}}
}

func (m *meteredModels) Client(name string) (provider.Client, string, error) {
	c, model, err := m.base.Client(name)
	if err != nil {
		return nil, "", err
	}
	return provider.ClientFunc(func(ctx context.Context, req provider.Request) (provider.Response, error) {
		resp, err := c.Complete(ctx, req)
		if err == nil {
			m.record(req.Model, resp)
			return resp, nil
		}
		m.billFailed(req.Model, provider.BilledUsage(err))
		if cause, ok := causeOf(err); ok {
			m.mu.Lock()
			m.cause = cause
			m.mu.Unlock()
		}
		return resp, err
	}), model, nil
}

func (m *meteredModels) record(model string, resp provider.Response) {
	m.mu.Lock()
	defer m.mu.Unlock()
	u := m.usage(model)
	u.Calls++
	u.PromptTokens += resp.Usage.PromptTokens
	u.CompletionTokens += resp.Usage.CompletionTokens
	if resp.CacheHit {
		u.CacheHits++
		return
	}
	m.charge(u, model, resp.Usage, resp.Batch)
	if resp.Retried != (provider.Usage{}) {
		m.billed(u, model, resp.Retried)
	}
}

// billFailed charges what a failed call was billed (answers that said
// nothing): no call is counted, but its tokens and cost are the case's.
func (m *meteredModels) billFailed(model string, billed provider.Usage) {
	if billed == (provider.Usage{}) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.billed(m.usage(model), model, billed)
}

// billed adds attempts that were billed and did not answer to u, tokens
// and cost. Called with m.mu held.
func (m *meteredModels) billed(u *Usage, model string, tokens provider.Usage) {
	u.PromptTokens += tokens.PromptTokens
	u.CompletionTokens += tokens.CompletionTokens
	m.charge(u, model, tokens, false)
}

// usage is model's entry. Called with m.mu held.
func (m *meteredModels) usage(model string) *Usage {
	u := m.byModel[model]
	if u == nil {
		u = &Usage{}
		m.byModel[model] = u
	}
	return u
}

// charge adds the cost of tokens to u. Called with m.mu held.
func (m *meteredModels) charge(u *Usage, model string, tokens provider.Usage, batch bool) {
	price, ok := m.prices[model]
	if !ok {
		if !slices.Contains(u.Unpriced, model) {
			u.Unpriced = append(u.Unpriced, model)
		}
		return
	}
	u.USD += price.Cost(tokens.PromptTokens, tokens.CompletionTokens, batch)
}

// infraCause is the infrastructure failure a model call of the case hit.
func (m *meteredModels) infraCause() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cause
}

// snapshot returns the per-model usage, sorted by model name.
func (m *meteredModels) snapshot() []ModelUsage {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]ModelUsage, 0, len(m.byModel))
	for model, u := range m.byModel {
		out = append(out, ModelUsage{Model: model, Usage: *u})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Model < out[j].Model })
	return out
}
