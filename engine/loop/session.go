package loop

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/tenant"
	"github.com/fapo-dev/fapo/engine/variant"
)

// TenantInfo describes one tenant for list_tenants.
type TenantInfo struct {
	Name        string   `json:"name" jsonschema:"the tenant's name, for the tenant argument"`
	Description string   `json:"description,omitempty" jsonschema:"what the pipeline does"`
	TaskType    string   `json:"task_type" jsonschema:"qa, classification, math..."`
	Target      string   `json:"target" jsonschema:"the target on validation"`
	Sealed      bool     `json:"sealed" jsonschema:"the data is split and sealed: a session can start"`
	TrainCases  int      `json:"train_cases" jsonschema:"cases in the train split"`
	Session     string   `json:"session,omitempty" jsonschema:"the active session's id"`
	Problems    []string `json:"problems,omitempty" jsonschema:"why the tenant cannot be used, and whom to ask"`
}

// ListTenants lists the workspace's tenants, including broken ones with
// what is wrong, so the agent can tell the user.
func (w *Workspace) ListTenants() []TenantInfo {
	ts, errs := tenant.List(w.dir)
	var out []TenantInfo
	for _, t := range ts {
		var changed []string
		var pe *tenant.PinError
		if _, err := w.verifiedTenant(t.Name(), false); errors.As(err, &pe) {
			// Listed, not refused: the agent learns why every other call
			// on this tenant will be refused, and whom to ask.
			changed = append(changed, pinProblem(pe))
		}
		info := TenantInfo{Name: t.Name(), Description: t.Config.Description, TaskType: t.Config.TaskType,
			Target: fmt.Sprintf("%s >= %g", t.Config.Target.Metric, t.Config.Target.Min)}
		if m, err := w.store.Manifest(t.Name()); err == nil {
			info.Sealed, info.TrainCases = true, m.Counts.Train
		} else {
			info.Problems = append(info.Problems, "not sealed: the operator must run fapo seal")
		}
		info.Problems = append(info.Problems, changed...)
		if j, err := w.journal(t); err == nil {
			if s, err := session.ActiveSession(j); err == nil {
				info.Session = s.ID()
			}
		}
		out = append(out, info)
	}
	for _, err := range errs {
		out = append(out, TenantInfo{Name: "(unloadable)", Problems: []string{err.Error()}})
	}
	return out
}

// StartRequest is what an agent may ask of a new session; every value may
// only tighten what tenant.toml grants.
type StartRequest struct {
	Tenant             string
	TargetMin          *float64
	MaxVariants        int
	MaxValidationEvals int
	MaxUSD             float64
	AllowedLevels      []variant.Level
}

// frozenFiles are never changed by a proposal: the scorer and the data are
// defined in tenant.toml and data/, and changing them would change what the
// score means.
var frozenFiles = []string{"tenant.toml", "data/**", "scorer/**", "corpus/**"}

// StartSession writes the session's scope contract. A tenant has one
// session: when it exists already it is returned unchanged (Resumed), so an
// agent can never reset its own budget by starting over; a new session is
// the operator's decision (fapo session new).
func (w *Workspace) StartSession(req StartRequest) (*Status, error) {
	t, err := w.tenant(req.Tenant)
	if err != nil {
		return nil, err
	}
	if _, err := w.store.Manifest(t.Name()); err != nil {
		return nil, refusal.New(refusal.Seal, t.Name(), fmt.Sprintf("tenant %s is not sealed, so there is no validation split to decide on", t.Name()))
	}
	j, err := w.journal(t)
	if err != nil {
		return nil, err
	}
	// The check for an existing session and the creation are one
	// transaction: simultaneous start_session calls, from one server or
	// several, yield one session.
	s, resumed, err := session.StartSession(j, func() (session.Scope, error) { return scopeFor(t, req) }, true)
	if err != nil {
		return nil, err
	}
	st, err := w.status(t, s)
	if err != nil {
		return nil, err
	}
	if st.Power != nil && st.Power.Warning != "" {
		st.Next = append([]string{"tell the user before spending: " + st.Power.Warning}, st.Next...)
	}
	if resumed {
		st.Resumed = true
		st.Next = append([]string{fmt.Sprintf("session %s already exists for %s and keeps its scope contract; only the operator can start a new one (fapo session new)", s.ID(), t.Name())}, st.Next...)
	}
	return st, nil
}

