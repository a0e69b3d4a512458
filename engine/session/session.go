package session

import (
	"database/sql"
	"fmt"
	"math"
	"strconv"
	"time"

	refuse "github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/variant"
)

// Splits an evaluation may be recorded for. The test split never passes
// through a session: `fapo final` journals it on its own.
const (
	SplitTrain      = "train"
	SplitValidation = "validation"
)

// Session is an open session: its contract and the journal its state is
// derived from. Methods that change the state run as journal transactions,
// so checks and the entry they allow are atomic even across processes.
type Session struct {
	Scope   Scope
	journal *Journal
}

// CreateSession validates sc, gives it the next session id and stores its
// contract and the session_started entry in one transaction: a failure
// leaves no session, and two processes never get the same id.
func CreateSession(j *Journal, sc Scope) (*Session, error) {
	s, _, err := StartSession(j, func() (Scope, error) { return sc, nil }, false)
	return s, err
}

// StartSession creates a session with the contract scope returns, unless
// resume is set and the tenant has a session already: then that one is
// returned unchanged (resumed) and scope is not called. The check and the
// creation are one transaction, so simultaneous starts, in one process or
// several, yield exactly one session.
func StartSession(j *Journal, scope func() (Scope, error), resume bool) (s *Session, resumed bool, err error) {
	err = j.write(func(tx *sql.Tx) error {
		if n := len(j.sessions); resume && n > 0 {
			s, resumed = &Session{Scope: j.sessions[n-1], journal: j}, true
			return nil
		}
		sc, err := scope()
		if err != nil {
			return err
		}
		if sc.ID != "" {
			return fmt.Errorf("scope already has id %q: session ids are allocated by CreateSession; leave it empty", sc.ID)
		}
		if err := sc.normalize(); err != nil {
			return err
		}
		if sc.Created.IsZero() {
			sc.Created = j.now()
		}
		sc.Created = sc.Created.UTC().Round(0)
		n := 1
		if k := len(j.sessions); k > 0 {
			last, _ := strconv.Atoi(j.sessions[k-1].ID[1:])
			n = last + 1
		}
		sc.ID = formatSessionID(n)
		if err := j.insertSession(tx, sc); err != nil {
			return err
		}
		if _, err := j.insert(tx, []Entry{{Kind: KindSessionStarted, Session: sc.ID, Data: toData(sc)}}); err != nil {
			return err
		}
		s = &Session{Scope: sc, journal: j}
		return nil
	})
	if err != nil {
		return nil, false, err
	}
	return s, resumed, nil
}

// LoadSession opens an existing session of the journal's tenant.
func LoadSession(j *Journal, id string) (*Session, error) {
	if _, err := ParseSessionID(id); err != nil {
		return nil, err
	}
	sessions, err := j.Sessions()
	if err != nil {
		return nil, err
	}
	for _, sc := range sessions {
		if sc.ID == id {
			return &Session{Scope: sc, journal: j}, nil
		}
	}
	return nil, refuse.New(refuse.StartSession, j.tenant, fmt.Sprintf("session %s of %s does not exist", id, j.tenant))
}

// ActiveSession opens the latest session of the tenant.
func ActiveSession(j *Journal) (*Session, error) {
	sessions, err := j.Sessions()
	if err != nil {
		return nil, err
	}
	if len(sessions) == 0 {
		return nil, ErrNoSession
	}
	return &Session{Scope: sessions[len(sessions)-1], journal: j}, nil
}

// ErrNoSession says a tenant has no session yet.
var ErrNoSession error = refuse.New(refuse.StartSession, "", "no session has been started for this tenant")

// ID is the session id.
func (s *Session) ID() string { return s.Scope.ID }

// State replays the journal into the session's current state.
func (s *Session) State() (*State, error) {
	entries, _, err := s.journal.snapshot()
	if err != nil {
		return nil, err
	}
	return Replay(s.Scope, entries)
}

// transact runs decide against the state as of now and appends what it
// returns (also with its error, so refusals are journaled), all in one
// write transaction of the state database.
func (s *Session) transact(decide func(st *State) ([]Entry, error)) error {
	return s.journal.update(func(all []Entry) ([]Entry, error) {
		st, err := Replay(s.Scope, all)
		if err != nil {
			return nil, err
		}
		add, err := decide(st)
		for i := range add {
			add[i].Session = s.ID()
		}
		return add, err
	}, nil)
}

