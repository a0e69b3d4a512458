package main

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
)

// closedURL is a loopback address nothing listens on: every call is
// refused at once, as with a model server that is not running.
func closedURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return "http://" + addr + "/v1"
}

// noRetries keeps the tests fast: the provider's retries are the
// provider's tests' business.
func noRetries(s string) string { return strings.Replace(s, "max_retries = 4", "max_retries = 0", 1) }

// TestEvalExitCodes: eval exits 0 when every case was scored, 3 when some
// cases errored and 4 when all did, and ends with the commonest causes,
// their counts and what to do.
func TestEvalExitCodes(t *testing.T) {
	t.Run("all errored", func(t *testing.T) {
		url := closedURL(t)
		f := newOpFixture(t, func(s string) string {
			s = noRetries(s)
			// Point the model at nothing, after looptest pointed it at its double.
			i := strings.Index(s, "base_url = ")
			j := strings.Index(s[i:], "\n")
			return s[:i] + "base_url = \"" + url + "\"" + s[i+j:]
		})
		n := f.trainCases(t)
		code, out, errOut := f.run(t, "eval", "--tenant", "capitals", "--split", "train")
		require.Equal(t, exitAllErrored, code, errOut)
		require.Equal(t, itoa(n), fieldOf(out, "cases"))
		require.Equal(t, "none: no case was scored", fieldOf(out, "score mean"))
		last := strings.Split(strings.TrimSpace(errOut), "\n")
		require.Contains(t, errOut, "fapo eval: errored "+itoa(n)+" of "+itoa(n)+": provider: connection refused ×"+itoa(n)+
			" (check that the model server at [model] base_url is running)")
		require.Contains(t, last[len(last)-1], "to run the errored cases again: fapo eval --tenant capitals --split train")
		require.Contains(t, last[len(last)-1], "--resume r")
	})

	t.Run("some errored, then resumed", func(t *testing.T) {
		var down atomic.Int64
		down.Store(5) // the first five requests fail
		f := looptest.New(t, func(s string) string {
			return strings.Replace(noRetries(s), "concurrency = 8", "concurrency = 1", 1)
		}, fakellm.WithRuleFunc(func(fakellm.Request) bool { return down.Add(-1) >= 0 },
			func(fakellm.Request) fakellm.Reply { return fakellm.Reply{Fault: fakellm.ServerError()} }))
		op := opFixture{Fixture: f, env: map[string]string{"FAPO_HOME": f.Home}}
		n := op.trainCases(t)
		code, out, errOut := op.run(t, "eval", "--tenant", "capitals", "--split", "train")
		require.Equal(t, exitSomeErrored, code, errOut)
		require.Equal(t, "5: no answer because of the infrastructure, in no mean: provider: HTTP 500 ×5", fieldOf(out, "errored"))
		require.Contains(t, errOut, "fapo eval: errored 5 of "+itoa(n)+": provider: HTTP 500 ×5 (retry when the provider is back)")
		runID := runIDOf(t, out)

		// The provider is back: resuming sends only the five errored cases.
		calls := f.LLM.Count()
		code, out, errOut = op.run(t, "eval", "--tenant", "capitals", "--split", "train", "--resume", runID)
		require.Equal(t, 0, code, errOut)
		require.Equal(t, 5, f.LLM.Count()-calls)
		require.Equal(t, "0", fieldOf(out, "errored"))
		require.Equal(t, itoa(n), fieldOf(out, "cases"))
	})

	t.Run("none errored", func(t *testing.T) {
		f := newOpFixture(t, nil)
		code, out, errOut := f.run(t, "eval", "--tenant", "capitals", "--split", "train", "--limit", "5")
		require.Equal(t, 0, code, errOut)
		require.Equal(t, "0", fieldOf(out, "errored"))
	})
}

// TestEvalResumeRefusesAnotherVariant: resuming a run of v0000 as v0001
// is refused and changes nothing.
func TestEvalResumeRefusesAnotherVariant(t *testing.T) {
	f := newOpFixture(t, nil)
	w, err := loop.Open(f.Dir, loop.Options{Home: f.Home})
	require.NoError(t, err)
	_, err = w.StartSession(loop.StartRequest{Tenant: "capitals"})
	require.NoError(t, err)
	prop, err := w.Propose(context.Background(), loop.ProposeRequest{Tenant: "capitals", Level: "prompt", Rationale: "bare answers",
		Prompts: map[string]string{"answer": "Answer with " + looptest.BarePhrase + ".\n\n{{.context.question}}\n"}})
	require.NoError(t, err)
	require.Equal(t, "v0001", prop.Variant)
	require.NoError(t, w.Close())

	code, out, errOut := f.run(t, "eval", "--tenant", "capitals", "--split", "train", "--limit", "3")
	require.Equal(t, 0, code, errOut)
	runID := runIDOf(t, out)
	dir := filepath.Join(f.TenantDir(), "runs", runID)
	before := readCaseLog(t, dir)
	calls := f.LLM.Count()

	code, out, errOut = f.run(t, "eval", "--tenant", "capitals", "--split", "train", "--variant", "v0001", "--resume", runID)
	require.Equal(t, 1, code, out)
	require.Contains(t, errOut, "cannot resume run "+runID+": it ran variant v0000, not v0001")
	require.Contains(t, errOut, "start a new run")
	require.Equal(t, calls, f.LLM.Count(), "nothing ran")
	require.Equal(t, before, readCaseLog(t, dir), "the run is unchanged")
}

// TestFinalRefusesIncompleteTestRun: a test run with errored cases is not
// reported, does not use the one shot, and is continued by the next try.
func TestFinalRefusesIncompleteTestRun(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	f := looptest.New(t, noRetries, fakellm.WithRuleFunc(func(fakellm.Request) bool { return down.Load() },
		func(fakellm.Request) fakellm.Reply { return fakellm.Reply{Fault: fakellm.Status(503)} }))
	op := opFixture{Fixture: f, env: map[string]string{"FAPO_HOME": f.Home}}
	code, out, errOut := op.run(t, "final", "--tenant", "capitals")
	require.Equal(t, exitAllErrored, code, errOut)
	require.Regexp(t, `fapo final: (\d+) of (\d+) test cases hit provider errors \(HTTP 503 ×\d+\): retry when the provider is back; the test split's one shot is not used`, errOut)
	require.NotContains(t, out, "test score")
	require.Empty(t, f.LeakedMarkers(out+errOut))

	down.Store(false)
	code, out, errOut = op.run(t, "final", "--tenant", "capitals")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "This was the one-shot test evaluation of capitals", "the incomplete run did not use the one shot")
	require.Equal(t, "0", fieldOf(out, "errored"))
}