// NewSession starts a new session for the operator, replacing the active
// one (the old one stays in the journal).
func (w *Workspace) NewSession(req StartRequest) (*Status, error) {
	t, err := w.tenant(req.Tenant)
	if err != nil {
		return nil, err
	}
	j, err := w.journal(t)
	if err != nil {
		return nil, err
	}
	sc, err := scopeFor(t, req)
	if err != nil {
		return nil, err
	}
	s, err := session.CreateSession(j, sc)
	if err != nil {
		return nil, err
	}
	return w.status(t, s)
}

func scopeFor(t *tenant.Tenant, req StartRequest) (session.Scope, error) {
	cfg := t.Config
	sc := session.Scope{
		Tenant: t.Name(),
		Target: session.Target{Metric: cfg.Target.Metric, Min: cfg.Target.Min},
		Budget: session.Budget{MaxVariants: cfg.Budget.MaxVariants, MaxValidationEvals: cfg.Budget.MaxValidationEval,
			MaxUSD: cfg.Budget.MaxUSD},
		AllowedLevels: slices.Clone(cfg.Escalation.Levels),
		FrozenFiles:   frozenFiles,
		Patience:      cfg.Escalation.Patience,
		Acceptance: session.Acceptance{Rule: cfg.Acceptance.Rule, Bootstrap: cfg.Acceptance.Bootstrap, Seed: cfg.Acceptance.Seed,
			MaxCostRatio: cfg.Acceptance.MaxCostRatio, MaxLatencyRatio: cfg.Acceptance.MaxLatencyRatio,
			TaskModels: slices.Clone(cfg.Acceptance.TaskModels), Repeats: repeatsOf(cfg.Acceptance.Repeats), PassK: cfg.Acceptance.PassK},
	}
	if len(cfg.Acceptance.TaskModels) > 0 {
		sc.Acceptance.ModelsRule = cfg.Acceptance.ModelsRule
	}
	if th := cfg.Acceptance.Thresholdout; th != nil {
		sc.Acceptance.Thresholdout = &session.Thresholdout{Threshold: th.Threshold, Sigma: th.Sigma, Budget: th.Budget}
	}
	var errs []string
	if req.TargetMin != nil {
		sc.Target.Min = *req.TargetMin
	}
	tighten := func(name string, asked int, granted *int) {
		switch {
		case asked < 0:
			errs = append(errs, fmt.Sprintf("%s is %d: use a positive number or leave it out", name, asked))
		case asked > *granted:
			errs = append(errs, fmt.Sprintf("%s %d exceeds the %d that tenant.toml grants; ask the user to raise budget.%s in tenant.toml", name, asked, *granted, name))
		case asked > 0:
			*granted = asked
		}
	}
	tighten("max_variants", req.MaxVariants, &sc.Budget.MaxVariants)
	tighten("max_validation_evals", req.MaxValidationEvals, &sc.Budget.MaxValidationEvals)
	switch {
	case req.MaxUSD < 0:
		errs = append(errs, "max_usd is negative")
	case req.MaxUSD > 0 && sc.Budget.MaxUSD > 0 && req.MaxUSD > sc.Budget.MaxUSD:
		errs = append(errs, fmt.Sprintf("max_usd %g exceeds the %g that tenant.toml grants", req.MaxUSD, sc.Budget.MaxUSD))
	case req.MaxUSD > 0:
		sc.Budget.MaxUSD = req.MaxUSD
	}
	if len(req.AllowedLevels) > 0 {
		for _, l := range req.AllowedLevels {
			if !slices.Contains(cfg.Escalation.Levels, l) {
				errs = append(errs, fmt.Sprintf("level %q is not allowed by tenant.toml (escalation.levels = %v)", l, cfg.Escalation.Levels))
			}
		}
		sc.AllowedLevels = slices.Clone(req.AllowedLevels)
	}
	if len(errs) > 0 {
		return sc, errors.New(strings.Join(errs, "; "))
	}
	return sc, nil
}

