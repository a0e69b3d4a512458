package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/variant"
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
	require.Equal(t, []variant.Level{variant.LevelPrompt, variant.LevelParameter}, second.Levels)
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

// TestSessionImportsAnEarlierWorkspaceJournalOnce: a workspace whose
// journal and session an earlier fapo kept in the tenant directory is
// imported into the sealed store by the first command, which says so; the
// files are a mirror from then on.
func TestSessionImportsAnEarlierWorkspaceJournalOnce(t *testing.T) {
	f := newOpFixture(t, nil)
	f.BackdateSeal(t, 24*time.Hour) // sealed by the earlier fapo, before the state database
	scope := `{"id":"s0001","tenant":"capitals","target":{"metric":"composite_score","min":95},` +
		`"budget":{"max_variants":10,"max_validation_evals":6,"max_usd":0},"allowed_levels":["prompt"],` +
		`"frozen_files":["tenant.toml"],"patience":3,"acceptance":{"rule":"improves","bootstrap":2000,"seed":7},` +
		`"created":"2025-05-01T10:00:00Z"}`
	journal := `{"seq":1,"time":"2025-05-01T10:00:00Z","kind":"session_started","session":"s0001","data":` + scope + "}\n" +
		`{"seq":2,"time":"2025-05-01T10:01:00Z","kind":"charged","session":"s0001","data":{"validation_evals":1}}` + "\n"
	require.NoError(t, os.MkdirAll(filepath.Join(f.TenantDir(), "sessions", "s0001"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(f.TenantDir(), "sessions", "s0001", "scope.json"), []byte(scope), 0o444))
	require.NoError(t, os.WriteFile(filepath.Join(f.TenantDir(), "journal.jsonl"), []byte(journal), 0o644))

	code, out, errOut := f.run(t, "session", "status", "--tenant", "capitals")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, errOut, "fapo: imported 2 journal entries and 1 sessions of tenant capitals from the workspace into the sealed store; tenants/capitals/journal.jsonl is now a mirror")
	st := decodeStatus(t, out)
	require.Equal(t, "s0001", st.Session)
	require.Equal(t, 5, st.Budget.ValidationEvals)

	// The mirror now holds the import too; editing it changes nothing.
	raw, err := os.ReadFile(filepath.Join(f.TenantDir(), "journal.jsonl"))
	require.NoError(t, err)
	require.Contains(t, string(raw), `"kind":"imported"`)
	require.NoError(t, os.WriteFile(filepath.Join(f.TenantDir(), "journal.jsonl"), []byte(strings.SplitAfter(journal, "\n")[0]), 0o644))
	code, out, errOut = f.run(t, "session", "status", "--tenant", "capitals")
	require.Equal(t, 0, code, errOut)
	require.NotContains(t, errOut, "imported")
	require.Equal(t, 5, decodeStatus(t, out).Budget.ValidationEvals)
}

// TestSessionUnlock: a session the review gate locked stays locked until
// the operator unlocks it with a reason; the agent's tools cannot.
func TestSessionUnlock(t *testing.T) {
	f := newOpFixture(t, nil)
	code, _, errOut := f.run(t, "session", "new", "--tenant", "capitals")
	require.Equal(t, 0, code, errOut)
	code, _, errOut = f.run(t, "session", "unlock", "--tenant", "capitals")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--reason is required")
	code, _, errOut = f.run(t, "session", "unlock", "--tenant", "capitals", "--reason", "nothing to see")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "is not locked")

	w, err := loop.Open(f.Dir, loop.Options{Home: f.Home, Getenv: func(string) string { return "" }})
	require.NoError(t, err)
	ctx := context.Background()
	prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: "capitals", Level: "prompt", Rationale: "examples",
		Prompts: map[string]string{"answer": strings.Join(f.HeldOutQuestions[:10], "\n") + "\n{{.context.question}}\n"}})
	require.NoError(t, err)
	rev, err := w.Review(ctx, "capitals", prop.Variant)
	require.NoError(t, err)
	require.True(t, rev.Verdict.LocksSession)
	require.NoError(t, w.Close())

	code, out, errOut := f.run(t, "session", "status", "--tenant", "capitals")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, decodeStatus(t, out).Next[0], "fapo session unlock --tenant capitals", "the operator is told the command")
	code, out, errOut = f.run(t, "session", "unlock", "--tenant", "capitals", "--reason", "read v0001: pasted cases")
	require.Equal(t, 0, code, errOut)
	require.NotContains(t, decodeStatus(t, out).Next[0], "locked")
	code, _, _ = f.run(t, "session", "unlock", "--tenant", "capitals", "--reason", "again")
	require.Equal(t, 1, code, "unlocked already")
}

