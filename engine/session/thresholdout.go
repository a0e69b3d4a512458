package session

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
)

// Thresholdout is the reusable holdout of Dwork, Feldman, Hardt, Pitassi,
// Reingold and Roth ("The reusable holdout", Science 349, 2015). Every
// query is answered with the training value unless it differs from the
// holdout value by more than a noisy threshold; only then is a noisy
// holdout value released, and each such release spends the budget. An
// analyst who adapts to the answers learns about the holdout only through
// those few releases, so the validation split can be reused many times
// without the winner being an accident of it.
type Thresholdout struct {
	// Threshold (T) is how far training and holdout values may differ
	// before the holdout is consulted, in the units of the queries.
	Threshold float64 `json:"threshold"`
	// Sigma (σ) scales the Laplace noise: Lap(2σ) on the threshold, Lap(4σ)
	// on each comparison, Lap(σ) on each released value.
	Sigma float64 `json:"sigma"`
	// Budget (B) is how many answers may come from the holdout.
	Budget int `json:"budget"`
}

// Valid reports a configuration the mechanism cannot run with.
func (th Thresholdout) Valid() error {
	switch {
	case !(th.Threshold > 0) || math.IsInf(th.Threshold, 0):
		return fmt.Errorf("thresholdout threshold %v: must be a positive number (score points, e.g. 4)", th.Threshold)
	case !(th.Sigma > 0) || math.IsInf(th.Sigma, 0):
		return fmt.Errorf("thresholdout sigma %v: must be a positive number (score points, e.g. 1)", th.Sigma)
	case th.Budget < 1:
		return fmt.Errorf("thresholdout budget %d: must be at least 1 answer from the holdout", th.Budget)
	}
	return nil
}

// ReusableAnswer is one answer of the mechanism.
type ReusableAnswer struct {
	// Answer is the value released: the training value, or a noisy holdout
	// value.
	Answer float64 `json:"answer" jsonschema:"the mechanism's noisy answer for the mean difference"`
	// FromHoldout is set when the holdout was consulted (and the budget
	// spent); the analyst could tell anyway, knowing the training value.
	FromHoldout bool `json:"from_holdout" jsonschema:"the answer came from the holdout, not the train estimate"`
	// Query numbers the mechanism's queries from 1.
	Query int `json:"query" jsonschema:"this query's number"`
	// BudgetLeft is how many more answers may come from the holdout.
	BudgetLeft int `json:"budget_left" jsonschema:"holdout answers left"`
}

// ErrHoldoutSpent refuses a query once every holdout answer is used.
var ErrHoldoutSpent = errors.New("the reusable holdout's budget is spent: every answer it may draw from validation has been given; the incumbent stands, and a fresh validation split (a new seal) or a new session is the operator's decision")

// ThresholdoutState is the mechanism's position: how many queries it has
// answered and how many of them from the holdout. With the seed it fixes
// every noise draw, so a replayed journal gives the same answers.
type ThresholdoutState struct {
	Config  Thresholdout
	Seed    int64
	Queries int
	Spent   int
}

// Ask answers one query whose value is train on the training data and
// holdout on the holdout.
func (s *ThresholdoutState) Ask(train, holdout float64) (ReusableAnswer, error) {
	if err := s.Config.Valid(); err != nil {
		return ReusableAnswer{}, err
	}
	if s.Spent >= s.Config.Budget {
		return ReusableAnswer{}, ErrHoldoutSpent
	}
	sigma := s.Config.Sigma
	// The threshold is redrawn after every release (the sparse vector
	// technique), so its draw is indexed by releases so far.
	tHat := s.Config.Threshold + laplace(s.rng(1, s.Spent), 2*sigma)
	q := s.rng(2, s.Queries)
	eta := laplace(q, 4*sigma)
	s.Queries++
	a := ReusableAnswer{Answer: train, Query: s.Queries}
	if math.Abs(holdout-train) > tHat+eta {
		s.Spent++
		a.Answer, a.FromHoldout = holdout+laplace(q, sigma), true
	}
	a.BudgetLeft = s.Config.Budget - s.Spent
	return a, nil
}

// rng is the noise stream of one draw: PCG is specified bit for bit, so a
// seed gives the same answers on every platform and Go release.
func (s *ThresholdoutState) rng(stream, index int) *rand.Rand {
	// The seed is a secret of the sealed store's (the caller sets it, see
	// loop's thresholdoutSeed), never the scope's bootstrap seed, which the
	// agent reads; the stream only has to be reproducible from it.
	return rand.New(rand.NewPCG(uint64(s.Seed), uint64(stream)<<32|uint64(index))) //nolint:gosec // G404: secret seed, see above
}

// laplace draws from the Laplace distribution with scale b by inversion.
func laplace(r *rand.Rand, b float64) float64 {
	u := r.Float64() - 0.5
	return -b * math.Copysign(1, u) * math.Log(1-2*math.Abs(u))
}

// Reusable is the mechanism as the session's comparisons have left it;
// nil when the session does not use the reusable holdout.
func (st *State) Reusable() *ThresholdoutState {
	th := st.Scope.Acceptance.Thresholdout
	if th == nil {
		return nil
	}
	s := &ThresholdoutState{Config: *th} // Seed: the caller's secret
	for _, c := range st.Comparisons {
		if r := c.Decision.Reusable; r != nil {
			s.Queries++
			if r.FromHoldout {
				s.Spent++
			}
		}
	}
	return s
}

// CompareReusable decides through the reusable holdout: the query is the
// mean score difference, trainDelta its value on the training split (from
// the server's own train runs) and holdoutDelta on validation. Only the
// mechanism's answer is reported; the exact validation statistics, which
// would bypass it, are withheld.
func CompareReusable(s *ThresholdoutState, trainDelta, holdoutDelta float64, n int, rule string, comparisonsSoFar int) (Decision, error) {
	a, err := s.Ask(trainDelta, holdoutDelta)
	if err != nil {
		return Decision{}, err
	}
	d := Decision{N: n, Delta: a.Answer, Rule: rule, Comparisons: comparisonsSoFar + 1, Reusable: &a, // no Seed: it is the noise's secret
		SignTestP: 1, AdjustedP: 1, Accept: a.Answer > 0}
	verdict := "rejected"
	if d.Accept {
		verdict = "accepted"
	}
	src := "the training difference (validation agreed within the noisy threshold)"
	if a.FromHoldout {
		src = "a noisy validation difference (validation disagreed with train, so one holdout answer was spent)"
	}
	d.Reason = fmt.Sprintf("%s by the reusable holdout (Thresholdout): the answered mean difference %+.4f is %s 0; it is %s; %d holdout answers left; validation comparison %d of this session",
		verdict, a.Answer, map[bool]string{true: "above", false: "not above"}[d.Accept], src, a.BudgetLeft, d.Comparisons)
	return d, nil
}
