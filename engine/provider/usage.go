package provider

import (
	"context"
	"slices"
	"strings"
	"sync"
)

// Ledger counts calls, cache hits and tokens per model and prices them. It
// is safe for concurrent use; one ledger usually spans a run.
type Ledger struct {
	prices map[string]Price
	mu     sync.Mutex
	models map[string]*ModelUsage
}

// ModelUsage is one model's line of a UsageReport. Tokens count only calls
// that reached the provider; cache hits are counted apart and cost nothing.
type ModelUsage struct {
	Model            string  `json:"model" jsonschema:"model name"`
	Calls            int     `json:"calls" jsonschema:"calls"` // answered by the provider
	CacheHits        int     `json:"cache_hits" jsonschema:"calls answered from the response cache"`
	Errors           int     `json:"errors" jsonschema:"calls that failed"`
	PromptTokens     int     `json:"prompt_tokens" jsonschema:"prompt tokens"`
	CompletionTokens int     `json:"completion_tokens" jsonschema:"completion tokens"`
	USD              float64 `json:"usd" jsonschema:"dollars, from tenant.toml prices"`
	// Unpriced is true when the price table has no entry for the model, so
	// its USD is 0 rather than its real cost.
	Unpriced bool `json:"unpriced,omitempty" jsonschema:"no price is configured for the model: usd leaves it out"`
	// batchPrompt and batchCompletion are the part of the tokens answered
	// through the batch API, priced at batch rates.
	batchPrompt, batchCompletion int
}

// UsageReport is a snapshot of a Ledger.
type UsageReport struct {
	Models           []ModelUsage `json:"models" jsonschema:"per model"` // sorted by model
	Calls            int          `json:"calls" jsonschema:"calls"`
	CacheHits        int          `json:"cache_hits" jsonschema:"calls answered from the response cache"`
	Errors           int          `json:"errors" jsonschema:"calls that failed"`
	PromptTokens     int          `json:"prompt_tokens" jsonschema:"prompt tokens"`
	CompletionTokens int          `json:"completion_tokens" jsonschema:"completion tokens"`
	USD              float64      `json:"usd" jsonschema:"dollars"`
	// Unpriced lists the models whose cost is missing from USD.
	Unpriced []string `json:"unpriced,omitempty" jsonschema:"models without a price"`
}

// NewLedger prices models from a table keyed by model name (tenant.toml
// [prices]); nil is an empty table.
func NewLedger(prices map[string]Price) *Ledger {
	return &Ledger{prices: prices, models: map[string]*ModelUsage{}}
}

// Record adds one call's outcome.
func (l *Ledger) Record(model string, resp Response, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.models[model]
	if m == nil {
		m = &ModelUsage{Model: model}
		l.models[model] = m
	}
	// Billed attempts that did not answer cost what they cost, whether
	// the call then answered or failed.
	billed := resp.Retried
	if err != nil {
		billed = BilledUsage(err)
	}
	m.PromptTokens += billed.PromptTokens
	m.CompletionTokens += billed.CompletionTokens
	switch {
	case err != nil:
		m.Errors++
	case resp.CacheHit:
		m.CacheHits++
	default:
		m.Calls++
		m.PromptTokens += resp.Usage.PromptTokens
		m.CompletionTokens += resp.Usage.CompletionTokens
		if resp.Batch {
			m.batchPrompt += resp.Usage.PromptTokens
			m.batchCompletion += resp.Usage.CompletionTokens
		}
	}
}

// Snapshot prices the calls so far.
func (l *Ledger) Snapshot() UsageReport {
	l.mu.Lock()
	defer l.mu.Unlock()
	var r UsageReport
	for _, m := range l.models {
		mu := *m
		if p, ok := l.prices[mu.Model]; ok {
			mu.USD = p.Cost(mu.PromptTokens-mu.batchPrompt, mu.CompletionTokens-mu.batchCompletion, false) +
				p.Cost(mu.batchPrompt, mu.batchCompletion, true)
		} else if mu.Calls > 0 {
			mu.Unpriced = true
			r.Unpriced = append(r.Unpriced, mu.Model)
		}
		r.Models = append(r.Models, mu)
		r.Calls += mu.Calls
		r.CacheHits += mu.CacheHits
		r.Errors += mu.Errors
		r.PromptTokens += mu.PromptTokens
		r.CompletionTokens += mu.CompletionTokens
		r.USD += mu.USD
	}
	slices.SortFunc(r.Models, func(a, b ModelUsage) int { return strings.Compare(a.Model, b.Model) })
	slices.Sort(r.Unpriced)
	return r
}

// WithUsage records every call of c in ledger under modelLabel (the key of
// the price table). The calls of a batch collect pass are not calls: the
// run proper that follows records them once.
func WithUsage(c Client, ledger *Ledger, modelLabel string) Client {
	return ClientFunc(func(ctx context.Context, req Request) (Response, error) {
		resp, err := c.Complete(ctx, req)
		if Collecting(ctx) {
			return resp, err
		}
		ledger.Record(modelLabel, resp, err)
		return resp, err
	})
}
