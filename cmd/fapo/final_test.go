package main

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
)

func TestFinalOnceThenForced(t *testing.T) {
	f := newOpFixture(t, nil)
	code, out, errOut := f.run(t, "final", "--tenant", "capitals")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "test", fieldOf(out, "split"))
	require.Equal(t, "v0000", fieldOf(out, "variant"), "best without a session is the baseline")
	require.Contains(t, out, "This was the one-shot test evaluation of capitals (variant v0000)")
	require.Empty(t, f.LeakedMarkers(out+errOut), "the test aggregate shows no test case")
	calls := f.LLM.Count()
	require.NotZero(t, calls)

	code, _, errOut = f.run(t, "final", "--tenant", "capitals")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "already evaluated")
	require.Contains(t, errOut, "--force")
	require.Equal(t, calls, f.LLM.Count(), "a refused final calls no model")

	code, out, errOut = f.run(t, "final", "--tenant", "tenants/capitals", "--force", "--variant", "v0000")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "This was a forced repeat: the test split of capitals has now been evaluated 2 times")
}

func TestFinalErrors(t *testing.T) {
	f := newOpFixture(t, nil)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no tenant", nil, 2, "--tenant is required"},
		{"unknown tenant", []string{"--tenant", "nosuch"}, 1, `tenant "nosuch" does not exist`},
		{"unknown variant", []string{"--tenant", "capitals", "--variant", "v0042"}, 1, "v0042"},
		{"bad variant", []string{"--tenant", "capitals", "--variant", "latest"}, 1, "latest"},
		{"positional", []string{"capitals"}, 2, "name the tenant with --tenant"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := cliRun(t, f.env, append([]string{"final", "--workspace", f.Dir}, tc.args...)...)
			require.Equal(t, tc.code, code, errOut)
			require.Contains(t, errOut, tc.want)
		})
	}
	require.Zero(t, f.LLM.Count())
	// None of the failures counts as the one look.
	code, _, errOut := f.run(t, "final", "--tenant", "capitals")
	require.Equal(t, 0, code, errOut)
}

func TestFinalHelp(t *testing.T) {
	code, out, _ := cliRun(t, nil, "final", "--help")
	require.Equal(t, 0, code)
	require.Contains(t, out, "Usage: fapo final --tenant NAME [--variant best|vNNNN] [--force]")
	require.Contains(t, out, "-force")
	require.Contains(t, out, "repeats = 3 triples the model calls")
}

// TestFinalPrintsThePlan: before its first case, fapo final says how many
// evaluations the test split takes with the tenant's repeats, and, once a
// session has measured the variant, the model calls and $ to expect,
// which the run then makes.
func TestFinalPrintsThePlan(t *testing.T) {
	lf := looptest.New(t, func(s string) string {
		s = strings.Replace(s, "input_per_mtok = 0.15", "input_per_mtok = 1.0", 1)
		s = strings.Replace(s, "output_per_mtok = 0.60", "output_per_mtok = 0.0", 1)
		return strings.Replace(s, "[acceptance]\n", "[acceptance]\nrepeats = 2\n", 1)
	}, fakellm.WithAfter(func(_ fakellm.Request, rep fakellm.Reply) fakellm.Reply {
		rep.PromptTokens = 100
		return rep
	}))
	f := opFixture{Fixture: lf, env: map[string]string{"FAPO_HOME": lf.Home}}
	m, err := dataset.OpenStore(f.Home).Manifest("capitals")
	require.NoError(t, err)
	cases := m.Counts.Of(dataset.Test)
	firstLine := func(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

	code, _, errOut := f.run(t, "final", "--tenant", "capitals")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, fmt.Sprintf("fapo final: capitals variant v0000 on the test split: %d cases × 2 repeats = %d evaluations, "+
		"each making the model calls the pipeline makes for one case (no run of v0000 in the session to measure them)", cases, 2*cases), firstLine(errOut))

	w, err := loop.Open(f.Dir, loop.Options{Home: f.Home})
	require.NoError(t, err)
	_, err = w.StartSession(loop.StartRequest{Tenant: "capitals"})
	require.NoError(t, err)
	_, err = w.EvaluateValidation(context.Background(), loop.RunRequest{Tenant: "capitals"})
	require.NoError(t, err)
	require.NoError(t, w.Close())

	code, out, errOut := f.run(t, "final", "--tenant", "capitals", "--force")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, fmt.Sprintf("fapo final: capitals variant v0000 on the test split: %d cases × 2 repeats = %d evaluations; "+
		"expected about %d model calls and $%.4f at list price (1.0 calls per evaluation in 1 validation run(s) of v0000)",
		cases, 2*cases, 2*cases, float64(2*cases)*100e-6), firstLine(errOut))
	require.True(t, strings.HasPrefix(fieldOf(out, "usage"), fmt.Sprintf("%d calls (", 2*cases)), "the run made them: %s", fieldOf(out, "usage"))
}