// Status is the state of a session as the agent sees it.
type Status struct {
	Tenant    string `json:"tenant" jsonschema:"the tenant"`
	Session   string `json:"session" jsonschema:"the session id"`
	Resumed   bool   `json:"resumed,omitempty" jsonschema:"the session existed already and keeps its scope contract"`
	Target    string `json:"target" jsonschema:"the target on validation"`
	TargetMet bool   `json:"target_met" jsonschema:"the incumbent's validation score reaches the target: stop and report"`
	Incumbent string `json:"incumbent" jsonschema:"the variant that stands; only compare moves it"`
	Rule      string `json:"acceptance_rule" jsonschema:"acceptance rule: improves or significant"`
	// Acceptance is the rest of how compare decides, as the contract
	// fixed it: bounds, task models, repeats.
	Acceptance AcceptanceView  `json:"acceptance" jsonschema:"the rest of how compare decides, as the contract fixed it: bounds, task models, repeats"`
	Levels     []variant.Level `json:"allowed_levels" jsonschema:"levels the scope contract allows"`
	// OpenLevels are the levels a proposal may use now.
	OpenLevels []variant.Level `json:"open_levels" jsonschema:"levels a proposal may use now"`
	// Locked explains, per locked level, what would unlock it.
	Locked      map[string]string `json:"locked,omitempty" jsonschema:"per locked level, what would unlock it"`
	Validation  []AggregateView   `json:"validation_history" jsonschema:"validation aggregates, in order (aggregates only)"`
	Train       []AggregateView   `json:"train_history" jsonschema:"train runs, in order"`
	Proposed    []ProposedView    `json:"proposed" jsonschema:"variants proposed in the session"`
	Comparisons int               `json:"comparisons" jsonschema:"compares made"`
	Dominant    string            `json:"dominant_cluster,omitempty" jsonschema:"the latest attribution's dominant cluster, class@step, and its level"`
	// CompareCharges says what the next compare charges while the
	// incumbent has no validation run: its run as well as the candidate's.
	CompareCharges string     `json:"compare_charges,omitempty" jsonschema:"what the next compare charges while the incumbent has no validation run"`
	Budget         BudgetView `json:"budget_left" jsonschema:"what is left of the session's budget"`
	// Power is how small a gain the validation split can detect; absent
	// when the tenant is not sealed.
	Power *PowerView `json:"power,omitempty" jsonschema:"how small a gain the validation split can detect; absent when the tenant is not sealed"`
	Next  []string   `json:"next" jsonschema:"what to do now, from the session's state"`
	// Halt is the refusal that stops the session (a lock), whose next step
	// is the operator's: a front end renders it into Next for its reader.
	Halt *refusal.Refusal `json:"-"`
}

// AcceptanceView is the part of the session's contract, beyond the rule,
// that decides a compare. Zero bounds and no task models are left out.
type AcceptanceView struct {
	// MaxCostRatio and MaxLatencyRatio refuse a candidate whose $ per
	// case, or median latency per case, is more than that many times the
	// incumbent's on any task model.
	MaxCostRatio    float64 `json:"max_cost_ratio,omitempty" jsonschema:"a candidate whose dollars per case exceed this many times the incumbent's on any task model is rejected"`
	MaxLatencyRatio float64 `json:"max_latency_ratio,omitempty" jsonschema:"a candidate whose median latency per case exceeds this many times the incumbent's is rejected"`
	// TaskModels are the model blocks validation runs on, each its own
	// result, decided across by ModelsRule (every or mean).
	TaskModels []string `json:"task_models,omitempty" jsonschema:"the model blocks validation runs on, each its own result"`
	ModelsRule string   `json:"models_rule,omitempty" jsonschema:"how decisions combine across task models: every or mean"`
	// Repeats is how many times each validation case is evaluated; PassK,
	// when set, is the k of the pass^k compare reports.
	Repeats int `json:"repeats" jsonschema:"how many times each validation case is evaluated"`
	PassK   int `json:"pass_k,omitempty" jsonschema:"the k of the pass^k compare reports, when set"`
	// Summary says all of it in a sentence.
	Summary string `json:"summary" jsonschema:"the acceptance terms in a sentence"`
}