// TestPlantedJournalInASealedTenantIsNotImported: after `fapo init
// --example`, `fapo seal` or `fapo import` the sealed store's database knows
// it sealed the tenant, so a journal.jsonl (with a session of a fresh
// budget) written into the tenant before the server first opens it is not
// imported: the command says so, and the planted session does not exist.
func TestPlantedJournalInASealedTenantIsNotImported(t *testing.T) {
	for _, tc := range []struct {
		name string
		seal func(t *testing.T, env map[string]string, dir string)
	}{
		{"init --example", func(t *testing.T, env map[string]string, dir string) {
			code, _, errOut := cliRun(t, env, "init", dir, "--example", "capitals")
			require.Equal(t, 0, code, errOut)
		}},
		{"seal", func(t *testing.T, env map[string]string, dir string) {
			// The example's files, sealed by fapo seal from a dataset of
			// its cases (the example's own train split, elsewhere).
			scratch := filepath.Join(t.TempDir(), "tenants", "capitals")
			code, _, errOut := cliRun(t, map[string]string{"FAPO_HOME": t.TempDir()}, "init", scratch, "--example", "capitals")
			require.Equal(t, 0, code, errOut)
			src := filepath.Join(t.TempDir(), "src.jsonl")
			for from, to := range map[string]string{"data/train.jsonl": src, "tenant.toml": filepath.Join(dir, "tenant.toml"),
				"chain.toml": filepath.Join(dir, "chain.toml"), "prompts/answer.md": filepath.Join(dir, "prompts", "answer.md")} {
				b, err := os.ReadFile(filepath.Join(scratch, filepath.FromSlash(from)))
				require.NoError(t, err)
				require.NoError(t, os.MkdirAll(filepath.Dir(to), 0o755))
				require.NoError(t, os.WriteFile(to, b, 0o644))
			}
			code, _, errOut = cliRun(t, env, "seal", dir, "--source", src)
			require.Equal(t, 0, code, errOut)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			ws := filepath.Join(root, "ws")
			dir := filepath.Join(ws, "tenants", "capitals")
			env := map[string]string{"FAPO_HOME": filepath.Join(root, "home")}
			tc.seal(t, env, dir)
			scope := `{"id":"s0001","tenant":"capitals","target":{"metric":"composite_score","min":95},` +
				`"budget":{"max_variants":1000,"max_validation_evals":1000,"max_usd":0},"allowed_levels":["prompt","parameter","structural"],` +
				`"frozen_files":["tenant.toml"],"patience":3,"acceptance":{"rule":"improves","bootstrap":2000,"seed":7},` +
				`"created":"2025-05-01T10:00:00Z"}`
			require.NoError(t, os.MkdirAll(filepath.Join(dir, "sessions", "s0001"), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "sessions", "s0001", "scope.json"), []byte(scope), 0o444))
			require.NoError(t, os.WriteFile(filepath.Join(dir, "journal.jsonl"),
				[]byte(`{"seq":1,"time":"2025-05-01T10:00:00Z","kind":"session_started","session":"s0001","data":`+scope+"}\n"), 0o644))

			code, out, errOut := cliRun(t, env, "session", "status", "--tenant", "capitals", "--workspace", ws)
			require.Contains(t, errOut, "fapo: tenants/capitals/journal.jsonl (1 entries) was not imported: tenant capitals was sealed by this store (fapo ")
			require.Contains(t, errOut, "planted or copied")
			require.NotEqual(t, 0, code, "no session: the planted one was not taken\n%s", out)
			require.Contains(t, errOut, "no session")
		})
	}
}
