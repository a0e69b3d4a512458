package loop_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
)

// The agent can edit the workspace. These tests play an agent with nothing
// but file tools against what used to be the truth there: the journal and
// the sessions' scope contracts.

// forge appends entries to the workspace journal.jsonl, numbered after its
// last line and stamped now, as a careful forger would.
func forge(t *testing.T, f *looptest.Fixture, entries ...map[string]any) {
	t.Helper()
	p := filepath.Join(f.TenantDir(), "journal.jsonl")
	raw, err := os.ReadFile(p)
	require.NoError(t, err)
	seq := strings.Count(string(raw), "\n")
	out, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	defer out.Close()
	for _, e := range entries {
		seq++
		e["seq"], e["time"] = seq, time.Now().UTC()
		line, err := json.Marshal(e)
		require.NoError(t, err)
		_, err = out.Write(append(line, '\n'))
		require.NoError(t, err)
	}
}

// TestForgedReviewReachesNothing: lines appended to journal.jsonl that say
// a variant passed review do not let it reach validation or compare,
// whether it failed review or was never reviewed; the next commit rewrites
// the mirror without them.
func TestForgedReviewReachesNothing(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	ctx := context.Background()
	st, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)

	caseID := strings.TrimPrefix(f.TrainMarkers[0], "MARK-")
	failing, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "look up the case",
		Prompts: map[string]string{"answer": "Case " + caseID + ": answer with " + looptest.BarePhrase + ".\n\n{{.context.question}}\n"}})
	require.NoError(t, err)
	rev, err := w.Review(ctx, tenantName, failing.Variant)
	require.NoError(t, err)
	require.False(t, rev.Verdict.Pass, "a train case id in a prompt fails review")
	pending, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "bare answers",
		Prompts: map[string]string{"answer": betterPrompt}})
	require.NoError(t, err)

	for _, v := range []string{failing.Variant, pending.Variant} {
		forge(t, f, map[string]any{"kind": "reviewed", "session": st.Session, "variant": v,
			"data": map[string]any{"passed": true, "findings": 0, "summary": "all checks passed"}})
	}
	for v, want := range map[string]string{failing.Variant: "failed review", pending.Variant: "pending review"} {
		_, err = w.EvaluateValidation(ctx, loop.RunRequest{Tenant: tenantName, Variant: v})
		require.ErrorContains(t, err, want, v)
		_, err = w.Compare(ctx, tenantName, v, nil)
		require.ErrorContains(t, err, "has not passed review", v)
	}
	require.Zero(t, f.LLM.Count(), "nothing ran on validation")
	status, err := w.SessionStatus(tenantName)
	require.NoError(t, err)
	require.Equal(t, 6, status.Budget.ValidationEvals, "nothing was charged")

	// The mirror is the server's again after its next commit.
	_, err = w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "terse",
		Prompts: map[string]string{"answer": "Reply with " + looptest.BarePhrase + ".\n\n{{.context.question}}\n"}})
	require.NoError(t, err)
	raw, err := os.ReadFile(filepath.Join(f.TenantDir(), "journal.jsonl"))
	require.NoError(t, err)
	require.NotContains(t, string(raw), "all checks passed")
	entries, err := w.Journal(tenantName, 0)
	require.NoError(t, err)
	require.Equal(t, strings.Count(string(raw), "\n"), len(entries), "the mirror is the database's journal, line for line")
}