func acceptanceView(a session.Acceptance) AcceptanceView {
	v := AcceptanceView{MaxCostRatio: a.MaxCostRatio, MaxLatencyRatio: a.MaxLatencyRatio,
		TaskModels: a.TaskModels, ModelsRule: a.ModelsRule, Repeats: a.Samples(), PassK: a.PassK}
	var parts []string
	if a.MaxCostRatio > 0 {
		parts = append(parts, fmt.Sprintf("a candidate above %g× the incumbent's $ per case is refused", a.MaxCostRatio))
	}
	if a.MaxLatencyRatio > 0 {
		parts = append(parts, fmt.Sprintf("a candidate above %g× the incumbent's median latency per case is refused", a.MaxLatencyRatio))
	}
	if len(a.TaskModels) > 0 {
		how := "every model's comparison must accept"
		if a.ModelsRule == session.ModelsRuleMean {
			how = "the comparison of per-case means across them decides"
		}
		parts = append(parts, fmt.Sprintf("validation runs on task models %s, and %s", strings.Join(a.TaskModels, ", "), how))
	}
	if a.Samples() > 1 {
		parts = append(parts, fmt.Sprintf("each validation case is evaluated %d times and compared by its mean", a.Samples()))
	}
	if a.PassK > 0 {
		parts = append(parts, fmt.Sprintf("compare reports pass^%d", a.PassK))
	}
	if len(parts) == 0 {
		v.Summary = "no cost or latency bound; validation runs once per case on [model]"
	} else {
		v.Summary = strings.Join(parts, "; ")
	}
	return v
}

// AggregateView is one evaluation aggregate.
type AggregateView struct {
	Variant string  `json:"variant" jsonschema:"the variant"`
	Score   float64 `json:"score_mean" jsonschema:"mean score over the scored cases"`
	Cases   int     `json:"cases" jsonschema:"cases scored"`
	Run     string  `json:"run,omitempty" jsonschema:"train run id, for inspect_cases and attribute"` // train runs only
}

// ProposedView is one proposed variant and where it stands.
type ProposedView struct {
	ID       string        `json:"id" jsonschema:"variant id"`
	Parent   string        `json:"parent" jsonschema:"its parent"`
	Level    variant.Level `json:"level" jsonschema:"its level"`
	Review   string        `json:"review" jsonschema:"pending, passed or failed"` // pending, passed, failed
	Decision string        `json:"decision,omitempty" jsonschema:"accepted or rejected by compare; empty before"`
}

// BudgetView is what is left of the session's budget.
type BudgetView struct {
	Variants        int     `json:"variants" jsonschema:"proposals left"`
	ValidationEvals int     `json:"validation_evals" jsonschema:"validation evaluations left"`
	USD             float64 `json:"usd" jsonschema:"dollars left"`
	USDLimited      bool    `json:"usd_limited" jsonschema:"the session limits dollars"`
	Summary         string  `json:"summary" jsonschema:"the budget left in words"`
}

// SessionStatus returns the tenant's session status.
func (w *Workspace) SessionStatus(tenantName string) (*Status, error) {
	t, err := w.tenant(tenantName)
	if err != nil {
		return nil, err
	}
	sess, err := w.activeSession(t)
	if err != nil {
		return nil, err
	}
	return w.status(t, sess)
}

// Budget returns the budget left of the tenant's session, for every tool
// response; ok is false when there is no session.
func (w *Workspace) Budget(tenantName string) (BudgetView, bool) {
	// The budget comes from the session's books, not from a frozen file,
	// and it is shown also beside a pin refusal.
	t, err := w.booksOf(tenantName)
	if err != nil {
		return BudgetView{}, false
	}
	sess, err := w.activeSession(t)
	if err != nil {
		return BudgetView{}, false
	}
	st, err := sess.State()
	if err != nil {
		return BudgetView{}, false
	}
	return budgetView(st), true
}

func budgetView(st *session.State) BudgetView {
	l := st.Left()
	b := st.Scope.Budget
	usd := b.MaxUSD - st.Used.USD
	return BudgetView{Variants: b.MaxVariants - st.Used.Variants, ValidationEvals: b.MaxValidationEvals - st.Used.ValidationEvals,
		USD: max(usd, 0), USDLimited: b.MaxUSD > 0, Summary: l.String()}
}

