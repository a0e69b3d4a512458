package attribution

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/scoring"
)

// ReplayRequest is one oracle replay of a step on a train sample.
type ReplayRequest struct {
	Chain  *chain.Chain
	Models chain.Models
	Scorer scoring.Scorer
	// Cases are the train sample; cases without gold for Step are skipped
	// and counted.
	Cases []dataset.Case
	Step  string
	// Gold returns a case's gold output of Step. Nil uses BuiltinGold with
	// Evidence and Oracle.
	Gold     GoldFunc
	Evidence GoldEvidence
	Oracle   map[string]string
	// Prices price the calls in Usage (tenant.toml [prices]).
	Prices map[string]provider.Price
	// Concurrency bounds the cases in flight (default 4).
	Concurrency int
}

// OracleCase is one case's score without and with the gold step output.
type OracleCase struct {
	CaseID  string  `json:"case_id" jsonschema:"the train case"`
	Without float64 `json:"without" jsonschema:"its score as the chain runs"`
	With    float64 `json:"with" jsonschema:"its score with the step's output replaced by gold"`
	// Error says why a run or its scoring failed (that side scores 0).
	Error string `json:"error,omitempty" jsonschema:"why the case could not be replayed"`
}

// OracleResult is the measured headroom of a step: how much the score rises
// when the step is perfect and everything downstream runs as it is.
type OracleResult struct {
	Step string `json:"step" jsonschema:"the step replaced by gold"`
	// Sample counts the cases replayed; Skipped those without gold.
	Sample       int     `json:"sample" jsonschema:"train cases replayed"`
	Skipped      int     `json:"skipped" jsonschema:"cases without gold for the step"`
	ScoreWithout float64 `json:"score_without" jsonschema:"mean score as the chain runs"`
	ScoreWith    float64 `json:"score_with" jsonschema:"mean score with gold at the step"`
	// Headroom is ScoreWith - ScoreWithout, in score points.
	Headroom float64 `json:"headroom" jsonschema:"score_with minus score_without: what fixing the step could gain at most"`
	Changed  int     `json:"changed" jsonschema:"cases whose score changed"`
	Improved int     `json:"improved" jsonschema:"cases that scored higher with gold"`
	Worsened int     `json:"worsened" jsonschema:"cases that scored lower with gold"`
	// Cases are per-case scores, in sample order (train cases only).
	Cases []OracleCase `json:"cases" jsonschema:"per replayed case"`
	// Usage is what the replay spent, to charge to the session's budget;
	// cache hits (unchanged upstream calls) are free.
	Usage provider.UsageReport `json:"usage" jsonschema:"model calls, tokens and dollars of the replay"`
}

// Replay runs each sampled case twice, as is and with Step's output replaced
// by its gold, and scores both. A step without gold is an error listing the
// steps that have it.
func Replay(ctx context.Context, req ReplayRequest) (*OracleResult, error) {
	if req.Chain == nil || req.Scorer == nil {
		return nil, errors.New("oracle replay needs a chain and a scorer")
	}
	if err := req.Chain.CanOverride(); err != nil {
		return nil, err
	}
	gold := req.Gold
	if gold == nil {
		g, err := BuiltinGold(req.Chain.Steps(), req.Step, req.Evidence, req.Oracle)
		if err != nil {
			return nil, err
		}
		gold = g
	} else if req.Chain.StepFingerprint(req.Step) == "" {
		_, err := BuiltinGold(req.Chain.Steps(), req.Step, req.Evidence, req.Oracle)
		return nil, err // names the missing step
	}
	if len(req.Cases) == 0 {
		return nil, errors.New("oracle replay needs a sample of train cases; the sample is empty")
	}

	type job struct {
		c  dataset.Case
		ov chain.StepOverride
	}
	var jobs []job
	for _, c := range req.Cases {
		if ov, ok := gold(c); ok {
			jobs = append(jobs, job{c, ov})
		}
	}
	res := &OracleResult{Step: req.Step, Sample: len(jobs), Skipped: len(req.Cases) - len(jobs), Cases: []OracleCase{}}
	if len(jobs) == 0 {
		return nil, fmt.Errorf("none of the %d sampled cases carries gold for step %s (looked for %s); check the case fields or the [oracle] mapping in tenant.toml",
			len(req.Cases), req.Step, goldWhere(req))
	}

	ledger := provider.NewLedger(req.Prices)
	models := meteredModels{base: req.Models, ledger: ledger}
	traces := make([][2]*chain.Trace, len(jobs))
	// The replay is one run of the chain: an external program's endpoint
	// token is valid for it and for nothing after it.
	ctx, end := req.Chain.BeginRun(ctx)
	defer end()
	g, gctx := errgroup.WithContext(ctx)
	limit := req.Concurrency
	if limit <= 0 {
		limit = 4
	}
	g.SetLimit(limit)
	for i, j := range jobs {
		g.Go(func() error {
			traces[i][0] = req.Chain.Run(gctx, j.c, models)
			traces[i][1] = req.Chain.RunWithOverrides(gctx, j.c, models, map[string]chain.StepOverride{req.Step: j.ov})
			return gctx.Err()
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("oracle replay of step %s stopped: %w", req.Step, err)
	}

	items := make([]scoring.Item, 0, 2*len(jobs))
	for i, j := range jobs {
		for _, tr := range traces[i] {
			items = append(items, scoring.Item{Case: j.c, Output: scoring.Output{Final: tr.Final, Trace: tr}})
		}
	}
	scores := scoring.ScoreAll(ctx, req.Scorer, items, limit)
	var sumWithout, sumWith float64
	for i, j := range jobs {
		oc := OracleCase{CaseID: j.c.CaseID}
		var errs []string
		side := func(k int, name string) float64 {
			tr, sc := traces[i][k], scores[2*i+k]
			switch {
			case tr.Error != "":
				errs = append(errs, name+": "+tr.Error)
				return 0
			case sc.Err != nil:
				errs = append(errs, name+": scoring: "+sc.Err.Error())
				return 0
			}
			return sc.Result.Composite
		}
		oc.Without, oc.With = side(0, "without gold"), side(1, "with gold")
		oc.Error = clip(strings.Join(errs, "; "), maxEvidence)
		sumWithout += oc.Without
		sumWith += oc.With
		switch {
		case oc.With > oc.Without:
			res.Improved++
			res.Changed++
		case oc.With < oc.Without:
			res.Worsened++
			res.Changed++
		}
		res.Cases = append(res.Cases, oc)
	}
	res.ScoreWithout = sumWithout / float64(len(jobs))
	res.ScoreWith = sumWith / float64(len(jobs))
	res.Headroom = res.ScoreWith - res.ScoreWithout
	res.Usage = ledger.Snapshot()
	return res, nil
}

func goldWhere(req ReplayRequest) string {
	if p, ok := req.Oracle[req.Step]; ok {
		return p
	}
	if req.Gold != nil {
		return "the gold function given"
	}
	return req.Evidence.titlesPath() + " titles among " + req.Evidence.passagesPath()
}

// meteredModels records every call of a replay in one ledger, so the replay
// can be charged to the budget like any evaluation.
type meteredModels struct {
	base   chain.Models
	ledger *provider.Ledger
}

func (m meteredModels) Client(name string) (provider.Client, string, error) {
	if m.base == nil {
		return nil, "", errors.New("no models configured for the oracle replay")
	}
	c, model, err := m.base.Client(name)
	if err != nil {
		return nil, "", err
	}
	return provider.WithUsage(c, m.ledger, model), model, nil
}
