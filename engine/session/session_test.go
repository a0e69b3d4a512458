package session

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	refuse "github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/variant"
)

func testScope() Scope {
	return Scope{
		Tenant:        "hotpotqa",
		Target:        Target{Metric: "composite_score", Min: 70},
		Budget:        Budget{MaxVariants: 5, MaxValidationEvals: 4, MaxUSD: 2},
		AllowedLevels: []variant.Level{variant.LevelPrompt, variant.LevelParameter, variant.LevelStructural},
		FrozenFiles:   []string{"tenant.toml", "data/**", "scorer/*.py"},
		Patience:      2,
		Acceptance:    Acceptance{Rule: RuleImproves, Bootstrap: 500, Seed: 1},
	}
}

// fixture is a tenant with a baseline variant, a journal and a session.
type fixture struct {
	dir   string
	home  string
	store *variant.Store
	j     *Journal
	s     *Session
}

func newFixture(t *testing.T, edit ...func(*Scope)) *fixture {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() {
		filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	store := variant.Open(dir)
	_, err := store.EnsureBaseline(map[string][]byte{"chain.toml": []byte("[[steps]]\n"), "prompts/answer.md": []byte("Answer.\n")})
	require.NoError(t, err)
	home := t.TempDir()
	j := OpenJournal(openDB(t, home), "hotpotqa", WithMirror(dir))
	sc := testScope()
	for _, e := range edit {
		e(&sc)
	}
	s, err := CreateSession(j, sc)
	require.NoError(t, err)
	return &fixture{dir: dir, home: home, store: store, j: j, s: s}
}

var proposals int

func (f *fixture) propose(t *testing.T, level variant.Level) (*variant.Variant, error) {
	t.Helper()
	proposals++
	return f.s.Propose(level, func() (*variant.Variant, error) {
		return f.store.Create(context.Background(), variant.Proposal{
			Parent: variant.Baseline, Level: level, Rationale: "try", Session: f.s.ID(),
			Files: map[string][]byte{"chain.toml": []byte("[[steps]]\n"), "prompts/answer.md": fmt.Appendf(nil, "Answer %d.\n", proposals)},
		})
	})
}

func (f *fixture) mustPropose(t *testing.T, level variant.Level) variant.ID {
	t.Helper()
	v, err := f.propose(t, level)
	require.NoError(t, err)
	return v.ID
}

// compare records a compare of v against the incumbent that accepts or not.
func (f *fixture) compare(t *testing.T, v variant.ID, accept bool) {
	t.Helper()
	require.NoError(t, f.s.RecordReview(v, true, 0, ""))
	st, err := f.s.State()
	require.NoError(t, err)
	cand, inc := []float64{0.5, 0.5}, []float64{0.5, 0.5}
	if accept {
		cand = []float64{0.6, 0.7}
	}
	d, err := Compare(cand, inc, RuleImproves, 500, 1, st.PriorPValues())
	require.NoError(t, err)
	require.Equal(t, accept, d.Accept)
	require.NoError(t, f.s.RecordDecision(v, st.Incumbent, d))
}

func TestScopeValidation(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*Scope)
		wantErr string
	}{
		{"no tenant", func(s *Scope) { s.Tenant = "" }, "tenant is empty"},
		{"no metric", func(s *Scope) { s.Target.Metric = " " }, "target.metric is empty"},
		{"no variants", func(s *Scope) { s.Budget.MaxVariants = 0 }, "budget.max_variants is 0"},
		{"no evals", func(s *Scope) { s.Budget.MaxValidationEvals = -1 }, "budget.max_validation_evals is -1"},
		{"negative usd", func(s *Scope) { s.Budget.MaxUSD = -1 }, "budget.max_usd is -1"},
		{"no levels", func(s *Scope) { s.AllowedLevels = nil }, "allowed_levels is empty"},
		{"level typo", func(s *Scope) { s.AllowedLevels = []variant.Level{"structral"} }, `did you mean "structural"`},
		{"level twice", func(s *Scope) { s.AllowedLevels = []variant.Level{"prompt", "prompt"} }, "listed twice"},
		{"frozen absolute", func(s *Scope) { s.FrozenFiles = []string{"/etc/passwd"} }, "frozen file \"/etc/passwd\""},
		{"frozen climbing", func(s *Scope) { s.FrozenFiles = []string{"../x"} }, "clean path relative"},
		{"frozen bad pattern", func(s *Scope) { s.FrozenFiles = []string{"data/[x"} }, "not a valid pattern"},
		{"negative patience", func(s *Scope) { s.Patience = -2 }, "patience is -2"},
		{"rule typo", func(s *Scope) { s.Acceptance.Rule = "improve" }, `did you mean "improves"`},
		{"few resamples", func(s *Scope) { s.Acceptance.Bootstrap = 5 }, "at least 100"},
		{"id given", func(s *Scope) { s.ID = "s0009" }, "allocated by CreateSession"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			sc := testScope()
			tt.edit(&sc)
			j := OpenJournal(openDB(t, ""), "t", WithMirror(dir))
			_, err := CreateSession(j, sc)
			require.ErrorContains(t, err, tt.wantErr)
			sessions, err := j.Sessions()
			require.NoError(t, err)
			require.Empty(t, sessions, "a refused scope stores nothing")
			_, statErr := os.Stat(filepath.Join(dir, SessionsDir))
			require.True(t, os.IsNotExist(statErr), "a refused scope writes nothing")
		})
	}

	t.Run("all errors at once", func(t *testing.T) {
		_, err := CreateSession(OpenJournal(openDB(t, ""), "t"), Scope{})
		for _, want := range []string{"tenant is empty", "target.metric", "max_variants", "max_validation_evals", "allowed_levels"} {
			require.ErrorContains(t, err, want)
		}
	})
}

