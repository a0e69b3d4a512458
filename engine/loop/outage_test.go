package loop_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/engine/run"
)

// outageFixture is the capitals workspace whose baseline v0000 truly
// scores 100 on validation, with a model double that answers every request
// with a 500 while down is set.
func outageFixture(t *testing.T) (*looptest.Fixture, *atomic.Bool) {
	t.Helper()
	var down atomic.Bool
	f := looptest.New(t, func(s string) string {
		return strings.Replace(s, "max_retries = 4", "max_retries = 0", 1) // the outage outlasts any retry
	}, fakellm.WithRuleFunc(func(fakellm.Request) bool { return down.Load() },
		func(fakellm.Request) fakellm.Reply { return fakellm.Reply{Fault: fakellm.ServerError()} }))
	require.NoError(t, os.WriteFile(filepath.Join(f.TenantDir(), "prompts", "answer.md"), []byte(betterPrompt), 0o644))
	return f, &down
}

// TestOutageThenRecovery: during an outage a validation evaluation and a
// compare are refused with what happened and what to do, and nothing is
// recorded, cached or charged; once the provider is back the same calls
// give the true scores, and the truly better incumbent is kept.
func TestOutageThenRecovery(t *testing.T) {
	f, down := outageFixture(t)
	w := open(t, f)
	ctx := context.Background()
	st, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	budget := st.Budget.ValidationEvals
	prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "answer when sure",
		Prompts: map[string]string{"answer": "Answer with the city name " + looptest.UnsurePhrase + ".\n\n{{.context.question}}\n"}})
	require.NoError(t, err)
	rev, err := w.Review(ctx, tenantName, prop.Variant)
	require.NoError(t, err)
	require.True(t, rev.Verdict.Pass, "%+v", rev.Verdict.Findings)

	down.Store(true)
	_, err = w.EvaluateValidation(ctx, loop.RunRequest{Tenant: tenantName, Variant: "v0000"})
	var inc *run.IncompleteError
	require.True(t, errors.As(err, &inc), "an outage is no result: %v", err)
	n := inc.Cases
	require.Equal(t, n, inc.Errored)
	// Coarse: how many cases errored would count the cases a variant
	// can make error on purpose, for free.
	require.Regexp(t, `^some validation cases hit provider errors \(HTTP 500\): retry when the provider is back; nothing was charged`, err.Error())
	require.NotRegexp(t, `\d`, strings.TrimPrefix(err.Error(), "some validation cases hit provider errors (HTTP 500)"))
	require.Empty(t, f.LeakedMarkers(err.Error()))

	_, err = w.Compare(ctx, tenantName, prop.Variant, nil)
	require.ErrorContains(t, err, "validation of the incumbent v0000: ")
	require.ErrorContains(t, err, "validation cases hit provider errors (HTTP 500)")
	require.ErrorContains(t, err, "nothing was charged")

	st, err = w.SessionStatus(tenantName)
	require.NoError(t, err)
	require.Equal(t, budget, st.Budget.ValidationEvals, "nothing was charged")
	require.Empty(t, st.Validation, "nothing was recorded, so nothing can be served from cache")
	require.Zero(t, st.Comparisons)
	require.Equal(t, "v0000", st.Incumbent)

	down.Store(false)
	v, err := w.EvaluateValidation(ctx, loop.RunRequest{Tenant: tenantName, Variant: "v0000"})
	require.NoError(t, err)
	require.False(t, v.Cached, "the outage's zeros were never cached")
	require.Equal(t, 100.0, v.ScoreMean)
	require.Equal(t, n, v.Cases)

	cmp, err := w.Compare(ctx, tenantName, prop.Variant, nil)
	require.NoError(t, err)
	require.Equal(t, 100.0, cmp.IncumbentScore)
	require.Less(t, cmp.CandidateScore, 80.0)
	require.Greater(t, cmp.CandidateScore, 20.0)
	require.False(t, cmp.Decision.Accept, cmp.Decision.Reason)
	require.Equal(t, "v0000", cmp.NewIncumbent, "the truly better incumbent is kept")
	require.Equal(t, budget-2, cmp.Budget.ValidationEvals, "one charge per recorded result")
	t.Logf("after recovery: incumbent %.1f, candidate %.1f, delta %+.1f", cmp.IncumbentScore, cmp.CandidateScore, cmp.Decision.Delta)

	// The retry continued the outage's run instead of starting another.
	metas := heldOutRuns(t, f, "v0000")
	require.Len(t, metas, 1, "one validation run of v0000, resumed after the outage")
}

