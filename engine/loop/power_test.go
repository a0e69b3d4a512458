package loop_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/engine/session"
)

// unsureBaseline makes the baseline answer only for countries whose name
// has an even number of letters: its train scores are 100 or 0 by a rule
// the test can apply itself.
func unsureBaseline(t *testing.T, f *looptest.Fixture) {
	t.Helper()
	p := filepath.Join(f.TenantDir(), "prompts", "answer.md")
	require.NoError(t, os.WriteFile(p, []byte("Answer "+looptest.UnsurePhrase+", with "+looptest.BarePhrase+".\n\n{{.context.question}}\n"), 0o644))
}

var powerCountryRe = regexp.MustCompile(`What is the capital of ([^?]+)\?`)

// expectedTrainScores applies the model double's rule to the train split.
func expectedTrainScores(t *testing.T, f *looptest.Fixture) []float64 {
	t.Helper()
	var out []float64
	require.NoError(t, dataset.ReadFile(filepath.Join(f.TenantDir(), "data", "train.jsonl"), func(_ int, c dataset.Case) error {
		m := powerCountryRe.FindStringSubmatch(c.Context["question"].(string))
		require.NotNil(t, m)
		s := 0.0
		if len(strings.TrimSpace(m[1]))%2 == 0 {
			s = 100
		}
		out = append(out, s)
		return nil
	}))
	return out
}

func manifestValidation(t *testing.T, f *looptest.Fixture) int {
	t.Helper()
	m, err := dataset.OpenStore(f.Home).Manifest(looptest.Tenant)
	require.NoError(t, err)
	return m.Counts.Validation
}

// TestPowerBeforeAndAfterTheBaselineRun: before any run the minimum
// detectable effect is the worst-case bound; after the baseline's train run
// it comes from that run's per-case spread, as the closed form says.
func TestPowerBeforeAndAfterTheBaselineRun(t *testing.T) {
	f := looptest.New(t, nil)
	unsureBaseline(t, f)
	w := open(t, f)
	nVal := manifestValidation(t, f)

	st, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	require.NotNil(t, st.Power)
	require.Equal(t, nVal, st.Power.ValidationCases)
	require.Equal(t, "bound", st.Power.Basis)
	require.InDelta(t, 2.8016*100/math.Sqrt(float64(nVal)), st.Power.MinDetectableEffect, 0.01)
	require.Nil(t, st.Power.TargetGain, "no declared gain and no train mean yet")
	require.Empty(t, st.Power.Warning)

	te, err := w.EvaluateTrain(context.Background(), loop.RunRequest{Tenant: tenantName})
	require.NoError(t, err)
	want := expectedTrainScores(t, f)
	mean, sd := session.MeanSD(want)
	require.Greater(t, sd, 0.0)
	require.InDelta(t, mean, te.Summary.ScoreMean, 1e-9)

	st, err = w.SessionStatus(tenantName)
	require.NoError(t, err)
	pv := st.Power
	require.Equal(t, "baseline train run", pv.Basis)
	require.Equal(t, te.Summary.RunID, pv.Run)
	require.Equal(t, len(want), pv.RunCases)
	require.InDelta(t, math.Sqrt2*sd, pv.PairedSD, 1e-9)
	require.InDelta(t, (1.959964+0.841621)*math.Sqrt2*sd/math.Sqrt(float64(nVal)), pv.MinDetectableEffect, 1e-4)
	require.NotNil(t, pv.TargetGain)
	require.InDelta(t, 95-mean, *pv.TargetGain, 1e-9)
	require.Contains(t, pv.Summary, "validation cases a paired comparison detects a true gain of about")
}

// TestPowerWarnsWhenTheTargetGainIsTooSmall: a declared gain below what
// the validation split can detect is a warning at start_session, which
// the agent is told to pass on.
func TestPowerWarnsWhenTheTargetGainIsTooSmall(t *testing.T) {
	f := looptest.New(t, func(s string) string {
		return strings.Replace(s, "min = 95.0", "min = 95.0\ngain = 3.0", 1)
	})
	w := open(t, f)
	st, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	require.NotNil(t, st.Power.TargetGain)
	require.Equal(t, 3.0, *st.Power.TargetGain)
	require.Contains(t, st.Power.Warning, "the target gain of 3.0 points (tenant.toml's target.gain) is below")
	require.Contains(t, st.Power.Warning, "worst-case bound")
	require.Contains(t, st.Next[0], "tell the user before spending")

	st, err = w.SessionStatus(tenantName)
	require.NoError(t, err)
	require.NotEmpty(t, st.Power.Warning, "session_status shows it too")

	// This baseline scores 0 on every train case: a spread of 0 says
	// nothing of how a difference would spread, so the bound stands.
	te, err := w.EvaluateTrain(context.Background(), loop.RunRequest{Tenant: tenantName})
	require.NoError(t, err)
	require.Zero(t, te.Summary.ScoreMean)
	st, err = w.SessionStatus(tenantName)
	require.NoError(t, err)
	require.Equal(t, "bound", st.Power.Basis)
}

// TestPowerIgnoresAnEditedCaseLog: the train run's case log sits in the
// workspace; one whose scores no longer match what the server recorded is
// not an estimate, and the bound is reported instead.
func TestPowerIgnoresAnEditedCaseLog(t *testing.T) {
	f := looptest.New(t, nil)
	unsureBaseline(t, f)
	w := open(t, f)
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	te, err := w.EvaluateTrain(context.Background(), loop.RunRequest{Tenant: tenantName})
	require.NoError(t, err)

	// The agent halves every case's distance from the mean: the count and
	// the mean still match the summary and the journal, only the spread
	// (and so the minimum detectable effect) shrinks, to make a small
	// validation split look powerful.
	p := filepath.Join(f.TenantDir(), "runs", te.Summary.RunID, "cases.jsonl")
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	var out bytes.Buffer
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var m map[string]any
		require.NoError(t, json.Unmarshal(line, &m))
		m["composite_score"] = te.Summary.ScoreMean + (m["composite_score"].(float64)-te.Summary.ScoreMean)/2
		nb, err := json.Marshal(m)
		require.NoError(t, err)
		out.Write(append(nb, '\n'))
	}
	require.NoError(t, os.WriteFile(p, out.Bytes(), 0o644))

	st, err := w.SessionStatus(tenantName)
	require.NoError(t, err)
	require.Equal(t, "bound", st.Power.Basis)
}