func TestCreateSession(t *testing.T) {
	dir := t.TempDir()
	j := OpenJournal(openDB(t, ""), "hotpotqa", WithMirror(dir))
	_, err := ActiveSession(j)
	require.ErrorIs(t, err, ErrNoSession)

	sc := testScope()
	sc.AllowedLevels = []variant.Level{variant.LevelStructural, variant.LevelPrompt}
	sc.Patience, sc.Acceptance = 0, Acceptance{}
	s1, err := CreateSession(j, sc)
	require.NoError(t, err)
	require.Equal(t, "s0001", s1.ID())
	require.Equal(t, []variant.Level{"prompt", "structural"}, s1.Scope.AllowedLevels, "levels are kept cheapest first")
	require.Equal(t, DefaultPatience, s1.Scope.Patience)
	require.Equal(t, Acceptance{Rule: RuleImproves, Bootstrap: DefaultBootstrap}, s1.Scope.Acceptance)
	require.False(t, s1.Scope.Created.IsZero())

	// The workspace gets a readable copy of the contract.
	raw, err := os.ReadFile(filepath.Join(dir, "sessions", "s0001", "scope.json"))
	require.NoError(t, err)
	var mirrored Scope
	require.NoError(t, json.Unmarshal(raw, &mirrored))
	require.Equal(t, s1.Scope, mirrored)

	entries := readAll(t, j)
	require.Len(t, entries, 1)
	require.Equal(t, KindSessionStarted, entries[0].Kind)
	require.Equal(t, "s0001", entries[0].Session)

	s2, err := CreateSession(j, testScope())
	require.NoError(t, err)
	require.Equal(t, "s0002", s2.ID())

	active, err := ActiveSession(j)
	require.NoError(t, err)
	require.Equal(t, s2.Scope, active.Scope)
	loaded, err := LoadSession(j, "s0001")
	require.NoError(t, err)
	require.Equal(t, s1.Scope, loaded.Scope)

	// A session directory in the workspace is no session: the next id is
	// the database's.
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sessions", "s0003"), 0o755))
	active, err = ActiveSession(j)
	require.NoError(t, err)
	require.Equal(t, "s0002", active.ID())
	s3, err := CreateSession(j, testScope())
	require.NoError(t, err)
	require.Equal(t, "s0003", s3.ID())
}

func TestCreateSessionConcurrent(t *testing.T) {
	home := t.TempDir()
	ids := make(chan string, 8)
	var wg sync.WaitGroup
	for range 8 {
		j := OpenJournal(openDB(t, home), "hotpotqa")
		wg.Go(func() {
			s, err := CreateSession(j, testScope())
			require.NoError(t, err)
			ids <- s.ID()
		})
	}
	wg.Wait()
	close(ids)
	seen := map[string]bool{}
	for id := range ids {
		require.False(t, seen[id], id)
		seen[id] = true
	}
	require.Len(t, seen, 8)
}

// TestStartSessionOnce checks that the check "the tenant has a session
// already" and the creation are one transaction: simultaneous starts on
// separate database handles (separate processes) yield one session.
func TestStartSessionOnce(t *testing.T) {
	for round := range 20 {
		home := t.TempDir()
		var wg sync.WaitGroup
		var mu sync.Mutex
		created := 0
		for range 3 {
			j := OpenJournal(openDB(t, home), "hotpotqa")
			wg.Go(func() {
				s, resumed, err := StartSession(j, func() (Scope, error) { return testScope(), nil }, true)
				require.NoError(t, err)
				require.Equal(t, "s0001", s.ID())
				mu.Lock()
				defer mu.Unlock()
				if !resumed {
					created++
				}
			})
		}
		wg.Wait()
		require.Equal(t, 1, created, "round %d", round)
		sessions, err := OpenJournal(openDB(t, home), "hotpotqa").Sessions()
		require.NoError(t, err)
		require.Len(t, sessions, 1, "round %d", round)
	}
}

