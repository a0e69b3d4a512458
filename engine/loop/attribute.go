package loop

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/fapo-dev/fapo/engine/attribution"
	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/scoring"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/tenant"
	"github.com/fapo-dev/fapo/engine/variant"
)

// maxFailuresShown bounds the failures listed in one attribution answer;
// the clusters summarize all of them.
const maxFailuresShown = 40

// AttributionView is a train run's attribution as the agent sees it.
type AttributionView struct {
	Run string `json:"run" jsonschema:"the attributed train run"`
	*attribution.Report
	// FailuresShown is how many of Report.Failed are listed in Failures.
	FailuresShown int `json:"failures_shown" jsonschema:"how many failures are listed (at most 40; clusters cover all)"`
	// Analysis groups the reasoning failures into named patterns, when
	// asked for and the tenant configures attribution.analysis_model.
	Analysis *attribution.Analysis `json:"analysis,omitempty" jsonschema:"named patterns among reasoning failures, when analyze was asked"`
}

// AttributionOptions are how every attribution of tenant t is configured
// (tools, CLI and Explorer alike).
func AttributionOptions(t *tenant.Tenant) attribution.Options {
	return attribution.Options{FailBelow: t.Config.Attribution.FailBelow, Oracle: t.Config.Oracle,
		AnswerFields: scoring.ExpectedFields(t.Config.Scorer)}
}

// Attribute classifies the failures of a train run by class and root step,
// and journals the dominant cluster: the escalation policy reads it.
func (w *Workspace) Attribute(ctx context.Context, tenantName, runID string, analyze bool) (*AttributionView, error) {
	t, err := w.tenant(tenantName)
	if err != nil {
		return nil, err
	}
	sess, err := w.activeSession(t)
	if err != nil {
		return nil, err
	}
	rep, err := w.attributeRun(ctx, t, sess, runID)
	if err != nil {
		return nil, err
	}
	view := &AttributionView{Run: runID, Report: rep}
	if analyze {
		if view.Analysis, err = w.analyze(ctx, t, sess, runID, rep); err != nil {
			return nil, err
		}
	}
	if len(rep.Failures) > maxFailuresShown {
		rep.Failures = rep.Failures[:maxFailuresShown]
	}
	view.FailuresShown = len(rep.Failures)
	return view, nil
}

// analyze asks the tenant's analysis model to group the run's reasoning
// failures; the call is charged to the session's dollars.
func (w *Workspace) analyze(ctx context.Context, t *tenant.Tenant, sess *session.Session, runID string, rep *attribution.Report) (*attribution.Analysis, error) {
	name := t.Config.Attribution.AnalysisModel
	if name == "" {
		return nil, fmt.Errorf("tenant %s has no attribution.analysis_model: ask the user to name a [models.NAME] block for it in tenant.toml, or attribute without analyze", t.Name())
	}
	st, err := sess.State()
	if err != nil {
		return nil, err
	}
	if err := usdExhausted(st); err != nil {
		return nil, err
	}
	_, results, err := w.trainRun(ctx, t, runID)
	if err != nil {
		return nil, err
	}
	e, err := w.envFor(t)
	if err != nil {
		return nil, err
	}
	c, model, err := e.Client(name)
	if err != nil {
		return nil, fmt.Errorf("attribution.analysis_model: %w", err)
	}
	an, err := attribution.Analyze(ctx, c, model, attribution.Summaries(results, rep, AttributionOptions(t)))
	if err != nil {
		return nil, err
	}
	if price, ok := t.Config.Prices[model]; ok {
		usd := float64(an.Usage.PromptTokens)*price.InputPerMTok/1e6 + float64(an.Usage.CompletionTokens)*price.OutputPerMTok/1e6
		if usd > 0 {
			if err := sess.Spend(usd, "", "failure analysis of run "+runID); err != nil {
				return nil, err
			}
		}
	}
	return an, nil
}

