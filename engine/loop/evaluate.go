package loop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/fapo-dev/fapo/engine/attribution"
	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/scoring"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/statedb"
	"github.com/fapo-dev/fapo/engine/tenant"
	"github.com/fapo-dev/fapo/engine/variant"
)

// RunRequest asks for one evaluation run of a variant.
type RunRequest struct {
	Tenant  string
	Variant string // default: the incumbent, or v0000 without a session
	Split   dataset.Split
	Limit   int
	Resume  string
	// Progress is called after every case.
	Progress func(run.Progress)
	Labels   map[string]string
	// OnCase sees each result before it is written (and redacted).
	OnCase func(*run.CaseResult)
	// TaskModel, when set, names the [models.NAME] block that takes the
	// place of [model] for this run (a held-out run on one task model).
	TaskModel string
	// Repeats evaluates each case this many times (1: once). 0 is once,
	// except in an operator's evaluation of validation, which follows the
	// tenant's [acceptance] repeats as the session's validation does.
	Repeats int
}

// Labels of held-out runs that a continued run must match: a run on one
// task model or number of repeats is never continued as another.
const (
	labelTaskModel = "task_model"
	labelRepeats   = "repeats"
)

// taskModel is the environment of a run on one task model: llm steps that
// use the default model ([model]) call the task model's block instead.
type taskModel struct {
	*env
	name string
}

func (m taskModel) Client(name string) (provider.Client, string, error) {
	if name == "" {
		return m.env.Client(m.name)
	}
	return m.env.Client(name)
}

// heldOutRuns is the run store of a tenant's held-out runs, in the sealed
// store: the workspace never holds a held-out run, and their case logs
// (ids and per-case scores) are encrypted under a key of the sealed store.
func (w *Workspace) heldOutRuns(t *tenant.Tenant) (*run.Store, error) {
	key, err := w.secret(t.Name(), "runs")
	if err != nil {
		return nil, err
	}
	return run.NewSealedStore(filepath.Join(w.store.Home(), "tenants", t.Name(), "runs"), key)
}

// trainRuns is the tenant's train run store, in the workspace.
func trainRuns(t *tenant.Tenant) *run.Store { return run.NewStore(t.RunsDir(), false) }

// runStore is where runs of split live.
func (w *Workspace) runStore(t *tenant.Tenant, split dataset.Split) (*run.Store, error) {
	if split.HeldOut() {
		return w.heldOutRuns(t)
	}
	return trainRuns(t), nil
}

// notATrainRun is the one refusal for every run id that is not a train run
// this server recorded for the tenant: unknown, held-out, or a directory
// someone planted. It never says which, so it cannot confirm that a
// held-out run exists.
func notATrainRun(t *tenant.Tenant, id string) error {
	return refusal.New(refusal.EvaluateTrain, t.Name(), fmt.Sprintf("run %s is not a train run of tenant %s recorded by this server", id, t.Name()))
}

// trainRun looks run id up in the server's run index and opens it: only
// a train run the server itself started is read, and its variant is the
// index's, not what a summary on disk claims.
func (w *Workspace) trainRun(ctx context.Context, t *tenant.Tenant, id string) (*run.Summary, []run.CaseResult, error) {
	if !run.ValidID(id) {
		return nil, nil, refusal.New(refusal.EvaluateTrain, t.Name(), fmt.Sprintf("%q is not a run id", clipID(id)))
	}
	rec, ok, err := w.db.Run(ctx, t.Name(), id)
	if err != nil {
		return nil, nil, err
	}
	if !ok || rec.Split != string(dataset.Train) {
		return nil, nil, notATrainRun(t, id)
	}
	store := trainRuns(t)
	sum, err := store.Summary(id)
	if err != nil {
		return nil, nil, fmt.Errorf("train run %s: %w", id, err)
	}
	if sum.Split != rec.Split || sum.Variant != rec.Variant || sum.RunID != id {
		return nil, nil, fmt.Errorf("train run %s: its summary.json says %s run %s of %s, but the server recorded a %s run of %s; the file was edited: evaluate on train again for a fresh run",
			id, sum.Split, sum.RunID, sum.Variant, rec.Split, rec.Variant)
	}
	// The case log decides attribution (and with it which levels open):
	// it is read once, checked against the hash kept when the run
	// finished, and used as read.
	want, sealed, err := w.db.RunLogHash(ctx, t.Name(), id)
	if err != nil {
		return nil, nil, err
	}
	if !sealed {
		return nil, nil, fmt.Errorf("train run %s has no sealed case log (it did not finish, or finished before fapo sealed train logs): evaluate on train again for a fresh run", id)
	}
	raw, got, err := store.CasesBytes(id)
	if err != nil {
		return nil, nil, fmt.Errorf("train run %s: %w", id, err)
	}
	if !bytes.Equal(got[:], want) {
		return nil, nil, fmt.Errorf("train run %s: its cases.jsonl is not the log the run wrote (it was edited or replaced): evaluate on train again for a fresh run", id)
	}
	cases, err := store.DecodeCases(id, raw)
	if err != nil {
		return nil, nil, fmt.Errorf("train run %s: %w", id, err)
	}
	return sum, cases, nil
}