// TestCreateSessionFailureLeavesNone injects a failure between the two
// inserts of a start (the contract is stored, the session_started entry
// fails, as on a full disk) and checks that no session is left behind and
// the next start succeeds.
func TestCreateSessionFailureLeavesNone(t *testing.T) {
	db := openDB(t, "")
	ctx := context.Background()
	exec := func(stmt string) {
		require.NoError(t, db.Write(ctx, func(tx *sql.Tx) error { _, err := tx.ExecContext(ctx, stmt); return err }))
	}
	exec(`CREATE TRIGGER inject_full_disk BEFORE INSERT ON journal WHEN NEW.kind = 'session_started'
		BEGIN SELECT RAISE(ABORT, 'database or disk is full (injected)'); END`)
	j := OpenJournal(db, "hotpotqa", WithMirror(t.TempDir()))
	_, err := CreateSession(j, testScope())
	require.ErrorContains(t, err, "disk is full (injected)")
	for _, h := range []*Journal{j, OpenJournal(db, "hotpotqa")} {
		_, err = ActiveSession(h)
		require.ErrorIs(t, err, ErrNoSession, "the stored contract was rolled back with the failed entry")
		require.Empty(t, readAll(t, h))
	}
	exec(`DROP TRIGGER inject_full_disk`)
	s, err := CreateSession(j, testScope())
	require.NoError(t, err)
	require.Equal(t, "s0001", s.ID())
	require.Len(t, readAll(t, OpenJournal(db, "hotpotqa")), 1)
}

