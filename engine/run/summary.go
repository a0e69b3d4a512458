package run

import (
	"math"
	"slices"
	"sort"
	"time"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/scoring"
)

// Summary is a run's summary.json: the aggregate the optimizer decides on,
// and the per-step figures that show where time and money go.
type Summary struct {
	RunID    string    `json:"run_id"`
	Tenant   string    `json:"tenant"`
	Variant  string    `json:"variant"`
	Split    string    `json:"split"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Resumed  bool      `json:"resumed,omitempty"`
	// Chain is the hash of the variant's files the run executed; a run
	// resumes only with the same chain.
	Chain string `json:"chain,omitempty"`

	// Cases counts every case the run holds: Scored ones and Errored ones.
	Cases  int `json:"cases"`
	Scored int `json:"scored"`
	// Failed counts scored cases below full marks, those the variant
	// broke (ExecErrors, ScoreErrors: scored 0) included.
	Failed      int `json:"failed"`
	ExecErrors  int `json:"exec_errors"`
	ScoreErrors int `json:"score_errors"`
	// Errored counts cases without an answer because of the infrastructure
	// (after retries), by cause in ErrorCauses, commonest first. They are
	// in no mean; a held-out run with any is not a result.
	Errored     int          `json:"errored"`
	ErrorCauses []CauseCount `json:"error_causes,omitempty"`
	// ScoreMean is the mean composite score over the scored cases; failed
	// cases count as 0, errored cases not at all.
	ScoreMean      float64            `json:"score_mean"`
	BreakdownMeans map[string]float64 `json:"breakdown_means,omitempty"`
	Steps          []StepStats        `json:"steps"`
	Usage          Usage              `json:"usage"`
	UsageByModel   []ModelUsage       `json:"usage_by_model,omitempty"`
	Labels         map[string]string  `json:"labels,omitempty"`
	// Repeats is how many times each case was evaluated when more than
	// once; Cases, Scored and the rest then count evaluations.
	Repeats int `json:"repeats,omitempty"`
	// PerCase is what one evaluation of a case costs and takes, over the
	// evaluations that got an answer: what a production run pays.
	PerCase *PerCase `json:"per_case,omitempty"`
}

// PerCase is the cost and latency of one evaluation of a case. USD prices
// every call at the tenant's prices, cache hits included: a variant whose
// unchanged steps were answered from the cache is not cheaper for it.
// Latency is the case's wall-clock time through its steps with the time
// cache hits saved added back, for the same reason: a hit takes no time,
// but the production run it stands for waits for the call.
type PerCase struct {
	USD          float64 `json:"usd"`
	Tokens       float64 `json:"tokens"`
	LatencyP50MS float64 `json:"latency_p50_ms"`
	LatencyP95MS float64 `json:"latency_p95_ms"`
	// Unpriced lists models without a price: their calls count as $0.
	Unpriced []string `json:"unpriced,omitempty"`
}

// StepStats aggregates one step over a run.
type StepStats struct {
	StepID           string  `json:"step_id" jsonschema:"the step"`
	Kind             string  `json:"kind" jsonschema:"its kind"`
	Runs             int     `json:"runs" jsonschema:"cases it ran on"`
	Errors           int     `json:"errors" jsonschema:"cases where it errored"`
	Skipped          int     `json:"skipped" jsonschema:"cases a branch skipped it"`
	Calls            int     `json:"calls" jsonschema:"model calls"`
	CacheHits        int     `json:"cache_hits" jsonschema:"model calls answered from the response cache"`
	PromptTokens     int     `json:"prompt_tokens" jsonschema:"prompt tokens"`
	CompletionTokens int     `json:"completion_tokens" jsonschema:"completion tokens"`
	LatencyP50MS     float64 `json:"latency_p50_ms" jsonschema:"median latency of the step"`
	LatencyP95MS     float64 `json:"latency_p95_ms" jsonschema:"95th percentile latency of the step"`
}

// summarizer accumulates a run's summary one case at a time, as the cases
// complete (and, on resume, as the cases completed before are read back),
// so that finishing a run never reads its case log again.
type summarizer struct {
	prices      map[string]provider.Price
	sum         Summary
	total       float64
	breakdown   map[string]float64
	breakdownN  map[string]int
	steps       map[string]*StepStats
	order       []string
	latencies   map[string][]float64
	byModel     map[string]*Usage
	causes      map[string]int
	caseLatency []float64
	per         PerCase
}

func newSummarizer(prices map[string]provider.Price) *summarizer {
	return &summarizer{prices: prices, breakdown: map[string]float64{}, breakdownN: map[string]int{},
		steps: map[string]*StepStats{}, latencies: map[string][]float64{}, byModel: map[string]*Usage{},
		causes: map[string]int{}}
}

// add folds one case, as its run log holds it, into the summary.
func (a *summarizer) add(cr *CaseResult) {
	sum := &a.sum
	sum.Cases++
	switch {
	case cr.Errored():
		sum.Errored++
		a.causes[cr.Cause]++
	default:
		sum.Scored++
		a.total += cr.Score
		if cr.Score < scoring.MaxScore {
			sum.Failed++
		}
		if cr.ExecError != "" {
			sum.ExecErrors++
		} else if cr.ScoreError != "" {
			sum.ScoreErrors++
		}
	}
	for k, v := range cr.Breakdown {
		a.breakdown[k] += v
		a.breakdownN[k]++
	}
	for _, st := range cr.Trace.Steps {
		ss := a.steps[st.StepID]
		if ss == nil {
			ss = &StepStats{StepID: st.StepID, Kind: st.Kind}
			a.steps[st.StepID] = ss
			a.order = append(a.order, st.StepID)
		}
		if st.Skipped {
			ss.Skipped++
			continue
		}
		ss.Runs++
		if st.Error != "" {
			ss.Errors++
		}
		ss.Calls += st.Calls
		ss.CacheHits += st.CacheHits
		ss.PromptTokens += st.PromptTokens
		ss.CompletionTokens += st.CompletionTokens
		a.latencies[st.StepID] = append(a.latencies[st.StepID], st.LatencyMS)
	}
	if !cr.Errored() {
		a.per.add(cr, a.prices)
		a.caseLatency = append(a.caseLatency, caseLatencyMS(&cr.Trace))
	}
	for _, mu := range cr.Usage {
		u := a.byModel[mu.Model]
		if u == nil {
			u = &Usage{}
			a.byModel[mu.Model] = u
		}
		u.add(mu.Usage)
		sum.Usage.add(mu.Usage)
	}
}

// summary is the summary of the cases added so far, for run id.
func (a *summarizer) summary(id string) *Summary {
	sum := a.sum
	sum.RunID = id
	if sum.Scored > 0 {
		sum.ScoreMean = a.total / float64(sum.Scored)
	}
	if n := len(a.caseLatency); n > 0 {
		per := a.per
		per.Unpriced = append([]string(nil), a.per.Unpriced...)
		per.USD /= float64(n)
		per.Tokens /= float64(n)
		per.LatencyP50MS = percentile(a.caseLatency, 0.50)
		per.LatencyP95MS = percentile(a.caseLatency, 0.95)
		sum.PerCase = &per
	}
	if len(a.causes) > 0 {
		sum.ErrorCauses = sortCauses(a.causes)
	}
	if len(a.breakdown) > 0 {
		sum.BreakdownMeans = map[string]float64{}
		for k, v := range a.breakdown {
			sum.BreakdownMeans[k] = v / float64(a.breakdownN[k])
		}
	}
	for _, id := range a.order {
		ss := *a.steps[id]
		ss.LatencyP50MS = percentile(a.latencies[id], 0.50)
		ss.LatencyP95MS = percentile(a.latencies[id], 0.95)
		sum.Steps = append(sum.Steps, ss)
	}
	for model, u := range a.byModel {
		sum.UsageByModel = append(sum.UsageByModel, ModelUsage{Model: model, Usage: *u})
	}
	sort.Slice(sum.UsageByModel, func(i, j int) bool { return sum.UsageByModel[i].Model < sum.UsageByModel[j].Model })
	return &sum
}

// summarize computes a run's summary from its case log: what the runner
// accumulates as it goes, recomputed from what the log holds (a test
// checks the two agree).
func summarize(s *Store, id string, prices map[string]provider.Price) (*Summary, error) {
	a := newSummarizer(prices)
	if err := s.Cases(id, func(cr CaseResult) error {
		a.add(&cr)
		return nil
	}); err != nil {
		return nil, err
	}
	return a.summary(id), nil
}

// percentile returns the nearest-rank percentile of xs (sorted in place).
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	sort.Float64s(xs)
	rank := int(math.Ceil(p*float64(len(xs)))) - 1
	return xs[max(0, min(rank, len(xs)-1))]
}

// add folds one evaluation's list-price cost and tokens into p.
func (p *PerCase) add(cr *CaseResult, prices map[string]provider.Price) {
	for _, mu := range cr.Usage {
		p.Tokens += float64(mu.PromptTokens + mu.CompletionTokens)
		price, ok := prices[mu.Model]
		if !ok {
			if !slices.Contains(p.Unpriced, mu.Model) {
				p.Unpriced = append(p.Unpriced, mu.Model)
				sort.Strings(p.Unpriced)
			}
			continue
		}
		p.USD += float64(mu.PromptTokens)*price.InputPerMTok/1e6 + float64(mu.CompletionTokens)*price.OutputPerMTok/1e6
	}
}

// caseLatencyMS is a case's time through its steps, which run one after
// another, as it would be without the cache.
func caseLatencyMS(tr *chain.Trace) float64 {
	var ms float64
	for _, st := range tr.Steps {
		ms += st.LatencyMS + st.CacheSavedMS
	}
	return ms
}