// clipID keeps an echoed id short: a caller may send anything.
func clipID(id string) string {
	if len(id) > 40 {
		return id[:40] + "…"
	}
	return id
}

// execute evaluates variant v of t on split. It is the single path every
// evaluation takes (CLI, tools, compare, final): the variant is verified,
// the chain validated, and a held-out run is redacted as it is written.
func (w *Workspace) execute(ctx context.Context, t *tenant.Tenant, v *variant.Variant, req RunRequest) (*run.Summary, error) {
	if !req.Split.Valid() {
		return nil, fmt.Errorf("split %q: use train, validation or test", req.Split)
	}
	if req.Split.HeldOut() {
		if err := w.checkEndpoints(t); err != nil {
			return nil, err
		}
	}
	lock := w.evalLock(t.Name())
	lock.Lock()
	defer lock.Unlock()

	ch, err := w.loadChain(t, v.FS())
	if err != nil {
		return nil, fmt.Errorf("variant %s: %w", v.ID, err)
	}
	store, err := w.runStore(t, req.Split)
	if err != nil {
		return nil, err
	}
	var train *trainSplit
	if req.Split == dataset.Train {
		// Read once, here, and verified against the pin check's hash: a
		// refused or changed data/train.jsonl stops the run before a run id
		// is allocated, and the run streams exactly these bytes.
		if train, err = w.readTrain(t); err != nil {
			return nil, err
		}
		defer train.close()
	}
	if req.Resume != "" {
		// Only a run the server recorded, of this split and variant, is
		// resumed: a directory found on disk is not a run.
		rec, ok, err := w.db.Run(ctx, t.Name(), req.Resume)
		if err != nil {
			return nil, err
		}
		switch {
		case !ok:
			return nil, fmt.Errorf("cannot resume run %s: it is not a run of tenant %s recorded by this server; start a new run instead",
				clipID(req.Resume), t.Name())
		case rec.Variant != string(v.ID):
			return nil, fmt.Errorf("cannot resume run %s: it ran variant %s, not %s; resume it with its own variant or start a new run", clipID(req.Resume), rec.Variant, v.ID)
		case rec.Split != string(req.Split):
			return nil, fmt.Errorf("cannot resume run %s: it ran on %s, not %s; resume it on its own split or start a new run", clipID(req.Resume), rec.Split, req.Split)
		}
	}
	e, err := w.envFor(t)
	if err != nil {
		return nil, err
	}
	var src run.Source
	total := 0
	if req.Split == dataset.Train {
		src = func(ctx context.Context, fn func(dataset.Case) error) error {
			return train.each(fn)
		}
	} else {
		src = func(ctx context.Context, fn func(dataset.Case) error) error {
			return w.store.ReadSplit(ctx, t.Name(), req.Split, fn)
		}
	}
	total, err = w.splitSize(t, req.Split)
	if err != nil {
		return nil, err
	}
	if req.Limit > 0 && (total == 0 || req.Limit < total) {
		total = req.Limit
	}
	total *= max(req.Repeats, 1)
	progress := req.Progress
	if progress != nil && req.Split.HeldOut() {
		// Counts only: a running mean or failure count after every case
		// would hand out each held-out case's score, one bit at a time.
		progress = func(p run.Progress) {
			out := run.Progress{RunID: p.RunID, Done: p.Done, Total: p.Total}
			if b := p.Batch; b != nil {
				// The batch's id and status only: its request counts vary
				// with held-out content (identical prompts are sent once,
				// so Total counts distinct ones; Completed counts successes,
				// so Total-Completed counts failures at the last poll).
				out.Batch = &provider.BatchProgress{ID: b.ID, Status: b.Status}
			}
			req.Progress(out)
		}
	}
	concurrency := t.Config.Model.Concurrency
	ctx = provider.WithScope(ctx, cacheScope(req.Split))
	var models chain.Models = e
	if req.TaskModel != "" {
		if _, ok := e.clients[req.TaskModel]; !ok {
			return nil, fmt.Errorf("task model %q is not declared: add a [models.%s] block to tenant.toml", req.TaskModel, req.TaskModel)
		}
		models = taskModel{e, req.TaskModel}
	}
	r := &run.Runner{Store: store, Pipeline: ch, Models: models, Scorer: e.scorer, Now: w.opts.Now}
	sum, err := r.Execute(ctx, src, run.Options{
		Tenant: t.Name(), Variant: string(v.ID), Split: req.Split,
		Concurrency: concurrency, Limit: req.Limit, Total: total, Resume: req.Resume, Chain: chainHash(v),
		KeepCaseData: req.Split == dataset.Train, Redact: req.Split.HeldOut(), Batch: batches(t),
		Prices: t.Config.Prices, Progress: progress, Labels: req.Labels, OnCase: req.OnCase, Repeats: req.Repeats,
		OnStart: func(id string) error {
			return w.db.RecordRun(ctx, statedb.RunRecord{Tenant: t.Name(), ID: id, Split: string(req.Split), Variant: string(v.ID)})
		},
	})
	if err == nil && req.Split == dataset.Train {
		// The log sits in the workspace: its hash, kept now, is what every
		// later read checks it against (trainRun).
		_, h, herr := store.CasesBytes(sum.RunID)
		if herr == nil {
			herr = w.db.SealRunLog(ctx, t.Name(), sum.RunID, h[:])
		}
		if herr != nil {
			return nil, fmt.Errorf("train run %s: seal its case log: %w", sum.RunID, herr)
		}
	}
	return sum, err
}