// Charge is spending requested before it happens.
type Charge struct {
	ValidationEvals int     `json:"validation_evals,omitempty"`
	USD             float64 `json:"usd,omitempty"`
	Reason          string  `json:"reason,omitempty"`
	Variant         string  `json:"-"`
}

func (c Charge) valid() error {
	if c.ValidationEvals < 0 || c.USD < 0 || math.IsNaN(c.USD) || math.IsInf(c.USD, 0) {
		return fmt.Errorf("charge of %d validation evaluations and $%v: amounts must be finite and not negative", c.ValidationEvals, c.USD)
	}
	return nil
}

// Charge journals spending if the budget covers it, and refuses (journaling
// the refusal) with a *BudgetError that says what is left when it does not.
func (s *Session) Charge(c Charge) error {
	if err := c.valid(); err != nil {
		return err
	}
	return s.transact(func(st *State) ([]Entry, error) {
		if berr := st.budgetCheck(0, c.ValidationEvals, c.USD); berr != nil {
			return []Entry{refusal(c.Variant, berr)}, berr
		}
		return []Entry{{Kind: KindCharged, Variant: c.Variant, Data: toData(c)}}, nil
	})
}

// Spend journals money already spent (the cost of a finished run is known
// only afterwards). It never refuses; the next request sees the budget.
func (s *Session) Spend(usd float64, v variant.ID, reason string) error {
	c := Charge{USD: usd, Reason: reason}
	if err := c.valid(); err != nil {
		return err
	}
	_, err := s.journal.Append(Entry{Kind: KindSpent, Session: s.ID(), Variant: string(v), Data: toData(c)})
	return err
}

func refusal(v string, berr *BudgetError) Entry {
	return Entry{Kind: KindBudgetRefused, Variant: v, Data: map[string]any{"resource": berr.Resource, "message": berr.Error()}}
}

