package main

import (
	"testing"

	"github.com/stretchr/testify/require"
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
}
