package main

import (
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/statedb"
	"github.com/fapo-dev/fapo/tenants"
)

// journal reads the capitals tenant's journal entries of kind, from the
// sealed store's database.
func (f opFixture) journal(t *testing.T, kind session.Kind) []session.Entry {
	t.Helper()
	db, err := statedb.Open(f.Home)
	require.NoError(t, err)
	defer db.Close()
	var out []session.Entry
	err = session.OpenJournal(db, "capitals").Read(func(e session.Entry) error {
		if e.Kind == kind {
			out = append(out, e)
		}
		return nil
	})
	require.NoError(t, err)
	return out
}

// TestPinShowsTheChangeAndAcceptsIt: after an edit of tenant.toml, fapo
// eval and fapo doctor refuse with what changed and what to run; fapo pin
// shows the keys with old and new values, pins only when confirmed, and
// the tenant works again.
func TestPinShowsTheChangeAndAcceptsIt(t *testing.T) {
	f := newOpFixture(t, nil)
	cfg := filepath.Join(f.TenantDir(), "tenant.toml")
	b, err := os.ReadFile(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg, []byte(strings.Replace(string(b), "max_retries = 4", "max_retries = 2", 1)), 0o644))
	refusal := "tenant capitals: tenant.toml changed since it was sealed (model.max_retries): check the change, then run `fapo pin tenants/capitals`"

	code, _, errOut := f.run(t, "eval", "--tenant", "capitals", "--split", "train")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, refusal)
	require.Zero(t, f.LLM.Count(), "a refused evaluation calls no model")

	code, out, _ := cliRun(t, f.env, "doctor", f.TenantDir())
	require.Equal(t, 1, code)
	require.Regexp(t, `problem\s+pins\s+`+regexp.QuoteMeta(refusal), out)

	code, out, errOut = f.run(t, "pin", f.TenantDir())
	require.Equal(t, 1, code, "stdin is not a terminal: no pin without --yes")
	require.Contains(t, out, "tenant.toml (model.max_retries)")
	require.Contains(t, out, "model.max_retries: 4 → 2")
	require.Contains(t, errOut, "not pinned: stdin is not a terminal")
	code, _, errOut = f.run(t, "eval", "--tenant", "capitals", "--split", "train")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, refusal)

	code, out, errOut = f.run(t, "pin", f.TenantDir(), "--yes")
	require.Equal(t, 0, code, out+errOut)
	require.Contains(t, out, "pinned 2 frozen files of capitals")
	code, out, errOut = f.run(t, "eval", "--tenant", "capitals", "--split", "train", "--limit", "3")
	require.Equal(t, 0, code, out+errOut)
	_, out, _ = cliRun(t, f.env, "doctor", f.TenantDir())
	require.Regexp(t, `ok\s+pins\s+2 frozen files match`, out)
	code, out, _ = f.run(t, "pin", f.TenantDir())
	require.Equal(t, 0, code)
	require.Contains(t, out, "nothing to pin")

	pinned := f.journal(t, session.KindPinned)
	require.Len(t, pinned, 1)
	require.Equal(t, false, pinned[0].Data["terminal"])
	require.Len(t, f.journal(t, session.KindPinMismatch), 2, "both refused evaluations are journaled (doctor is not an operation)")
}

// TestOperatorCommandsJournaled: pin, final, session new, eval of
// validation and seal --force each journal the OS user and whether stdin
// was a terminal; eval of train does not.
func TestOperatorCommandsJournaled(t *testing.T) {
	f := newOpFixture(t, nil)
	me, err := user.Current()
	require.NoError(t, err)
	for _, args := range [][]string{
		{"eval", "--tenant", "capitals", "--split", "train", "--limit", "2"},
		{"eval", "--tenant", "capitals", "--split", "validation", "--limit", "2"},
		{"session", "new", "--tenant", "capitals"},
		{"final", "--tenant", "capitals"},
		{"pin", f.TenantDir()},
	} {
		code, out, errOut := f.run(t, args...)
		require.Equal(t, 0, code, out+errOut)
	}
	src := filepath.Join(t.TempDir(), "cases.jsonl")
	_, source, err := tenants.Example("capitals")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(src, source, 0o600))
	code, out, errOut := cliRun(t, f.env, "seal", f.TenantDir(), "--source", src, "--force")
	require.Equal(t, 0, code, out+errOut)

	var commands []string
	for _, e := range f.journal(t, session.KindOperatorCommand) {
		commands = append(commands, e.Data["command"].(string))
		require.Equal(t, me.Username, e.Data["user"])
		require.Equal(t, me.Uid, e.Data["uid"])
		require.Equal(t, false, e.Data["terminal"], "tests run without a terminal on stdin")
		require.NotEmpty(t, e.Data["args"])
	}
	require.Equal(t, []string{"eval", "session new", "final", "pin", "seal --force"}, commands)
}