// attributeRun attributes train run runID and records its dominant
// cluster. Only a train run the server recorded is read (see trainRun):
// a held-out run's id, known from the journal, is refused like any other.
func (w *Workspace) attributeRun(ctx context.Context, t *tenant.Tenant, sess *session.Session, runID string) (*attribution.Report, error) {
	sum, results, err := w.trainRun(ctx, t, runID)
	if err != nil {
		return nil, err
	}
	ch, err := w.chainOf(t, sess, sum.Variant)
	if err != nil {
		return nil, err
	}
	rep := attribution.Attribute(results, ch.Steps(), AttributionOptions(t))
	if sess != nil {
		rec := session.Dominant{Run: runID, Variant: sum.Variant}
		if d := rep.Dominant; d != nil {
			rec.Class, rec.Step, rec.Level, rec.Share = d.Class, d.RootStep, d.Level, d.Share
		}
		for _, c := range rep.Clusters {
			rec.Clusters = append(rec.Clusters, c.Name())
		}
		if err := sess.RecordAttribution(rec); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// chainOf loads the chain of a verified variant.
func (w *Workspace) chainOf(t *tenant.Tenant, sess *session.Session, id string) (*chain.Chain, error) {
	vs, err := w.variants(t)
	if err != nil {
		return nil, err
	}
	v, err := w.getVariant(t, vs, sess, id)
	if err != nil {
		return nil, err
	}
	return w.loadChain(t, v.FS())
}

// classCounter counts failure classes of a held-out run as its cases
// complete, before they are redacted: counts are all that may leave.
type classCounter struct {
	steps  []chain.StepInfo
	opts   attribution.Options
	counts map[string]int
}

func (c *classCounter) add(cr *run.CaseResult) {
	rep := attribution.Attribute([]run.CaseResult{*cr}, c.steps, c.opts)
	for _, f := range rep.Failures {
		c.counts[f.Class]++
	}
}

// OracleRequest asks for the measured headroom of one step.
type OracleRequest struct {
	Tenant  string
	Variant string // default: the incumbent
	Step    string
	Sample  int // train cases to replay (default 20, at most 200)
	Seed    uint64
}

// RunOracle replays a train sample with a step's output replaced by gold
// and reports the score with and without: how much fixing that step could
// gain. Its model calls are charged to the session's dollars.
func (w *Workspace) RunOracle(ctx context.Context, req OracleRequest) (*attribution.OracleResult, error) {
	o, err := w.begin(req.Tenant)
	if err != nil {
		return nil, err
	}
	defer o.close()
	t, sess, st := o.t, o.sess, o.st
	if err := usdExhausted(st); err != nil {
		return nil, err
	}
	id := req.Variant
	if id == "" {
		id = string(st.Incumbent)
	}
	ch, err := w.chainOf(t, sess, id)
	if err != nil {
		return nil, err
	}
	opts := AttributionOptions(t)
	gold, err := attribution.BuiltinGold(ch.Steps(), req.Step, opts.Gold, opts.Oracle)
	if err != nil {
		return nil, err
	}
	train, err := w.trainAll(t)
	if err != nil {
		return nil, err
	}
	n := req.Sample
	if n <= 0 {
		n = 20
	}
	n = min(n, 200, len(train))
	rng := rand.New(rand.NewPCG(req.Seed, 0x0f4c1e)) //nolint:gosec // G404: a reproducible sample of train cases, not a secret
	rng.Shuffle(len(train), func(i, j int) { train[i], train[j] = train[j], train[i] })
	e, err := w.envFor(t)
	if err != nil {
		return nil, err
	}
	lock := w.evalLock(t.Name())
	lock.Lock()
	res, err := attribution.Replay(ctx, attribution.ReplayRequest{Chain: ch, Models: e, Scorer: e.scorer, Cases: train[:n],
		Step: req.Step, Gold: gold, Evidence: opts.Gold, Oracle: opts.Oracle, Prices: t.Config.Prices,
		Concurrency: t.Config.Model.Concurrency})
	lock.Unlock()
	if err != nil {
		return nil, err
	}
	if res.Usage.USD > 0 {
		if err := sess.Spend(res.Usage.USD, variant.ID(id), "oracle replay of step "+req.Step); err != nil {
			return nil, err
		}
	}
	return res, nil
}