// splitSize is the number of cases split holds, from the sealed store's
// manifest (0 for train when the tenant is not sealed).
func (w *Workspace) splitSize(t *tenant.Tenant, split dataset.Split) (int, error) {
	m, err := w.store.Manifest(t.Name())
	if err != nil {
		if split.HeldOut() {
			return 0, err
		}
		return 0, nil
	}
	return m.Counts.Of(split), nil
}

// chainHash identifies what a variant executes: a hash over its verified
// files (chain.toml and every prompt), so a run can refuse to be continued
// by another chain even under the same variant id.
func chainHash(v *variant.Variant) string {
	files := v.Files()
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	h := sha256.New()
	for _, p := range paths {
		sum := sha256.Sum256(files[p])
		fmt.Fprintf(h, "%s\x00%x\n", p, sum)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// EvaluateForOperator runs an evaluation for the human operator (fapo eval):
// any split but test, no session needed, nothing charged. Test is reachable
// only through Final. Validation is evaluated with the tenant's repeats
// unless req asks for others, so that its figures are the ones compare
// decides on; train once unless asked.
func (w *Workspace) EvaluateForOperator(ctx context.Context, req RunRequest) (*run.Summary, error) {
	if req.Split == dataset.Test {
		return nil, refusal.New(refusal.RunFinal, req.Tenant, "the test split is evaluated once, by the final evaluation, never by an ordinary one")
	}
	if req.Repeats < 0 {
		return nil, fmt.Errorf("repeats %d: evaluate each case at least once", req.Repeats)
	}
	t, err := w.tenant(req.Tenant)
	if err != nil {
		return nil, err
	}
	if req.Repeats == 0 && req.Split == dataset.Validation {
		req.Repeats = t.Config.Acceptance.Repeats
	}
	vs, err := w.variants(t)
	if err != nil {
		return nil, err
	}
	id := req.Variant
	if id == "" {
		id = string(variant.Baseline)
	}
	v, err := w.getVariant(t, vs, nil, id)
	if err != nil {
		return nil, err
	}
	return w.execute(ctx, t, v, req)
}

// TrainEvaluation is what the agent learns from a train run: the summary
// and where its failures come from.
type TrainEvaluation struct {
	Summary     *run.Summary
	Attribution *attribution.Report // clusters only; failures are listed by attribute
	// Next is what to do now, from the session's state after this run.
	Next []string
}

// ValidationEvaluation is all the agent ever learns from a validation run:
// the aggregate, never a case.
type ValidationEvaluation struct {
	Variant        string             `json:"variant"`
	ScoreMean      float64            `json:"score_mean"`
	BreakdownMeans map[string]float64 `json:"breakdown_means,omitempty"`
	Cases          int                `json:"cases"`
	// Failed counts cases scored below full marks. A validation result
	// has no errored case: a run with one is not a result.
	Failed int `json:"failed"`
	// Cached is true when the variant had been evaluated on validation
	// before in this session: the same aggregate, at no charge.
	Cached bool `json:"cached"`
	// FailureClasses counts failed cases per class (fresh runs only):
	// counts, never cases.
	FailureClasses map[string]int `json:"failure_classes,omitempty"`
	// Model is the task model of a result on one of several; PerModel
	// holds each model's result when there are several (ScoreMean is then
	// their mean).
	Model    string                  `json:"model,omitempty"`
	PerModel []*ValidationEvaluation `json:"per_model,omitempty"`
	// Repeats is how many times each case was evaluated, when more than
	// once; Cases counts cases, not evaluations.
	Repeats int `json:"repeats,omitempty"`
}

// EvaluateTrain runs a variant on the train split within the active
// session, journals the aggregate and the money spent.
func (w *Workspace) EvaluateTrain(ctx context.Context, req RunRequest) (*TrainEvaluation, error) {
	o, err := w.begin(req.Tenant)
	if err != nil {
		return nil, err
	}
	defer o.close()
	t, sess, st := o.t, o.sess, o.st
	if err := usdExhausted(st); err != nil {
		return nil, err
	}
	v, err := o.variant(req.Variant)
	if err != nil {
		return nil, err
	}
	req.Split = dataset.Train
	req.Labels = map[string]string{"session": sess.ID()}
	sum, err := w.execute(ctx, t, v, req)
	if err != nil {
		return nil, err
	}
	if err := w.recordTrain(ctx, t, sess, v.ID, sum); err != nil {
		return nil, err
	}
	rep, err := w.attributeRun(ctx, t, sess, sum.RunID)
	if err != nil {
		return nil, err
	}
	rep.Failures = nil
	status, err := w.status(t, sess)
	if err != nil {
		return nil, err
	}
	return &TrainEvaluation{Summary: sum, Attribution: rep, Next: status.Next}, nil
}

// EvaluateValidation runs a reviewed variant on validation within the
// session: charged against the validation budget once, when its result is
// recorded, cached per variant, and answered with the aggregate only.
func (w *Workspace) EvaluateValidation(ctx context.Context, req RunRequest) (*ValidationEvaluation, error) {
	o, err := w.begin(req.Tenant)
	if err != nil {
		return nil, err
	}
	defer o.close()
	if o.st.Scope.Acceptance.Thresholdout != nil {
		return nil, refusal.New(refusal.Compare, req.Tenant, "this session answers validation only through comparisons (the reusable holdout): an exact validation score would bypass it")
	}
	v, err := o.variant(req.Variant)
	if err != nil {
		return nil, err
	}
	return w.validate(ctx, o.t, o.sess, v, req.Progress)
}

// validate is the guarded validation evaluation shared by evaluate and
// compare. AuthorizeValidation refuses unreviewed variants and a budget
// that cannot cover the evaluation before a single case runs; the charge
// is made with the record of a complete run, in one transaction, so a run
// that does not finish (killed, cancelled, a full disk) or finishes with
// errored cases (a provider outage) charges nothing and is no result. Such
// a run is continued by the next attempt: its scored cases are reused and
// only the rest run.
func (w *Workspace) validate(ctx context.Context, t *tenant.Tenant, sess *session.Session, v *variant.Variant, progress func(run.Progress)) (*ValidationEvaluation, error) {
	st, err := sess.State()
	if err != nil {
		return nil, err
	}
	acc := st.Scope.Acceptance
	models := acc.Models()
	if len(models) == 1 {
		return w.validateOn(ctx, t, sess, v, models[0], acc.Samples(), progress)
	}
	// Each task model's run is its own result, charged when recorded: a
	// model that fails leaves the others' results standing.
	out := &ValidationEvaluation{Variant: string(v.ID), Cached: true}
	for _, m := range models {
		ev, err := w.validateOn(ctx, t, sess, v, m, acc.Samples(), progress)
		if err != nil {
			return nil, fmt.Errorf("task model %s: %w", m, err)
		}
		out.PerModel = append(out.PerModel, ev)
		out.ScoreMean += ev.ScoreMean / float64(len(models))
		out.Cases, out.Repeats = ev.Cases, ev.Repeats
		out.Failed += ev.Failed
		out.Cached = out.Cached && ev.Cached
	}
	return out, nil
}

// validateOn is one validation result: variant v on one task model ("" is
// [model]) with each case evaluated repeats times.
func (w *Workspace) validateOn(ctx context.Context, t *tenant.Tenant, sess *session.Session, v *variant.Variant, model string, repeats int, progress func(run.Progress)) (*ValidationEvaluation, error) {
	cached, err := sess.AuthorizeValidationOn(v.ID, model)
	if err != nil {
		return nil, err
	}
	if cached != nil {
		return w.cachedValidation(t, *cached)
	}
	ch, err := w.loadChain(t, v.FS())
	if err != nil {
		return nil, err
	}
	total, err := w.splitSize(t, dataset.Validation)
	if err != nil {
		return nil, err
	}
	classes := &classCounter{steps: ch.Steps(), opts: AttributionOptions(t), counts: map[string]int{}}
	sum, err := w.executeHeldOut(ctx, t, v, RunRequest{Split: dataset.Validation, Progress: progress,
		Labels: heldOutLabels(map[string]string{"session": sess.ID()}, model, repeats), OnCase: classes.add,
		TaskModel: model, Repeats: repeats}, "session")
	if err != nil {
		return nil, fmt.Errorf("the validation run of %s did not finish, so nothing was charged; evaluate again to continue it where it stopped (%w)", v.ID, err)
	}
	if inc := sum.Incomplete(total * repeats); inc != nil {
		inc.Consequence = "nothing was charged, and evaluating again re-runs only those cases"
		inc.Coarse = true
		return nil, inc
	}
	agg := session.Aggregate{Variant: v.ID, Value: sum.ScoreMean, Cases: sum.Cases / repeats, Run: sum.RunID, Model: model}
	if pc := sum.PerCase; pc != nil {
		agg.USDPerCase, agg.LatencyP50MS = pc.USD, pc.LatencyP50MS
	}
	rec, charged, err := sess.RecordValidation(agg, sum.Usage.USD)
	if err != nil {
		return nil, err
	}
	if !charged {
		return w.cachedValidation(t, rec)
	}
	out := validationView(t, sum)
	if !sum.Resumed {
		out.FailureClasses = classes.counts // a resumed run saw only some cases
	}
	return out, nil
}

// executeHeldOut runs a held-out evaluation that is to become a result,
// continuing the newest run that did not (interrupted, or with errored
// cases) of the same split, variant and chain whose label key matches
// req's: its scored cases stand, only the rest run.
func (w *Workspace) executeHeldOut(ctx context.Context, t *tenant.Tenant, v *variant.Variant, req RunRequest, key string) (*run.Summary, error) {
	hash := chainHash(v)
	store, err := w.heldOutRuns(t)
	if err != nil {
		return nil, err
	}
	resume, _, err := store.Resumable(func(m *run.Meta) bool {
		return m.Split == string(req.Split) && m.Variant == string(v.ID) && m.Chain == hash && m.Labels[key] == req.Labels[key] &&
			m.Labels[labelTaskModel] == req.Labels[labelTaskModel] && m.Labels[labelRepeats] == req.Labels[labelRepeats]
	})
	if err != nil {
		return nil, err
	}
	req.Resume = resume
	sum, err := w.execute(ctx, t, v, req)
	if resume != "" && errors.Is(err, run.ErrRunBusy) {
		// Another process took the run up meanwhile: run afresh; whichever
		// result is recorded first stands, and only it is charged.
		req.Resume = ""
		sum, err = w.execute(ctx, t, v, req)
	}
	return sum, err
}

// cachedValidation answers with a recorded validation result.
func (w *Workspace) cachedValidation(t *tenant.Tenant, a session.Aggregate) (*ValidationEvaluation, error) {
	store, err := w.heldOutRuns(t)
	if err != nil {
		return nil, err
	}
	sum, err := store.Summary(a.Run)
	if err != nil {
		return nil, err
	}
	out := validationView(t, sum)
	out.Cached = true
	return out, nil
}

// validationView is what a validation run tells the agent. Breakdown means
// are limited to the components the tenant's scorer declares: a key that
// varies with the data would say which expected values held-out cases have.
func validationView(t *tenant.Tenant, sum *run.Summary) *ValidationEvaluation {
	var bd map[string]float64
	for _, k := range scoring.Declared(t.Config.Scorer) {
		if v, ok := sum.BreakdownMeans[k]; ok {
			if bd == nil {
				bd = map[string]float64{}
			}
			bd[k] = v
		}
	}
	samples := max(sum.Repeats, 1)
	return &ValidationEvaluation{Variant: sum.Variant, ScoreMean: sum.ScoreMean, BreakdownMeans: bd,
		Cases: sum.Cases / samples, Failed: sum.Failed, Model: sum.Labels[labelTaskModel], Repeats: sum.Repeats}
}

// heldOutLabels adds the task model and the repeats of a held-out run to
// labels, only when set, so runs without them keep the labels they had.
func heldOutLabels(labels map[string]string, model string, repeats int) map[string]string {
	if model != "" {
		labels[labelTaskModel] = model
	}
	if repeats > 1 {
		labels[labelRepeats] = fmt.Sprint(repeats)
	}
	return labels
}

// recordTrain journals a finished train run's cost and, when any case was
// scored, its aggregate over the scored cases.
func (w *Workspace) recordTrain(ctx context.Context, t *tenant.Tenant, sess *session.Session, v variant.ID, sum *run.Summary) error {
	if sum.Usage.USD > 0 {
		if err := sess.Spend(sum.Usage.USD, v, fmt.Sprintf("%s run %s", sum.Split, sum.RunID)); err != nil {
			return err
		}
	}
	if sum.Scored == 0 {
		return nil // no answer at all: nothing to record about the variant
	}
	a := session.Aggregate{Variant: v, Split: sum.Split, Value: sum.ScoreMean, Cases: sum.Scored, Errored: sum.Errored, Run: sum.RunID}
	// Read back right after the run, as its summary was: the spread the
	// power estimate (power.go) trusts later, whatever the log becomes.
	if _, cases, err := w.trainRun(ctx, t, sum.RunID); err == nil && len(scoresOf(cases)) == sum.Scored {
		scores := scoresOf(cases)
		_, sd := session.MeanSD(scores)
		a.SD = &sd
	}
	return sess.RecordEvaluation(a)
}

// usdExhausted refuses model spend once the session's dollars are used up.
func usdExhausted(st *session.State) error {
	b := st.Scope.Budget
	if b.MaxUSD > 0 && st.Used.USD >= b.MaxUSD {
		return fmt.Errorf("USD budget spent: $%.2f of $%.2f used; %s left; every evaluation costs money, so the session can only compare what it has or stop",
			st.Used.USD, b.MaxUSD, st.Left())
	}
	return nil
}

// batches reports whether any model block of the tenant asks for the batch
// API ([model] batch = true); the runner decides which runs use it.
func batches(t *tenant.Tenant) bool {
	if t.Config.Model.Batch {
		return true
	}
	for _, spec := range t.Config.Models {
		if spec.Batch {
			return true
		}
	}
	return false
}