func (w *Workspace) status(t *tenant.Tenant, sess *session.Session) (*Status, error) {
	st, err := sess.State()
	if err != nil {
		return nil, err
	}
	out := &Status{Tenant: t.Name(), Session: sess.ID(), Target: st.Scope.Target.String(), TargetMet: targetMetForAgent(st),
		Incumbent: string(st.Incumbent), Rule: st.Scope.Acceptance.Rule, Acceptance: acceptanceView(st.Scope.Acceptance),
		Levels:     st.Scope.AllowedLevels,
		OpenLevels: st.OpenLevels(), Comparisons: len(st.Comparisons), Budget: budgetView(st),
		Validation: []AggregateView{}, Train: []AggregateView{}, Proposed: []ProposedView{}}
	for _, l := range st.Scope.AllowedLevels {
		if err := st.Allowed(l); err != nil {
			if out.Locked == nil {
				out.Locked = map[string]string{}
			}
			out.Locked[string(l)] = err.Error()
		}
	}
	reusable := st.Scope.Acceptance.Thresholdout != nil
	for _, a := range st.History {
		v := AggregateView{Variant: string(a.Variant), Score: a.Value, Cases: a.Cases}
		if reusable {
			v.Score = 0 // the reusable holdout answers only through compare
		}
		out.Validation = append(out.Validation, v)
	}
	for _, a := range st.Train {
		out.Train = append(out.Train, AggregateView{Variant: string(a.Variant), Score: a.Value, Cases: a.Cases, Run: a.Run})
	}
	decisions := map[variant.ID]string{}
	for _, c := range st.Comparisons {
		decisions[c.Candidate] = "rejected"
		if c.Decision.Accept {
			decisions[c.Candidate] = "accepted"
		}
	}
	for _, p := range st.Proposed {
		review := "pending"
		if r, ok := st.LatestReview(p.ID); ok {
			review = "failed"
			if r.Passed {
				review = "passed"
			}
		}
		out.Proposed = append(out.Proposed, ProposedView{ID: string(p.ID), Parent: string(p.Parent), Level: p.Level, Review: review, Decision: decisions[p.ID]})
	}
	if d := st.Dominant; d != nil && d.Class != "" {
		out.Dominant = d.Class + "@" + d.Step
		if d.Level != "" {
			out.Dominant += " (" + d.Level.String() + " level)"
		}
	}
	if _, ok := st.Validation(st.Incumbent); !ok && st.Locked == nil {
		out.CompareCharges = fmt.Sprintf("the incumbent %s has no validation run in this session yet, so the next compare charges 2 validation evaluations: %s's and the candidate's (later compares charge only the candidate's: %s's result is kept); %s",
			st.Incumbent, st.Incumbent, st.Incumbent, st.Left().String())
	}
	if pv, err := w.power(context.Background(), t, st); err == nil {
		out.Power = pv
	}
	out.Next = nextSteps(st, out)
	if st.Locked != nil {
		out.Halt = (&session.LockedSessionError{Session: sess.ID(), Lock: *st.Locked, Tenant: t.Name()}).Refusal()
		out.Next = []string{out.Halt.Error()}
	}
	return out, nil
}

// UnlockSession is the operator's decision (fapo session unlock) to let a
// session the review gate locked go on; the reason is journaled.
func (w *Workspace) UnlockSession(tenantName, reason string) (*Status, error) {
	o, err := w.begin(tenantName)
	if err != nil {
		return nil, err
	}
	defer o.close()
	if err := o.sess.Unlock(reason); err != nil {
		return nil, err
	}
	return w.status(o.t, o.sess)
}

// nextSteps says what the agent may usefully do now, computed from the
// session's state alone, so every tool's "next" agrees with
// session_status: target met, budget spent, a variant waiting for review
// or compare, the incumbent without a train run (a new incumbent after an
// accepted compare included), its run not attributed, failures that are
// all infrastructure, nothing failed, or a cluster to target.
func nextSteps(st *session.State, s *Status) []string {
	if s.TargetMet {
		return []string{fmt.Sprintf("the target %s holds on validation for %s: stop and report; the operator runs fapo final", s.Target, s.Incumbent)}
	}
	l := st.Left()
	if l.ValidationEvals <= 0 {
		return []string{fmt.Sprintf("the validation budget is spent (%s left): no compare can run; stop and report the incumbent %s", l.String(), s.Incumbent)}
	}
	var next []string
	waiting := false
	for _, p := range s.Proposed {
		switch {
		case p.Review == "pending":
			next = append(next, fmt.Sprintf("review_variant %s (proposed, not yet reviewed)", p.ID))
			waiting = true
		case p.Review == "passed" && p.Decision == "":
			next = append(next, fmt.Sprintf("compare %s against the incumbent %s", p.ID, s.Incumbent))
			waiting = true
		}
	}
	if l.Variants <= 0 {
		if !waiting {
			next = append(next, fmt.Sprintf("the variant budget is spent (%s left): stop and report the incumbent %s", l.String(), s.Incumbent))
		}
		return next
	}
	return append(next, cycleStep(st, s))
}

