package main

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop"
)

func decodeStatus(t *testing.T, out string) loop.Status {
	t.Helper()
	var st loop.Status
	require.NoError(t, json.Unmarshal([]byte(out), &st), out)
	return st
}

func TestSessionNewAndStatus(t *testing.T) {
	f := newOpFixture(t, nil)
	code, _, errOut := f.run(t, "session", "status", "--tenant", "capitals")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "has no session")

	code, out, errOut := f.run(t, "session", "new", "--tenant", "capitals")
	require.Equal(t, 0, code, errOut)
	first := decodeStatus(t, out)
	require.NotEmpty(t, first.Session)
	require.Equal(t, "v0000", first.Incumbent)
	require.Equal(t, 10, first.Budget.Variants, "tenant.toml's budget")
	require.Contains(t, errOut, "started session "+first.Session)

	code, out, errOut = f.run(t, "session", "status", "--tenant", "tenants/capitals")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, first.Session, decodeStatus(t, out).Session)
	require.Contains(t, out, "\n  \"tenant\": \"capitals\"", "indented JSON")

	code, out, errOut = f.run(t, "session", "new", "--tenant", "capitals", "--target", "80", "--max-variants", "3",
		"--max-validation-evals", "2", "--levels", "prompt, parameter")
	require.Equal(t, 0, code, errOut)
	second := decodeStatus(t, out)
	require.NotEqual(t, first.Session, second.Session, "the operator replaces the session")
	require.Equal(t, 3, second.Budget.Variants)
	require.Equal(t, 2, second.Budget.ValidationEvals)
	require.Equal(t, []string{"prompt", "parameter"}, second.Levels)
	require.Equal(t, "composite_score >= 80", second.Target)

	code, out, _ = f.run(t, "session", "status", "--tenant", "capitals")
	require.Equal(t, 0, code)
	require.Equal(t, second.Session, decodeStatus(t, out).Session)
}

func TestSessionErrors(t *testing.T) {
	f := newOpFixture(t, nil)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no subcommand", nil, 2, "missing the subcommand"},
		{"unknown subcommand", []string{"start"}, 2, `unknown subcommand "start"`},
		{"no tenant", []string{"new"}, 2, "--tenant is required"},
		{"bad target", []string{"new", "--tenant", "capitals", "--target", "high"}, 2, "want a number"},
		{"budget above tenant.toml", []string{"new", "--tenant", "capitals", "--max-variants", "99"}, 1, "max_variants 99 exceeds the 10"},
		{"negative budget", []string{"new", "--tenant", "capitals", "--max-validation-evals", "-1"}, 1, "max_validation_evals is -1"},
		{"unknown level", []string{"new", "--tenant", "capitals", "--levels", "prompt,magic"}, 1, `level "magic" is not allowed`},
		{"unknown tenant", []string{"status", "--tenant", "nosuch"}, 1, `tenant "nosuch" does not exist`},
		{"positional", []string{"status", "capitals"}, 2, "name the tenant with --tenant"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"session"}, tc.args...)
			if len(tc.args) > 0 {
				args = append(args, "--workspace", f.Dir)
			}
			code, _, errOut := cliRun(t, f.env, args...)
			require.Equal(t, tc.code, code, errOut)
			require.Contains(t, errOut, tc.want)
		})
	}
}

func TestSessionHelp(t *testing.T) {
	for _, args := range [][]string{{"session", "--help"}, {"session", "new", "--help"}, {"help", "session"}} {
		code, out, _ := cliRun(t, nil, args...)
		require.Equal(t, 0, code, args)
		require.Contains(t, out, "Usage: fapo session new --tenant NAME", args)
	}
}
