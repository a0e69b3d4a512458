package loop

import (
	"fmt"
	"maps"
	"slices"

	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/scoring"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/tenant"
	"github.com/fapo-dev/fapo/engine/variant"
)

// ModelComparison is what a compare reports of one task model: the two
// variants' validation aggregates, never a case.
type ModelComparison struct {
	// Model is the [models.NAME] block, "" for [model].
	Model string `json:"model,omitempty" jsonschema:"the task model ([models.NAME]; empty for [model])"`
	// CandidateScore and IncumbentScore are the validation means (0 when
	// a reusable holdout withholds them).
	CandidateScore float64      `json:"candidate_score" jsonschema:"candidate's validation mean on this model (0 when a reusable holdout withholds it)"`
	IncumbentScore float64      `json:"incumbent_score" jsonschema:"incumbent's validation mean on this model"`
	Candidate      VariantCosts `json:"candidate" jsonschema:"candidate's per-case dollars, tokens and latency"`
	Incumbent      VariantCosts `json:"incumbent" jsonschema:"incumbent's per-case dollars, tokens and latency"`
	// CostRatio and LatencyRatio are the candidate's $ per case and median
	// latency per case over the incumbent's; 0 when the incumbent's is 0.
	CostRatio    float64 `json:"cost_ratio" jsonschema:"candidate's dollars per case over the incumbent's (0 when the incumbent's is 0)"`
	LatencyRatio float64 `json:"latency_ratio" jsonschema:"candidate's median latency per case over the incumbent's"`
	// PassK is k when the tenant asks for pass^k; CandidatePassK and
	// IncumbentPassK are the estimates.
	PassK          int     `json:"pass_k,omitempty" jsonschema:"k, when the tenant asks for pass^k"`
	CandidatePassK float64 `json:"candidate_pass_k,omitempty" jsonschema:"candidate's pass^k estimate"`
	IncumbentPassK float64 `json:"incumbent_pass_k,omitempty" jsonschema:"incumbent's pass^k estimate"`
}

// VariantCosts are a variant's per-case figures on validation: dollars at
// the tenant's prices (cache hits priced like calls), tokens, and the
// case's latency.
type VariantCosts struct {
	USDPerCase    float64  `json:"usd_per_case" jsonschema:"dollars per case at the tenant's prices (cache hits priced like calls)"`
	TokensPerCase float64  `json:"tokens_per_case" jsonschema:"tokens per case"`
	LatencyP50MS  float64  `json:"latency_p50_ms" jsonschema:"median latency per case"`
	LatencyP95MS  float64  `json:"latency_p95_ms" jsonschema:"95th percentile latency per case"`
	Unpriced      []string `json:"unpriced_models,omitempty" jsonschema:"models without a price: their calls are not in usd_per_case"`
}

func costsOf(sum *run.Summary) VariantCosts {
	if sum.PerCase == nil {
		return VariantCosts{}
	}
	p := sum.PerCase
	return VariantCosts{USDPerCase: p.USD, TokensPerCase: p.Tokens, LatencyP50MS: p.LatencyP50MS, LatencyP95MS: p.LatencyP95MS, Unpriced: p.Unpriced}
}

// modelPair is both variants' validation results on one task model, paired
// by case.
type modelPair struct {
	model             string
	cand, inc         []float64 // per-case means over repeats, same case at the same index
	candPass, incPass []int     // per case, repeats that passed
	repeats           int
	candSum, incSum   *run.Summary
}

// caseScores are one validation run's scores, per case, over its repeats.
type caseScores struct {
	sum    float64
	n      int
	passes int
}

