package session

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fapo-dev/fapo/engine/variant"
)

// Usage is what a session has consumed of its budget.
type Usage struct {
	Variants        int     `json:"variants"`
	ValidationEvals int     `json:"validation_evals"`
	USD             float64 `json:"usd"`
}

// Left is what remains of a budget; never negative.
type Left struct {
	Variants        int     `json:"variants"`
	ValidationEvals int     `json:"validation_evals"`
	USD             float64 `json:"usd"`
	// USDLimited is false when the budget sets no limit on money.
	USDLimited bool `json:"usd_limited"`
}

// Left is the budget minus what has been used.
func (b Budget) Left(used Usage) Left {
	l := Left{
		Variants:        max(b.MaxVariants-used.Variants, 0),
		ValidationEvals: max(b.MaxValidationEvals-used.ValidationEvals, 0),
		USDLimited:      b.MaxUSD > 0,
	}
	if l.USDLimited {
		l.USD = max(b.MaxUSD-used.USD, 0)
	}
	return l
}

func (l Left) String() string {
	return l.parts("variants", "validation", "usd") + " left"
}

// parts lists the named resources left, "a, b and c".
func (l Left) parts(which ...string) string {
	var ps []string
	for _, w := range which {
		switch w {
		case "variants":
			ps = append(ps, plural(l.Variants, "variant", "variants"))
		case "validation":
			ps = append(ps, plural(l.ValidationEvals, "validation evaluation", "validation evaluations"))
		case "usd":
			if l.USDLimited {
				ps = append(ps, fmt.Sprintf("$%.2f", l.USD))
			}
		}
	}
	if len(ps) == 0 {
		return "nothing"
	}
	if len(ps) == 1 {
		return ps[0]
	}
	return strings.Join(ps[:len(ps)-1], ", ") + " and " + ps[len(ps)-1]
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// BudgetError is a refusal because the session's budget does not cover a
// request. Its message says what is left of the rest.
type BudgetError struct {
	// Resource is "variants", "validation_evals" or "usd".
	Resource string
	Left     Left
	msg      string
}

func (e *BudgetError) Error() string { return e.msg }

// Aggregate is one evaluation result of a variant.
type Aggregate struct {
	Variant variant.ID `json:"variant"`
	Split   string     `json:"split"`
	Value   float64    `json:"value"`
	Cases   int        `json:"cases"`
	// Errored counts train cases that got no answer because of the
	// infrastructure; Value and Cases are over the scored ones. A
	// validation aggregate has none: an incomplete run is no result.
	Errored int `json:"errored,omitempty"`
	// SD is the standard deviation of the per-case scores of a train run,
	// recorded with it so that an estimate of power made later needs
	// nothing from the run's case log in the workspace but a match.
	SD  *float64 `json:"sd,omitempty"`
	Run string   `json:"run,omitempty"`
	// Model is the task model ([models.NAME]) a validation result ran on;
	// "" is [model].
	Model string `json:"model,omitempty"`
	// USDPerCase and LatencyP50MS are what one evaluation of a case cost
	// (at the tenant's prices, cache hits priced like calls) and took, on
	// a validation result: aggregates, for the Explorer's score-against-
	// cost plot.
	USDPerCase   float64   `json:"usd_per_case,omitempty"`
	LatencyP50MS float64   `json:"latency_p50_ms,omitempty"`
	Seq          int64     `json:"seq"`
	Time         time.Time `json:"time"`
}

// Review is one verdict of the review gate on a variant.
type Review struct {
	Passed   bool   `json:"passed"`
	Findings int    `json:"findings"`
	Summary  string `json:"summary,omitempty"`
	Seq      int64  `json:"seq"`
}

// Dominant is the dominant failure cluster of the latest train attribution
// and the cheapest level that can address it.
type Dominant struct {
	Class string        `json:"class"`
	Step  string        `json:"step"`
	Level variant.Level `json:"level"`
	Share float64       `json:"share,omitempty"` // fraction of failed cases in the cluster
	Run   string        `json:"run,omitempty"`
	// Variant is the variant the attributed run evaluated.
	Variant string `json:"variant,omitempty"`
	// Clusters names every cluster of that attribution ("format@answer"),
	// largest first: what a proposal's target cluster may name.
	Clusters []string `json:"clusters,omitempty"`
}

// Cluster names the cluster the way reports do: "reasoning @ answer".
func (d Dominant) Cluster() string { return d.Class + " @ " + d.Step }

// Proposed is a variant proposed in the session.
type Proposed struct {
	ID            variant.ID    `json:"id"`
	Parent        variant.ID    `json:"parent"`
	Level         variant.Level `json:"level"`
	TargetCluster string        `json:"target_cluster,omitempty"`
}

// Comparison is one recorded compare decision.
type Comparison struct {
	Candidate variant.ID    `json:"candidate"`
	Incumbent variant.ID    `json:"incumbent"`
	Level     variant.Level `json:"level"`
	Decision  Decision      `json:"decision"`
}

// State is a session as derived from its journal entries. It is rebuilt by
// replay on every use, so it is always what the journal says and a restart
// loses nothing.
type State struct {
	Scope     Scope
	Used      Usage
	Incumbent variant.ID
	Proposed  []Proposed
	// History is every validation aggregate, in journal order.
	History []Aggregate
	// Train is every train aggregate, in journal order.
	Train       []Aggregate
	Reviews     map[variant.ID][]Review
	Comparisons []Comparison
	// NonImproving counts, per level, the compares of candidates at that
	// level since the last accepted one.
	NonImproving map[variant.Level]int
	// Dominant is the latest train attribution's dominant cluster; nil until
	// one is recorded. Its Class and Level are empty when nothing failed, its
	// Level alone when the dominant failures are infrastructure.
	Dominant *Dominant
	// AttributedRuns are the train runs an attribution was recorded for.
	AttributedRuns map[string]bool
	// Unlocked holds the levels above the cheapest that have been open at
	// some point of the session: a level once unlocked stays unlocked, so a
	// later attribution whose dominant cluster is cheaper does not refuse a
	// proposal the agent planned on the strength of the earlier one.
	Unlocked map[variant.Level]bool
	// LastSeq is the journal position the state reflects.
	LastSeq int64
	// Locked is set while the session is locked for the operator.
	Locked *Lock
}

// Replay derives the state of the session sc from the journal entries (all
// entries of the tenant; other sessions' are skipped).
func Replay(sc Scope, entries []Entry) (*State, error) {
	st := &State{
		Scope:          sc,
		Incumbent:      variant.Baseline,
		Reviews:        map[variant.ID][]Review{},
		NonImproving:   map[variant.Level]int{},
		Unlocked:       map[variant.Level]bool{},
		AttributedRuns: map[string]bool{},
	}
	for _, e := range entries {
		if e.Session != sc.ID {
			continue
		}
		if err := st.apply(e); err != nil {
			return nil, err
		}
		switch e.Kind {
		case KindAttributed, KindAccepted, KindRejected:
			for _, l := range st.Scope.AllowedLevels {
				if !st.Unlocked[l] && st.opensNow(l) {
					st.Unlocked[l] = true
				}
			}
		}
	}
	return st, nil
}

func (st *State) apply(e Entry) error {
	st.LastSeq = e.Seq
	v := variant.ID(e.Variant)
	switch e.Kind {
	case KindProposed:
		var p Proposed
		if err := fromData(e, &p); err != nil {
			return err
		}
		p.ID = v
		st.Proposed = append(st.Proposed, p)
		st.Used.Variants++
	case KindCharged, KindSpent:
		var c Charge
		if err := fromData(e, &c); err != nil {
			return err
		}
		st.Used.ValidationEvals += c.ValidationEvals
		st.Used.USD += c.USD
	case KindReviewed:
		var r Review
		if err := fromData(e, &r); err != nil {
			return err
		}
		r.Seq = e.Seq
		st.Reviews[v] = append(st.Reviews[v], r)
	case KindEvaluated:
		var a Aggregate
		if err := fromData(e, &a); err != nil {
			return err
		}
		a.Variant, a.Seq, a.Time = v, e.Seq, e.Time
		if a.Split == SplitValidation {
			st.History = append(st.History, a)
		} else {
			st.Train = append(st.Train, a)
		}
	case KindLocked, KindUnlocked:
		return st.applyLock(e)
	case KindAttributed:
		var d Dominant
		if err := fromData(e, &d); err != nil {
			return err
		}
		st.Dominant = &d
		st.AttributedRuns[d.Run] = true
	case KindAccepted, KindRejected:
		var c Comparison
		if err := fromData(e, &c); err != nil {
			return err
		}
		st.Comparisons = append(st.Comparisons, c)
		if e.Kind == KindAccepted {
			st.Incumbent = c.Candidate
			st.NonImproving[c.Level] = 0
		} else {
			st.NonImproving[c.Level]++
		}
	}
	return nil
}

// Left is the budget left.
func (st *State) Left() Left { return st.Scope.Budget.Left(st.Used) }

// LevelOf is the level a variant of this session was proposed at; the
// baseline and unknown variants give "".
func (st *State) LevelOf(id variant.ID) variant.Level {
	for _, p := range st.Proposed {
		if p.ID == id {
			return p.Level
		}
	}
	return ""
}

// LatestReview is the newest review verdict of a variant.
func (st *State) LatestReview(id variant.ID) (Review, bool) {
	rs := st.Reviews[id]
	if len(rs) == 0 {
		return Review{}, false
	}
	return rs[len(rs)-1], true
}

// Validation is the validation aggregate of a variant over the session's
// task models: with one model its result; with several, their mean, once
// every model has a result.
func (st *State) Validation(id variant.ID) (Aggregate, bool) {
	models := st.Scope.Acceptance.Models()
	var out Aggregate
	for i, m := range models {
		a, ok := st.ValidationOn(id, m)
		if !ok {
			return Aggregate{}, false
		}
		if i == 0 {
			out = a
			out.Value = 0
		}
		out.Value += a.Value / float64(len(models))
	}
	if len(models) > 1 {
		out.Model = ""
	}
	return out, true
}

// ValidationOn is the latest validation aggregate of a variant on one task
// model ("" is [model]).
func (st *State) ValidationOn(id variant.ID, model string) (Aggregate, bool) {
	for i := len(st.History) - 1; i >= 0; i-- {
		if a := st.History[i]; a.Variant == id && a.Model == model {
			return a, true
		}
	}
	return Aggregate{}, false
}

// TargetMet reports whether the incumbent's validation aggregate reaches the
// target.
func (st *State) TargetMet() bool {
	a, ok := st.Validation(st.Incumbent)
	return ok && a.Value >= st.Scope.Target.Min
}

// budgetCheck refuses a request of more variants, validation evaluations or
// USD than are left, naming the first resource that falls short.
func (st *State) budgetCheck(variants, evals int, usd float64) *BudgetError {
	b, used, left := st.Scope.Budget, st.Used, st.Left()
	switch {
	case variants > 0 && used.Variants+variants > b.MaxVariants:
		return &BudgetError{Resource: "variants", Left: left, msg: fmt.Sprintf(
			"variant budget spent: %d of %d variants proposed; %s left; compare what you have, or start a new session with a larger budget",
			used.Variants, b.MaxVariants, left.parts("validation", "usd"))}
	case evals > 0 && used.ValidationEvals+evals > b.MaxValidationEvals:
		return &BudgetError{Resource: "validation_evals", Left: left, msg: fmt.Sprintf(
			"validation budget spent: %d of %d evaluations used; %s left; the incumbent stands unless a new session grants more",
			used.ValidationEvals, b.MaxValidationEvals, left.parts("variants", "usd"))}
	case usd > 0 && b.MaxUSD > 0 && used.USD+usd > b.MaxUSD:
		return &BudgetError{Resource: "usd", Left: left, msg: fmt.Sprintf(
			"USD budget would be exceeded: $%.2f of $%.2f spent and this needs $%.2f; %s left; evaluate on fewer cases or start a new session with a larger budget",
			used.USD, b.MaxUSD, usd, left.parts("variants", "validation"))}
	}
	return nil
}

// usdSpent refuses further model spend once the USD budget is used up; an
// estimate is not always known in advance, so this is the check then.
func (st *State) usdSpent() *BudgetError {
	b, used, left := st.Scope.Budget, st.Used, st.Left()
	if b.MaxUSD > 0 && used.USD >= b.MaxUSD {
		return &BudgetError{Resource: "usd", Left: left, msg: fmt.Sprintf(
			"USD budget spent: $%.2f of $%.2f used; %s left, but every evaluation costs money; start a new session with a larger budget",
			used.USD, b.MaxUSD, left.parts("variants", "validation"))}
	}
	return nil
}

// LockedError is a refusal of a proposal level by the escalation policy.
type LockedError struct {
	Level variant.Level
	msg   string
}

func (e *LockedError) Error() string { return e.msg }

// Allowed applies the escalation policy: the cheapest allowed level is
// always open; a higher one opens when the level below it is open and
// exhausted (Patience consecutive non-improving compares), or when the
// latest train attribution says the dominant failures are addressable only
// at that level or above. A refusal says exactly what would unlock it.
func (st *State) Allowed(level variant.Level) error {
	if err := st.lockedErr(); err != nil {
		return err
	}
	if _, err := variant.ParseLevel(string(level)); err != nil {
		return err
	}
	allowed := st.Scope.AllowedLevels
	i := slices.Index(allowed, level)
	if i < 0 {
		return &LockedError{Level: level, msg: fmt.Sprintf(
			"%s is outside this session's scope (allowed levels: %s); start a new session to allow it",
			level, variant.JoinLevels(allowed))}
	}
	if i == 0 || st.Unlocked[level] || st.dominantReaches(level) {
		return nil
	}
	prev := allowed[i-1]
	prevErr := st.Allowed(prev)
	used, patience := st.NonImproving[prev], st.Scope.Patience
	if prevErr == nil && used >= patience {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s is locked: %d of %d non-improving %s variants so far", level, used, patience, prev)
	if prevErr != nil {
		fmt.Fprintf(&b, " and %s itself is still locked", prev)
	}
	switch {
	case st.Dominant == nil:
		b.WriteString(", and no train attribution has been recorded yet")
	case st.Dominant.Level == "":
		b.WriteString(", and the latest train attribution points to no level")
	default:
		fmt.Fprintf(&b, ", and the dominant failure cluster (%s) is addressable at %s level", st.Dominant.Cluster(), st.Dominant.Level)
	}
	var conds []string
	if prevErr != nil {
		conds = append(conds, prev.String()+" unlocks")
	}
	if left := patience - used; left > 0 {
		conds = append(conds, plural(left, "more non-improving "+prev.String()+" compare", "more non-improving "+prev.String()+" compares"))
	}
	fmt.Fprintf(&b, "; it unlocks after %s, or when a train attribution finds the dominant failures addressable only at %s or above",
		strings.Join(conds, " and "), level)
	return &LockedError{Level: level, msg: b.String()}
}

// opensNow is whether the escalation policy opens level on the state as
// it stands, ignoring the session lock (a lock pauses, it does not relock).
func (st *State) opensNow(level variant.Level) bool {
	lock := st.Locked
	st.Locked = nil
	defer func() { st.Locked = lock }()
	return st.Allowed(level) == nil
}

func (st *State) dominantReaches(level variant.Level) bool {
	return st.Dominant != nil && st.Dominant.Level.Rank() >= level.Rank()
}

// OpenLevels lists the levels a proposal may use now, cheapest first.
func (st *State) OpenLevels() []variant.Level {
	var out []variant.Level
	for _, l := range st.Scope.AllowedLevels {
		if st.Allowed(l) == nil {
			out = append(out, l)
		}
	}
	return out
}

// CurrentLevel is the highest level open now.
func (st *State) CurrentLevel() variant.Level {
	open := st.OpenLevels()
	if len(open) == 0 {
		return ""
	}
	return open[len(open)-1]
}