func TestLoadSessionErrors(t *testing.T) {
	f := newFixture(t)
	for id, want := range map[string]string{
		"../s0001": "invalid session id",
		"s00001":   "did you mean s0001",
		"s0042":    "session s0042 of hotpotqa does not exist",
	} {
		_, err := LoadSession(f.j, id)
		require.ErrorContains(t, err, want, id)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

func mustJSONIndent(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	require.NoError(t, err)
	return b
}

func TestFrozen(t *testing.T) {
	sc := testScope()
	for rel, want := range map[string]bool{
		"tenant.toml":           true,
		"data/train.jsonl":      true,
		"data":                  true,
		"data/deep/x.jsonl":     true,
		"scorer/score.py":       true,
		"scorer/sub/score.py":   false,
		"chain.toml":            false,
		"prompts/answer.md":     false,
		"./tenant.toml":         true,
		"database/notdata.json": false,
	} {
		require.Equal(t, want, sc.Frozen(rel), rel)
	}
}

func TestBudget(t *testing.T) {
	f := newFixture(t)
	st, err := f.s.State()
	require.NoError(t, err)
	require.Equal(t, "5 variants, 4 validation evaluations and $2.00 left", st.Left().String())

	require.NoError(t, f.s.Charge(Charge{USD: 1.5, Reason: "train run"}))
	err = f.s.Charge(Charge{USD: 0.75, Variant: "v0001"})
	var be *BudgetError
	require.ErrorAs(t, err, &be)
	require.Equal(t, "usd", be.Resource)
	require.EqualError(t, err, "USD budget would be exceeded: $1.50 of $2.00 spent and this needs $0.75; 5 variants and 4 validation evaluations left; evaluate on fewer cases or start a new session with a larger budget")

	require.NoError(t, f.s.Charge(Charge{ValidationEvals: 3}))
	require.NoError(t, f.s.Charge(Charge{ValidationEvals: 1}))
	err = f.s.Charge(Charge{ValidationEvals: 1})
	require.EqualError(t, err, "validation budget spent: 4 of 4 evaluations used; 5 variants and $0.50 left; the incumbent stands unless a new session grants more")
	require.ErrorContains(t, f.s.Charge(Charge{USD: -1}), "must be finite and not negative")
	require.ErrorContains(t, f.s.Spend(-1, "", ""), "must be finite and not negative")

	// Money already spent is recorded even past the limit.
	require.NoError(t, f.s.Spend(0.8, variant.Baseline, "train run"))
	st, err = f.s.State()
	require.NoError(t, err)
	require.Equal(t, Usage{ValidationEvals: 4, USD: 2.3}, roundUsage(st.Used))
	require.Equal(t, Left{Variants: 5, USDLimited: true}, st.Left())
	require.Equal(t, "5 variants, 0 validation evaluations and $0.00 left", st.Left().String())
	_, err = f.propose(t, variant.LevelPrompt)
	require.EqualError(t, err, "USD budget spent: $2.30 of $2.00 used; 5 variants and 0 validation evaluations left, but every evaluation costs money; start a new session with a larger budget")

	var refused int
	entries := readAll(t, f.j)
	for _, e := range entries {
		if e.Kind == KindBudgetRefused {
			refused++
			require.NotEmpty(t, e.Data["message"])
		}
	}
	require.Equal(t, 3, refused, "every refusal is journaled")
}

func roundUsage(u Usage) Usage {
	u.USD = float64(int(u.USD*100+0.5)) / 100
	return u
}

func TestVariantBudget(t *testing.T) {
	f := newFixture(t, func(s *Scope) {
		s.Budget = Budget{MaxVariants: 2, MaxValidationEvals: 1}
		s.AllowedLevels = []variant.Level{"prompt"}
	})
	f.mustPropose(t, variant.LevelPrompt)
	f.mustPropose(t, variant.LevelPrompt)
	_, err := f.propose(t, variant.LevelPrompt)
	var be *BudgetError
	require.ErrorAs(t, err, &be)
	require.EqualError(t, err, "variant budget spent: 2 of 2 variants proposed; 1 validation evaluation left; compare what you have, or start a new session with a larger budget")
	list, err := f.store.List()
	require.NoError(t, err)
	require.Len(t, list, 3, "the refused proposal wrote no variant")
}

func TestVariantBudgetConcurrent(t *testing.T) {
	f := newFixture(t, func(s *Scope) { s.Budget.MaxVariants = 3 })
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, refused := 0, 0
	for i := range 8 {
		// Separate journal handles, as separate server processes would have.
		j := OpenJournal(openDB(t, f.home), "hotpotqa")
		s, err := LoadSession(j, f.s.ID())
		require.NoError(t, err)
		wg.Go(func() {
			_, err := s.Propose(variant.LevelPrompt, func() (*variant.Variant, error) {
				return f.store.Create(context.Background(), variant.Proposal{
					Parent: variant.Baseline, Level: variant.LevelPrompt, Rationale: "r",
					Files: map[string][]byte{"chain.toml": []byte("[[steps]]\n"), "prompts/answer.md": fmt.Appendf(nil, "c%d", i)},
				})
			})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				ok++
			} else {
				require.ErrorAs(t, err, new(*BudgetError))
				refused++
			}
		})
	}
	wg.Wait()
	require.Equal(t, 3, ok)
	require.Equal(t, 5, refused)
}

func TestEscalation(t *testing.T) {
	f := newFixture(t, func(s *Scope) { s.Budget.MaxVariants = 10 })
	st := mustState(t, f)
	require.Equal(t, []variant.Level{"prompt"}, st.OpenLevels())
	require.Equal(t, variant.Level("prompt"), st.CurrentLevel())
	require.NoError(t, st.Allowed(variant.LevelPrompt))
	require.EqualError(t, st.Allowed(variant.LevelParameter),
		"parameter is locked: 0 of 2 non-improving prompt variants so far, and no train attribution has been recorded yet; it unlocks after 2 more non-improving prompt compares, or when a train attribution finds the dominant failures addressable only at parameter or above")
	require.EqualError(t, st.Allowed(variant.LevelStructural),
		"structural is locked: 0 of 2 non-improving parameter variants so far and parameter itself is still locked, and no train attribution has been recorded yet; it unlocks after parameter unlocks and 2 more non-improving parameter compares, or when a train attribution finds the dominant failures addressable only at structural or above")
	require.ErrorContains(t, st.Allowed("paramter"), `did you mean "parameter"`)

	_, err := f.propose(t, variant.LevelParameter)
	var le *LockedError
	require.ErrorAs(t, err, &le)
	require.Equal(t, variant.LevelParameter, le.Level)

	// Attribution pointing at prompt level unlocks nothing.
	require.NoError(t, f.s.RecordAttribution(Dominant{Class: "reasoning", Step: "answer", Level: variant.LevelPrompt, Share: 0.6}))
	v1 := f.mustPropose(t, variant.LevelPrompt)
	f.compare(t, v1, false)
	st = mustState(t, f)
	require.EqualError(t, st.Allowed(variant.LevelParameter),
		"parameter is locked: 1 of 2 non-improving prompt variants so far, and the dominant failure cluster (reasoning @ answer) is addressable at prompt level; it unlocks after 1 more non-improving prompt compare, or when a train attribution finds the dominant failures addressable only at parameter or above")

	// An improvement resets the count: the level is not exhausted.
	v2 := f.mustPropose(t, variant.LevelPrompt)
	f.compare(t, v2, true)
	st = mustState(t, f)
	require.Equal(t, v2, st.Incumbent)
	require.Equal(t, 0, st.NonImproving[variant.LevelPrompt])

	// Patience exhausts prompt and unlocks parameter, not structural.
	f.compare(t, f.mustPropose(t, variant.LevelPrompt), false)
	f.compare(t, f.mustPropose(t, variant.LevelPrompt), false)
	st = mustState(t, f)
	require.Equal(t, []variant.Level{"prompt", "parameter"}, st.OpenLevels())
	require.Equal(t, variant.Level("parameter"), st.CurrentLevel())
	require.EqualError(t, st.Allowed(variant.LevelStructural),
		"structural is locked: 0 of 2 non-improving parameter variants so far, and the dominant failure cluster (reasoning @ answer) is addressable at prompt level; it unlocks after 2 more non-improving parameter compares, or when a train attribution finds the dominant failures addressable only at structural or above")

	p1 := f.mustPropose(t, variant.LevelParameter)
	f.compare(t, p1, false)
	st = mustState(t, f)
	require.EqualError(t, st.Allowed(variant.LevelStructural),
		"structural is locked: 1 of 2 non-improving parameter variants so far, and the dominant failure cluster (reasoning @ answer) is addressable at prompt level; it unlocks after 1 more non-improving parameter compare, or when a train attribution finds the dominant failures addressable only at structural or above")
	f.compare(t, f.mustPropose(t, variant.LevelParameter), false)
	st = mustState(t, f)
	require.Equal(t, []variant.Level{"prompt", "parameter", "structural"}, st.OpenLevels())
	require.Equal(t, variant.LevelStructural, st.CurrentLevel())
	f.mustPropose(t, variant.LevelStructural)
}

func mustState(t *testing.T, f *fixture) *State {
	t.Helper()
	st, err := f.s.State()
	require.NoError(t, err)
	return st
}

func TestEscalationByAttribution(t *testing.T) {
	tests := []struct {
		name     string
		dominant Dominant
		open     []variant.Level
	}{
		{"truncation unlocks parameter", Dominant{Class: "truncation", Step: "answer", Level: variant.LevelParameter}, []variant.Level{"prompt", "parameter"}},
		{"retrieval unlocks structural and parameter", Dominant{Class: "retrieval", Step: "retrieve", Level: variant.LevelStructural}, []variant.Level{"prompt", "parameter", "structural"}},
		{"reasoning unlocks nothing", Dominant{Class: "reasoning", Step: "answer", Level: variant.LevelPrompt}, []variant.Level{"prompt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			require.NoError(t, f.s.RecordAttribution(tt.dominant))
			st := mustState(t, f)
			require.Equal(t, tt.open, st.OpenLevels())
			require.Equal(t, &tt.dominant, st.Dominant)
		})
	}

	t.Run("a level once unlocked stays unlocked", func(t *testing.T) {
		f := newFixture(t)
		require.NoError(t, f.s.RecordAttribution(Dominant{Class: "cascade", Step: "retrieve", Level: variant.LevelStructural}))
		f.mustPropose(t, variant.LevelStructural)
		require.NoError(t, f.s.RecordAttribution(Dominant{Class: "format", Step: "final", Level: variant.LevelPrompt}))
		f.mustPropose(t, variant.LevelStructural)
		require.Equal(t, variant.Levels, mustState(t, f).OpenLevels())
	})

	t.Run("structural via exhausted parameter after attribution opened parameter", func(t *testing.T) {
		f := newFixture(t)
		require.NoError(t, f.s.RecordAttribution(Dominant{Class: "truncation", Step: "answer", Level: variant.LevelParameter}))
		f.compare(t, f.mustPropose(t, variant.LevelParameter), false)
		f.compare(t, f.mustPropose(t, variant.LevelParameter), false)
		st := mustState(t, f)
		require.Equal(t, []variant.Level{"prompt", "parameter", "structural"}, st.OpenLevels())
		require.Equal(t, variant.Level("structural"), st.CurrentLevel())
	})

	t.Run("unknown attribution level", func(t *testing.T) {
		f := newFixture(t)
		require.ErrorContains(t, f.s.RecordAttribution(Dominant{Level: "graph"}), `attribution: level "graph" is not a proposal level`)
	})
}

func TestEscalationScope(t *testing.T) {
	f := newFixture(t, func(s *Scope) { s.AllowedLevels = []variant.Level{variant.LevelPrompt, variant.LevelStructural} })
	st := mustState(t, f)
	require.EqualError(t, st.Allowed(variant.LevelParameter),
		"parameter is outside this session's scope (allowed levels: prompt, structural); start a new session to allow it")
	// With parameter out of scope, structural follows prompt directly.
	require.ErrorContains(t, st.Allowed(variant.LevelStructural), "0 of 2 non-improving prompt variants")
	f.compare(t, f.mustPropose(t, variant.LevelPrompt), false)
	f.compare(t, f.mustPropose(t, variant.LevelPrompt), false)
	require.Equal(t, []variant.Level{"prompt", "structural"}, mustState(t, f).OpenLevels())

	g := newFixture(t, func(s *Scope) { s.AllowedLevels = []variant.Level{variant.LevelParameter} })
	require.Equal(t, []variant.Level{"parameter"}, mustState(t, g).OpenLevels(), "the cheapest allowed level is always open")
	_, err := g.propose(t, variant.LevelPrompt)
	require.ErrorContains(t, err, "prompt is outside this session's scope")

	entries := readAll(t, g.j)
	last := entries[len(entries)-1]
	require.Equal(t, KindLevelRefused, last.Kind)
	require.Equal(t, "prompt", last.Data["level"])
}

func TestValidationGate(t *testing.T) {
	f := newFixture(t, func(s *Scope) { s.Budget.MaxValidationEvals = 2 })
	v := f.mustPropose(t, variant.LevelPrompt)

	_, err := f.s.AuthorizeValidation(v)
	require.EqualError(t, err, "variant v0001 is pending review; only reviewed variants reach validation: variant v0001 must pass review first")
	r, isRefusal := refuse.Of(err)
	require.True(t, isRefusal)
	require.Equal(t, refuse.Review, r.Next)
	require.Equal(t, "v0001", r.Subject)
	require.NoError(t, f.s.RecordReview(v, false, 2, "leakage"))
	_, err = f.s.AuthorizeValidation(v)
	require.ErrorContains(t, err, "variant v0001 failed review (2 findings)")
	_, err = f.s.AuthorizeValidation("v0042")
	require.ErrorContains(t, err, "v0042 was not proposed in session s0001")
	require.ErrorContains(t, f.s.RecordReview("v0042", true, 0, ""), "not proposed in session")

	require.NoError(t, f.s.RecordReview(v, true, 0, "clean"))
	cached, err := f.s.AuthorizeValidation(v)
	require.NoError(t, err)
	require.Nil(t, cached)
	require.Zero(t, mustState(t, f).Used.ValidationEvals, "authorizing charges nothing: a run that never finishes costs nothing")
	rec, charged, err := f.s.RecordValidation(Aggregate{Variant: v, Value: 71, Cases: 40, Run: "r1"}, 0.5)
	require.NoError(t, err)
	require.True(t, charged)
	require.Equal(t, 71.0, rec.Value)
	st := mustState(t, f)
	require.Equal(t, 1, st.Used.ValidationEvals, "the result is charged once, with its record")
	require.InDelta(t, 0.5, st.Used.USD, 1e-9)

	// Another process finishing a run of v afterwards gets the recorded
	// result, and is not charged an evaluation again.
	rec, charged, err = f.s.RecordValidation(Aggregate{Variant: v, Value: 12, Cases: 40, Run: "r2"}, 0.25)
	require.NoError(t, err)
	require.False(t, charged)
	require.Equal(t, 71.0, rec.Value, "the first result stands")
	st = mustState(t, f)
	require.Equal(t, 1, st.Used.ValidationEvals)
	require.InDelta(t, 0.75, st.Used.USD, 1e-9, "the duplicate run's money was spent all the same")
	require.Len(t, st.History, 1)

	// Asking again is free.
	cached, err = f.s.AuthorizeValidation(v)
	require.NoError(t, err)
	require.Equal(t, 71.0, cached.Value)

	base, err := f.s.AuthorizeValidation(variant.Baseline)
	require.NoError(t, err, "the baseline needs no review")
	require.Nil(t, base)
	_, _, err = f.s.RecordValidation(Aggregate{Variant: variant.Baseline, Value: 60, Cases: 40, Run: "r3"}, 0)
	require.NoError(t, err)

	st = mustState(t, f)
	require.Equal(t, 2, st.Used.ValidationEvals)
	v2 := f.mustPropose(t, variant.LevelPrompt)
	require.NoError(t, f.s.RecordReview(v2, true, 0, ""))
	_, err = f.s.AuthorizeValidation(v2)
	require.ErrorContains(t, err, "validation budget spent: 2 of 2 evaluations used")
	_, _, err = f.s.RecordValidation(Aggregate{Variant: v2, Value: 90, Cases: 40, Run: "r4"}, 0)
	require.ErrorContains(t, err, "validation budget spent", "the budget is checked again when the result comes")
	_, ok := mustState(t, f).Validation(v2)
	require.False(t, ok)

	require.ErrorContains(t, f.s.RecordEvaluation(Aggregate{Variant: v, Split: "test"}), `split "test"`)
	require.ErrorContains(t, f.s.RecordEvaluation(Aggregate{Variant: v, Split: SplitValidation}), "RecordValidation")
	require.ErrorContains(t, f.s.RecordEvaluation(Aggregate{Variant: v, Split: SplitTrain, Value: math.NaN()}), "not a number")
}

func TestRecordDecisionGuards(t *testing.T) {
	f := newFixture(t)
	v := f.mustPropose(t, variant.LevelPrompt)
	w := f.mustPropose(t, variant.LevelPrompt)
	d, err := Compare([]float64{1}, []float64{0}, RuleImproves, 100, 1, nil)
	require.NoError(t, err)

	require.ErrorContains(t, f.s.RecordDecision(v, variant.Baseline, d), "v0001 has not passed review")
	require.NoError(t, f.s.RecordReview(v, true, 0, ""))
	require.NoError(t, f.s.RecordReview(w, true, 0, ""))
	require.ErrorContains(t, f.s.RecordDecision(v, w, d), "the incumbent is v0000, not v0002")
	require.ErrorContains(t, f.s.RecordDecision(variant.Baseline, variant.Baseline, d), "v0000 is the incumbent")
	require.ErrorContains(t, f.s.RecordDecision("v0042", variant.Baseline, d), "not proposed in session")
	stale := d
	stale.Comparisons = 5
	require.ErrorContains(t, f.s.RecordDecision(v, variant.Baseline, stale), "this is comparison 1")
	other, err := Compare([]float64{1}, []float64{0}, RuleSignificant, 100, 1, nil)
	require.NoError(t, err)
	require.ErrorContains(t, f.s.RecordDecision(v, variant.Baseline, other), `the session's contract says "improves"`)

	require.NoError(t, f.s.RecordDecision(v, variant.Baseline, d))
	require.Equal(t, v, mustState(t, f).Incumbent)
	// A decision computed against the old incumbent is refused.
	require.ErrorContains(t, f.s.RecordDecision(w, variant.Baseline, d), "the incumbent is v0001, not v0000")
}

func TestRestartRebuildsState(t *testing.T) {
	f := newFixture(t)
	require.NoError(t, f.s.Charge(Charge{USD: 0.25, Reason: "train run"}))
	require.NoError(t, f.s.RecordEvaluation(Aggregate{Variant: variant.Baseline, Split: SplitTrain, Value: 55, Cases: 100, Run: "t1"}))
	require.NoError(t, f.s.RecordAttribution(Dominant{Class: "reasoning", Step: "answer", Level: variant.LevelPrompt, Share: 0.5, Run: "t1"}))
	_, err := f.s.AuthorizeValidation(variant.Baseline)
	require.NoError(t, err)
	_, _, err = f.s.RecordValidation(Aggregate{Variant: variant.Baseline, Value: 60, Cases: 40}, 0)
	require.NoError(t, err)
	v1 := f.mustPropose(t, variant.LevelPrompt)
	require.NoError(t, f.s.RecordReview(v1, true, 0, ""))
	_, err = f.s.AuthorizeValidation(v1)
	require.NoError(t, err)
	_, _, err = f.s.RecordValidation(Aggregate{Variant: v1, Value: 72, Cases: 40}, 0)
	require.NoError(t, err)
	f.compare(t, v1, true)
	f.compare(t, f.mustPropose(t, variant.LevelPrompt), false)
	tampered := &variant.TamperedError{ID: v1, File: "prompts/answer.md", Problem: "was changed"}
	require.NoError(t, f.s.RecordTampered(tampered))
	require.NoError(t, f.s.Spend(0.1, v1, "validation run"))

	before := mustState(t, f)
	require.Equal(t, v1, before.Incumbent)
	require.True(t, before.TargetMet())
	require.Len(t, before.History, 2)
	require.Len(t, before.Train, 1)
	require.Len(t, before.Comparisons, 2)
	require.Equal(t, 1, before.NonImproving[variant.LevelPrompt])
	require.Equal(t, 2, before.Used.Variants)
	require.Equal(t, 2, before.Used.ValidationEvals)
	require.InDelta(t, 0.35, before.Used.USD, 1e-12)
	require.Equal(t, variant.LevelPrompt, before.LevelOf(v1))
	a, ok := before.Validation(v1)
	require.True(t, ok)
	require.Equal(t, 72.0, a.Value)
	r, ok := before.LatestReview(v1)
	require.True(t, ok)
	require.True(t, r.Passed)

	// A new process: fresh database and journal handle.
	j := OpenJournal(openDB(t, f.home), "hotpotqa")
	s, err := ActiveSession(j)
	require.NoError(t, err)
	after, err := s.State()
	require.NoError(t, err)
	require.Equal(t, before, after)

	entries := readAll(t, j)
	var tamperedSeen bool
	for _, e := range entries {
		if e.Kind == KindTampered {
			tamperedSeen = true
			require.Equal(t, "prompts/answer.md", e.Data["file"])
		}
	}
	require.True(t, tamperedSeen)
}

func TestSessionsDoNotMix(t *testing.T) {
	f := newFixture(t)
	f.mustPropose(t, variant.LevelPrompt)
	s2, err := CreateSession(f.j, testScope())
	require.NoError(t, err)
	st, err := s2.State()
	require.NoError(t, err)
	require.Zero(t, st.Used.Variants)
	require.Equal(t, variant.Baseline, st.Incumbent)
	require.Equal(t, 1, mustState(t, f).Used.Variants)
}

func TestTargetAndLeftStrings(t *testing.T) {
	require.Equal(t, "composite_score >= 70", Target{Metric: "composite_score", Min: 70}.String())
	b := Budget{MaxVariants: 3, MaxValidationEvals: 1}
	require.Equal(t, "2 variants and 1 validation evaluation left", b.Left(Usage{Variants: 1}).String())
	require.Equal(t, Left{}, b.Left(Usage{Variants: 9, ValidationEvals: 9}), "never negative")
}

func TestReplayAllowedMessage(t *testing.T) {
	sc := testScope()
	sc.ID, sc.Patience = "s0001", 3
	entry := func(kind Kind, v string, data any) Entry {
		return Entry{Kind: kind, Session: "s0001", Variant: v, Data: toData(data)}
	}
	entries := []Entry{
		entry(KindAttributed, "", Dominant{Class: "truncation", Step: "answer", Level: variant.LevelParameter}),
		entry(KindProposed, "v0001", Proposed{Parent: "v0000", Level: variant.LevelParameter}),
		entry(KindRejected, "v0001", Comparison{Candidate: "v0001", Incumbent: "v0000", Level: variant.LevelParameter}),
		entry(KindAttributed, "", Dominant{Class: "reasoning", Step: "answer", Level: variant.LevelPrompt}),
	}
	for _, v := range []string{"v0003", "v0004", "v0005"} {
		entries = append(entries,
			entry(KindProposed, v, Proposed{Parent: "v0000", Level: variant.LevelPrompt}),
			entry(KindRejected, v, Comparison{Candidate: variant.ID(v), Incumbent: "v0000", Level: variant.LevelPrompt}))
	}
	entries = append(entries,
		Entry{Kind: KindProposed, Session: "s0002", Variant: "v0002", Data: toData(Proposed{Level: variant.LevelParameter})})
	for i := range entries {
		entries[i].Seq = int64(i + 1)
	}
	st, err := Replay(sc, entries)
	require.NoError(t, err)
	require.Equal(t, 4, st.Used.Variants, "other sessions' entries are skipped")
	require.Equal(t, int64(10), st.LastSeq)
	require.Equal(t, []variant.Level{"prompt", "parameter"}, st.OpenLevels())
	require.EqualError(t, st.Allowed(variant.LevelStructural), "structural is locked: 1 of 3 non-improving parameter variants so far, and the dominant failure cluster (reasoning @ answer) is addressable at prompt level; it unlocks after 2 more non-improving parameter compares, or when a train attribution finds the dominant failures addressable only at structural or above")

	bad := append(entries[:1:1], Entry{Seq: 2, Kind: KindProposed, Session: "s0001", Data: map[string]any{"level": 7}})
	_, err = Replay(sc, bad)
	require.ErrorContains(t, err, "journal entry 2 (proposed)")
}

// TestResultsRefusedWhenLockedOrUnreviewedAtRecordTime: a review may lock
// the session or fail while a validation runs; the result and a compare
// decision are then refused at record time, and the run's money is
// journaled as spent all the same.
func TestResultsRefusedWhenLockedOrUnreviewedAtRecordTime(t *testing.T) {
	f := newFixture(t)
	v := f.mustPropose(t, variant.LevelPrompt)
	require.NoError(t, f.s.RecordReview(v, true, 0, ""))
	_, err := f.s.AuthorizeValidation(v)
	require.NoError(t, err)
	// A newer review of v fails while its run goes on.
	require.NoError(t, f.s.RecordReview(v, false, 1, "leak"))
	_, charged, err := f.s.RecordValidation(Aggregate{Variant: v, Value: 71, Cases: 40, Run: "r1"}, 0.5)
	require.Error(t, err)
	require.False(t, charged)
	st := mustState(t, f)
	require.Zero(t, st.Used.ValidationEvals)
	require.InDelta(t, 0.5, st.Used.USD, 1e-9, "the refused run's money was spent")
	require.Empty(t, st.History)

	w := f.mustPropose(t, variant.LevelPrompt)
	require.NoError(t, f.s.RecordReview(w, true, 0, ""))
	d, err := Compare([]float64{1}, []float64{0}, RuleImproves, 100, 1, nil)
	require.NoError(t, err)
	require.NoError(t, f.s.LockForOperator(string(w), "many leak hits"))
	var locked *LockedSessionError
	_, _, err = f.s.RecordValidation(Aggregate{Variant: w, Value: 80, Cases: 40, Run: "r2"}, 0.25)
	require.ErrorAs(t, err, &locked)
	require.ErrorAs(t, f.s.RecordDecision(w, variant.Baseline, d), &locked)
	st = mustState(t, f)
	require.Equal(t, variant.Baseline, st.Incumbent, "a locked session's incumbent does not move")
	require.InDelta(t, 0.75, st.Used.USD, 1e-9)
}