// pairModels reads both variants' recorded validation runs on every task
// model from the sealed store and pairs them by case id; with several task
// models, only cases every run holds are paired, in one order for all.
func (w *Workspace) pairModels(t *tenant.Tenant, st *session.State, acc session.Acceptance, cand, inc variant.ID) ([]modelPair, error) {
	store, err := w.heldOutRuns(t)
	if err != nil {
		return nil, err
	}
	pass := func(score float64) bool {
		if fb := t.Config.Attribution.FailBelow; fb > 0 {
			return score >= fb
		}
		return score >= scoring.MaxScore
	}
	read := func(v variant.ID, model string) (map[string]*caseScores, *run.Summary, error) {
		a, ok := st.ValidationOn(v, model)
		if !ok {
			return nil, nil, fmt.Errorf("no validation run of %s recorded in this session: compare it again, which evaluates it on validation first", v)
		}
		out := map[string]*caseScores{}
		err := store.Cases(a.Run, func(cr run.CaseResult) error {
			if cr.Errored() {
				// A recorded run is complete; an errored case here means
				// the store was changed behind the server's back.
				return fmt.Errorf("the recorded validation run of %s has a case without a score: evaluate it again in a new session", v)
			}
			cs := out[cr.CaseID]
			if cs == nil {
				cs = &caseScores{}
				out[cr.CaseID] = cs
			}
			cs.sum += cr.Score
			cs.n++
			if pass(cr.Score) {
				cs.passes++
			}
			return nil
		})
		if err != nil {
			return nil, nil, err
		}
		sum, err := store.Summary(a.Run)
		return out, sum, err
	}
	type runs struct {
		cand, inc       map[string]*caseScores
		candSum, incSum *run.Summary
	}
	models := acc.Models()
	all := make([]runs, len(models))
	for i, m := range models {
		var r runs
		if r.cand, r.candSum, err = read(cand, m); err != nil {
			return nil, err
		}
		if r.inc, r.incSum, err = read(inc, m); err != nil {
			return nil, err
		}
		all[i] = r
	}
	var ids []string
	for _, id := range slices.Sorted(maps.Keys(all[0].cand)) {
		in := true
		for _, r := range all {
			_, okC := r.cand[id]
			_, okI := r.inc[id]
			in = in && okC && okI
		}
		if in {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("the validation runs of %s and %s share no cases (the validation split changed between them): the operator re-seals or starts a new session, in which both are evaluated again", cand, inc)
	}
	out := make([]modelPair, len(models))
	for i, r := range all {
		p := modelPair{model: models[i], repeats: acc.Samples(), candSum: r.candSum, incSum: r.incSum}
		for _, id := range ids {
			c, n := r.cand[id], r.inc[id]
			// Paired statistics on per-case means: the repeats of a case
			// are not independent cases.
			p.cand = append(p.cand, c.sum/float64(c.n))
			p.inc = append(p.inc, n.sum/float64(n.n))
			p.candPass = append(p.candPass, c.passes)
			p.incPass = append(p.incPass, n.passes)
		}
		out[i] = p
	}
	return out, nil
}

// pooled is the per-case scores averaged over the task models.
func pooled(pairs []modelPair) (cand, inc []float64) {
	for _, p := range pairs {
		if cand == nil {
			cand, inc = make([]float64, len(p.cand)), make([]float64, len(p.inc))
		}
		for i := range p.cand {
			cand[i] += p.cand[i] / float64(len(pairs))
			inc[i] += p.inc[i] / float64(len(pairs))
		}
	}
	return cand, inc
}

func modelScores(pairs []modelPair) []session.ModelScores {
	out := make([]session.ModelScores, len(pairs))
	for i, p := range pairs {
		out[i] = session.ModelScores{Model: p.model, Candidate: p.cand, Incumbent: p.inc}
	}
	return out
}

// applyBounds refuses d when the candidate breaks a cost or latency bound
// on any task model, and returns what the compare reports per model.
// withhold keeps the exact scores (and pass^k, a score) out of a
// reusable-holdout answer.
func applyBounds(d *session.Decision, acc session.Acceptance, pairs []modelPair, withhold bool) []ModelComparison {
	var out []ModelComparison
	for _, p := range pairs {
		mc := ModelComparison{Model: p.model, Candidate: costsOf(p.candSum), Incumbent: costsOf(p.incSum)}
		if !withhold {
			mc.CandidateScore, mc.IncumbentScore = mean(p.cand), mean(p.inc)
			if k := acc.PassK; k > 0 {
				mc.PassK = k
				// Validated at load: 1 <= k <= repeats, and every case has
				// that many repeats in a complete run.
				mc.CandidatePassK, _ = session.PassK(p.candPass, p.repeats, k)
				mc.IncumbentPassK, _ = session.PassK(p.incPass, p.repeats, k)
			}
		}
		mc.CostRatio = ratio(mc.Candidate.USDPerCase, mc.Incumbent.USDPerCase)
		mc.LatencyRatio = ratio(mc.Candidate.LatencyP50MS, mc.Incumbent.LatencyP50MS)
		d.ApplyBounds(acc, p.model,
			session.Costs{USDPerCase: mc.Candidate.USDPerCase, LatencyP50MS: mc.Candidate.LatencyP50MS},
			session.Costs{USDPerCase: mc.Incumbent.USDPerCase, LatencyP50MS: mc.Incumbent.LatencyP50MS})
		out = append(out, mc)
	}
	d.FinishBounds()
	return out
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

func mean(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	var s float64
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}