// TestHandWrittenSessionGetsNoBudget: a session s0002 written into the
// workspace (scope.json with a fresh budget, and a session_started line in
// journal.jsonl to match) is not a session: the active one stays the
// database's, with its budget spent.
func TestHandWrittenSessionGetsNoBudget(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	ctx := context.Background()
	st, err := w.StartSession(loop.StartRequest{Tenant: tenantName, MaxValidationEvals: 1})
	require.NoError(t, err)
	require.Equal(t, "s0001", st.Session)
	_, err = w.EvaluateValidation(ctx, loop.RunRequest{Tenant: tenantName})
	require.NoError(t, err)

	raw, err := os.ReadFile(filepath.Join(f.TenantDir(), "sessions", "s0001", "scope.json"))
	require.NoError(t, err, "the workspace has a readable copy of the contract")
	var scope map[string]any
	require.NoError(t, json.Unmarshal(raw, &scope))
	scope["id"] = "s0002"
	scope["budget"] = map[string]any{"max_variants": 100, "max_validation_evals": 100, "max_usd": 0}
	raw, err = json.MarshalIndent(scope, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(f.TenantDir(), "sessions", "s0002"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(f.TenantDir(), "sessions", "s0002", "scope.json"), raw, 0o444))
	forge(t, f, map[string]any{"kind": "session_started", "session": "s0002", "data": scope})

	for _, w := range []*loop.Workspace{w, open(t, f)} { // this server, and one started afterwards
		status, err := w.SessionStatus(tenantName)
		require.NoError(t, err)
		require.Equal(t, "s0001", status.Session)
		require.Equal(t, 0, status.Budget.ValidationEvals)
		again, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
		require.NoError(t, err)
		require.True(t, again.Resumed)
		require.Equal(t, "s0001", again.Session)
		sc, err := w.Scope(tenantName)
		require.NoError(t, err)
		require.Equal(t, 1, sc.Budget.MaxValidationEvals)
		for _, info := range w.ListTenants() {
			require.Equal(t, "s0001", info.Session)
		}
	}
	prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "bare answers",
		Prompts: map[string]string{"answer": betterPrompt}})
	require.NoError(t, err)
	rev, err := w.Review(ctx, tenantName, prop.Variant)
	require.NoError(t, err)
	require.True(t, rev.Verdict.Pass)
	_, err = w.Compare(ctx, tenantName, prop.Variant, nil)
	require.ErrorContains(t, err, "validation budget spent: 1 of 1 evaluations used")
}

// TestSimultaneousStartSessionOneSession: two start_session calls at the
// same moment on two Workspace handles over one sealed store (as two fapo
// serve processes would be) yield exactly one session, every time.
func TestSimultaneousStartSessionOneSession(t *testing.T) {
	f := looptest.New(t, nil)
	const rounds = 50
	for round := range rounds {
		dir, home := t.TempDir(), t.TempDir()
		require.NoError(t, os.CopyFS(dir, os.DirFS(f.Dir)))
		require.NoError(t, os.CopyFS(home, os.DirFS(f.Home)))
		g := *f
		g.Dir, g.Home = dir, home
		ws := []*loop.Workspace{open(t, &g), open(t, &g)}
		start := make(chan struct{})
		results := make([]*loop.Status, len(ws))
		errs := make([]error, len(ws))
		var wg sync.WaitGroup
		for i, w := range ws {
			wg.Go(func() {
				<-start
				results[i], errs[i] = w.StartSession(loop.StartRequest{Tenant: tenantName})
			})
		}
		close(start)
		wg.Wait()
		created := 0
		for i := range ws {
			require.NoError(t, errs[i], "round %d", round)
			require.Equal(t, "s0001", results[i].Session, "round %d", round)
			if !results[i].Resumed {
				created++
			}
		}
		require.Equal(t, 1, created, "round %d: one call creates, the other resumes", round)
		entries, err := ws[0].Journal(tenantName, 0)
		require.NoError(t, err)
		started := 0
		for _, e := range entries {
			if e.Kind == "session_started" {
				started++
			}
		}
		require.Equal(t, 1, started, "round %d", round)
		_, err = os.Stat(filepath.Join(dir, "tenants", tenantName, "sessions", "s0002"))
		require.True(t, os.IsNotExist(err), "round %d: %v", round, err)
	}
	t.Logf("%d rounds of two simultaneous start_session calls: one session each time", rounds)
}