// Propose admits a proposal at level: it checks the escalation policy and
// the variant budget, calls create (which writes the variant) and journals
// it, all under the journal's lock, so two concurrent proposals can never
// both take the last variant of the budget. Refusals are journaled.
func (s *Session) Propose(level variant.Level, create func() (*variant.Variant, error)) (*variant.Variant, error) {
	var v *variant.Variant
	err := s.transact(func(st *State) ([]Entry, error) {
		if err := st.Allowed(level); err != nil {
			return []Entry{{Kind: KindLevelRefused, Data: map[string]any{"level": level, "message": err.Error()}}}, err
		}
		if berr := st.budgetCheck(1, 0, 0); berr != nil {
			return []Entry{refusal("", berr)}, berr
		}
		if berr := st.usdSpent(); berr != nil {
			return []Entry{refusal("", berr)}, berr
		}
		var err error
		if v, err = create(); err != nil {
			return nil, err
		}
		if v.Manifest.Level != level {
			return nil, fmt.Errorf("variant %s was written at level %q but proposed at %q", v.ID, v.Manifest.Level, level)
		}
		p := Proposed{ID: v.ID, Parent: v.Manifest.Parent, Level: level, TargetCluster: v.Manifest.TargetCluster}
		return []Entry{{Kind: KindProposed, Variant: string(v.ID), Data: toData(p)}}, nil
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

// RecordReview journals a review verdict.
func (s *Session) RecordReview(v variant.ID, passed bool, findings int, summary string) error {
	return s.transact(func(st *State) ([]Entry, error) {
		if err := st.proposedHere(v); err != nil {
			return nil, err
		}
		r := Review{Passed: passed, Findings: findings, Summary: summary}
		return []Entry{{Kind: KindReviewed, Variant: string(v), Data: toData(r)}}, nil
	})
}

// AuthorizeValidation decides whether v may be evaluated on validation now,
// charging nothing: a variant already evaluated returns its recorded
// aggregate; a variant that has not passed review is refused; otherwise
// the budget must cover one validation evaluation. The charge comes with
// the result, in RecordValidation, so a run that never finishes (killed,
// cancelled, a full disk, a provider outage) costs nothing. The baseline
// needs no review: it is the tenant's own chain.
func (s *Session) AuthorizeValidation(v variant.ID) (cached *Aggregate, err error) {
	return s.AuthorizeValidationOn(v, "")
}

// AuthorizeValidationOn is AuthorizeValidation for one task model ("" is
// [model]): each task model's result is its own validation evaluation.
func (s *Session) AuthorizeValidationOn(v variant.ID, model string) (cached *Aggregate, err error) {
	err = s.transact(func(st *State) ([]Entry, error) {
		if err := st.lockedErr(); err != nil {
			return nil, err
		}
		if a, ok := st.ValidationOn(v, model); ok {
			cached = &a
			return nil, nil
		}
		if err := st.reviewedForValidation(v); err != nil {
			return nil, err
		}
		if berr := st.usdSpent(); berr != nil {
			return []Entry{refusal(string(v), berr)}, berr
		}
		if berr := st.budgetCheck(0, 1, 0); berr != nil {
			return []Entry{refusal(string(v), berr)}, berr
		}
		return nil, nil
	})
	return cached, err
}

func (st *State) reviewedForValidation(v variant.ID) error {
	if v == variant.Baseline {
		return nil
	}
	if err := st.proposedHere(v); err != nil {
		return err
	}
	r, ok := st.LatestReview(v)
	if !ok {
		return refuse.New(refuse.Review, string(v), fmt.Sprintf("variant %s is pending review; only reviewed variants reach validation", v))
	}
	if !r.Passed {
		return fmt.Errorf("variant %s failed review (%d findings): fix them in a new variant; a failed variant never reaches validation", v, r.Findings)
	}
	return nil
}

// RecordValidation records the aggregate of a complete validation run and
// charges one validation evaluation (and the run's usd) in one
// transaction: a result is charged exactly once, and nothing is charged
// without a result. When another process recorded a result for v
// meanwhile, that one stands and is returned with charged false; the
// duplicate run's money is journaled as spent, but no evaluation is
// charged. The review and budget checks of AuthorizeValidation are made
// again, as of now.
func (s *Session) RecordValidation(a Aggregate, usd float64) (recorded Aggregate, charged bool, err error) {
	a.Split = SplitValidation
	if err := a.valid(); err != nil {
		return Aggregate{}, false, err
	}
	on := ""
	if a.Model != "" {
		on = " on " + a.Model
	}
	c := Charge{ValidationEvals: 1, USD: usd, Reason: "validation evaluation of " + string(a.Variant) + on + " (run " + a.Run + ")"}
	if err := c.valid(); err != nil {
		return Aggregate{}, false, err
	}
	a.Seq, a.Time = 0, time.Time{}
	err = s.transact(func(st *State) ([]Entry, error) {
		if prev, ok := st.ValidationOn(a.Variant, a.Model); ok {
			recorded = prev
			if usd > 0 {
				spent := Charge{USD: usd, Reason: "duplicate validation run " + a.Run + " of " + string(a.Variant)}
				return []Entry{{Kind: KindSpent, Variant: string(a.Variant), Data: toData(spent)}}, nil
			}
			return nil, nil
		}
		// Refused now (the session was locked, a review failed, another
		// process used the last evaluation while this one ran): the run's
		// cost was paid all the same, and is journaled as spent.
		refused := func(err error, entries ...Entry) ([]Entry, error) {
			if usd > 0 {
				spent := Charge{USD: usd, Reason: "validation run " + a.Run + " of " + string(a.Variant) + ", refused when its result was recorded"}
				entries = append(entries, Entry{Kind: KindSpent, Variant: string(a.Variant), Data: toData(spent)})
			}
			return entries, err
		}
		if err := st.lockedErr(); err != nil {
			return refused(err)
		}
		if err := st.reviewedForValidation(a.Variant); err != nil {
			return refused(err)
		}
		if berr := st.budgetCheck(0, 1, 0); berr != nil {
			return refused(berr, refusal(string(a.Variant), berr))
		}
		recorded, charged = a, true
		return []Entry{
			{Kind: KindCharged, Variant: string(a.Variant), Data: toData(c)},
			{Kind: KindEvaluated, Variant: string(a.Variant), Data: toData(a)},
		}, nil
	})
	if err != nil {
		return Aggregate{}, false, err
	}
	return recorded, charged, nil
}

// RecordEvaluation journals the aggregate of a train run. Validation
// aggregates go through RecordValidation, which charges them.
func (s *Session) RecordEvaluation(a Aggregate) error {
	if a.Split != SplitTrain {
		return fmt.Errorf("evaluation split %q: RecordEvaluation records %s runs; validation results are recorded with RecordValidation, which charges them", a.Split, SplitTrain)
	}
	if err := a.valid(); err != nil {
		return err
	}
	a.Seq, a.Time = 0, time.Time{}
	_, err := s.journal.Append(Entry{Kind: KindEvaluated, Session: s.ID(), Variant: string(a.Variant), Data: toData(a)})
	return err
}

func (a Aggregate) valid() error {
	if math.IsNaN(a.Value) || math.IsInf(a.Value, 0) {
		return fmt.Errorf("evaluation of %s: aggregate %v is not a number; check the scorer", a.Variant, a.Value)
	}
	return nil
}

// RecordAttribution journals the dominant failure cluster of a train
// attribution; the escalation policy reads the latest one.
func (s *Session) RecordAttribution(d Dominant) error {
	// An attribution with no level (nothing failed, or the dominant failures
	// are infrastructure) is journaled too: it says the run was attributed.
	if _, err := variant.ParseLevel(string(d.Level)); d.Level != "" && err != nil {
		return fmt.Errorf("attribution: %w", err)
	}
	_, err := s.journal.Append(Entry{Kind: KindAttributed, Session: s.ID(), Data: toData(d)})
	return err
}

// RecordTampered journals a refused tampered variant.
func (s *Session) RecordTampered(te *variant.TamperedError) error {
	_, err := s.journal.Append(Entry{Kind: KindTampered, Session: s.ID(), Variant: string(te.ID),
		Data: map[string]any{"file": te.File, "problem": te.Problem}})
	return err
}

// RecordDecision journals a compare decision and, when it accepts, moves
// the incumbent to the candidate: the only way the incumbent ever moves.
// d must have been computed against the current incumbent with the current
// count of comparisons; otherwise another compare got there first and the
// caller must compare again.
func (s *Session) RecordDecision(candidate, incumbent variant.ID, d Decision) error {
	return s.transact(func(st *State) ([]Entry, error) {
		// Checked here too, not only before the validation runs: a review
		// may have locked the session while they ran.
		if err := st.lockedErr(); err != nil {
			return nil, err
		}
		if incumbent != st.Incumbent {
			return nil, fmt.Errorf("the incumbent is %s, not %s (another compare moved it): compare %s against %s again", st.Incumbent, incumbent, candidate, st.Incumbent)
		}
		if candidate == incumbent {
			return nil, fmt.Errorf("%s is the incumbent: compare a different variant against it", candidate)
		}
		if err := st.proposedHere(candidate); err != nil {
			return nil, err
		}
		if r, ok := st.LatestReview(candidate); !ok || !r.Passed {
			return nil, refuse.New(refuse.Review, string(candidate), fmt.Sprintf("variant %s has not passed review; only reviewed variants are compared", candidate))
		}
		if want := len(st.Comparisons) + 1; d.Comparisons != want {
			return nil, fmt.Errorf("the decision counts %d comparisons but this is comparison %d of the session (another compare was recorded meanwhile): compare again", d.Comparisons, want)
		}
		if d.Rule != st.Scope.Acceptance.Rule {
			return nil, fmt.Errorf("the decision used rule %q but the session's contract says %q: compare again with the contract's rule", d.Rule, st.Scope.Acceptance.Rule)
		}
		kind := KindRejected
		if d.Accept {
			kind = KindAccepted
		}
		c := Comparison{Candidate: candidate, Incumbent: incumbent, Level: st.LevelOf(candidate), Decision: d}
		return []Entry{{Kind: kind, Variant: string(candidate), Data: toData(c)}}, nil
	})
}

func (st *State) proposedHere(v variant.ID) error {
	if st.LevelOf(v) == "" {
		return fmt.Errorf("variant %s was not proposed in session %s: propose it in this session first", v, st.Scope.ID)
	}
	return nil
}