// cycleStep is the next step of the evaluate → attribute → inspect →
// propose cycle for the incumbent.
func cycleStep(st *session.State, s *Status) string {
	inc := st.Incumbent
	var run *session.Aggregate
	for i := len(st.Train) - 1; i >= 0; i-- {
		if st.Train[i].Variant == inc {
			run = &st.Train[i]
			break
		}
	}
	d := st.Dominant
	var others []string
	if d != nil {
		for _, c := range d.Clusters {
			if !strings.HasPrefix(c, "infrastructure@") {
				others = append(others, c)
			}
		}
	}
	if d != nil && d.Class == "infrastructure" && len(others) == 0 && (run == nil && d.Variant == string(inc) || run != nil && d.Run == run.Run) {
		// Every case errored leaves no aggregate; the attribution says why.
		errored := "every case errored"
		if run != nil {
			errored = fmt.Sprintf("%d errored cases", run.Errored)
		}
		return fmt.Sprintf("every failure of run %s is infrastructure (%s: provider or network errors, no answer): a proposal cannot fix them; fix the model server, key or rate limits and evaluate %s on train again",
			d.Run, errored, inc)
	}
	if run == nil {
		if inc != variant.Baseline && len(st.Comparisons) > 0 {
			return fmt.Sprintf("%s is the new incumbent and has no train run yet: evaluate it on train (split train) to see where it fails now", inc)
		}
		return fmt.Sprintf("evaluate the incumbent %s on train (split train) to see where it fails", inc)
	}
	if !st.AttributedRuns[run.Run] {
		return fmt.Sprintf("attribute run %s, the incumbent %s's latest train run", run.Run, inc)
	}
	if d == nil || d.Run != run.Run {
		return fmt.Sprintf("attribute run %s again: the latest attribution is of another run, and target_cluster is checked against the latest", run.Run)
	}
	open := words(variant.LevelNames(s.OpenLevels))
	switch d.Class {
	case "":
		return fmt.Sprintf("no train case of %s failed in run %s: there is nothing on train to target; stop and report, or evaluate on more train cases", inc, run.Run)
	case "infrastructure":
		return fmt.Sprintf("most failures of run %s are infrastructure (errored: fix the provider and evaluate again); the largest cluster a proposal can address is %s: inspect_cases run %s cluster %s, then propose_variant with target_cluster %s at one of the open levels (%s)",
			run.Run, others[0], run.Run, others[0], others[0], open)
	}
	c := d.Class + "@" + d.Step
	level := d.Level
	if !slices.Contains(s.OpenLevels, level) && len(s.OpenLevels) > 0 {
		level = s.OpenLevels[len(s.OpenLevels)-1]
	}
	return fmt.Sprintf("inspect_cases run %s cluster %s (a few cases), then propose_variant at level %s with target_cluster %s (open levels: %s)",
		run.Run, c, level, c, open)
}

// words lists names as a sentence does: "prompt, parameter and structural".
func words(names []string) string {
	switch len(names) {
	case 0:
		return "none"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// repeatsOf is the contract's repeats: 1 (the default) is left out, so a
// tenant without repeats keeps the contract it always had.
func repeatsOf(n int) int {
	if n <= 1 {
		return 0
	}
	return n
}

// targetMetForAgent is whether the agent is told the incumbent reaches the
// target. Under the reusable holdout it never is: the answer compares the
// exact validation mean with the target, one bit outside the mechanism's
// noise each time the incumbent moves; the operator judges the target
// (fapo session, fapo final).
func targetMetForAgent(st *session.State) bool {
	return st.Reusable() == nil && st.TargetMet()
}