// heldOutRuns lists the held-out runs of variant in the sealed store.
func heldOutRuns(t *testing.T, f *looptest.Fixture, variant string) []string {
	t.Helper()
	store := run.NewStore(filepath.Join(f.Home, "tenants", tenantName, "runs"), true)
	entries, err := os.ReadDir(store.Dir())
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		if m, err := store.Meta(e.Name()); err == nil && m.Variant == variant && m.Split == string(dataset.Validation) {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestInterruptedValidationChargesOnceAndResumes: a validation run
// cancelled midway charges nothing; the next evaluation continues it,
// running only the cases it had not finished, and is charged once.
func TestInterruptedValidationChargesOnceAndResumes(t *testing.T) {
	f, _ := outageFixture(t)
	w := open(t, f)
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	st, err := w.SessionStatus(tenantName)
	require.NoError(t, err)
	budget := st.Budget.ValidationEvals

	ctx, cancel := context.WithCancel(context.Background())
	_, err = w.EvaluateValidation(ctx, loop.RunRequest{Tenant: tenantName, Variant: "v0000", Progress: func(p run.Progress) {
		if p.Done == 3 {
			cancel()
		}
	}})
	cancel()
	require.ErrorContains(t, err, "did not finish, so nothing was charged; evaluate again to continue it")
	require.ErrorIs(t, err, context.Canceled)
	st, err = w.SessionStatus(tenantName)
	require.NoError(t, err)
	require.Equal(t, budget, st.Budget.ValidationEvals)

	before := f.LLM.Count()
	v, err := w.EvaluateValidation(context.Background(), loop.RunRequest{Tenant: tenantName, Variant: "v0000"})
	require.NoError(t, err)
	require.Equal(t, 100.0, v.ScoreMean)
	require.Less(t, f.LLM.Count()-before, v.Cases, "the completed cases were reused")
	st, err = w.SessionStatus(tenantName)
	require.NoError(t, err)
	require.Equal(t, budget-1, st.Budget.ValidationEvals, "charged once, with the result")
	require.Len(t, st.Validation, 1)
	require.Len(t, heldOutRuns(t, f, "v0000"), 1)
}

// TestCompareRefusedWhenBudgetCannotFinishIt: with one validation
// evaluation left and neither variant evaluated, compare refuses before
// running anything, rather than spend the last evaluation on the incumbent.
func TestCompareRefusedWhenBudgetCannotFinishIt(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName, MaxValidationEvals: 1})
	require.NoError(t, err)
	prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "bare answers",
		Prompts: map[string]string{"answer": betterPrompt}})
	require.NoError(t, err)
	_, err = w.Review(ctx, tenantName, prop.Variant)
	require.NoError(t, err)
	_, err = w.Compare(ctx, tenantName, prop.Variant, nil)
	require.EqualError(t, err, "validation budget too small for this compare: it needs 2 validation evaluations not yet recorded, and 9 variants and 1 validation evaluation left; the incumbent stands unless a new session grants more")
	require.Zero(t, f.LLM.Count(), "nothing ran")
	st, err := w.SessionStatus(tenantName)
	require.NoError(t, err)
	require.Equal(t, 1, st.Budget.ValidationEvals)
}
