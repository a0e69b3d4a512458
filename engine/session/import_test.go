package session

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/statedb"
	"github.com/fapo-dev/fapo/engine/variant"
)

// legacyWorkspace writes a tenant directory as an earlier fapo left it: a
// journal.jsonl with two sessions, their scope.json files, a session
// directory of an interrupted start, and a torn last line.
// legacySeal is when an earlier fapo sealed the legacy tenant: before any
// database a test opens.
var legacySeal = time.Date(2025, 4, 30, 9, 0, 0, 0, time.UTC)

func legacyWorkspace(t *testing.T) (dir string, scopes []Scope) {
	t.Helper()
	dir = t.TempDir()
	when := time.Date(2025, 5, 1, 10, 0, 0, 0, time.UTC)
	var lines []string
	add := func(e Entry) {
		e.Seq, e.Time = int64(len(lines)+1), when.Add(time.Duration(len(lines))*time.Minute)
		b, err := json.Marshal(e)
		require.NoError(t, err)
		lines = append(lines, string(b))
	}
	for i, id := range []string{"s0001", "s0002"} {
		sc := testScope()
		require.NoError(t, sc.normalize())
		sc.ID, sc.Created = id, when.Add(time.Duration(i)*time.Hour)
		scopes = append(scopes, sc)
		add(Entry{Kind: KindSessionStarted, Session: id, Data: toData(sc)})
		add(Entry{Kind: KindProposed, Session: id, Variant: "v000" + string(rune('1'+i)), Data: toData(Proposed{Level: "prompt", Parent: variant.Baseline})})
		p := filepath.Join(dir, SessionsDir, id, scopeFile)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, mustJSONIndent(t, sc), 0o444))
	}
	add(Entry{Kind: KindCharged, Session: "s0002", Data: toData(Charge{ValidationEvals: 1})})
	require.NoError(t, os.MkdirAll(filepath.Join(dir, SessionsDir, "s0003"), 0o755))
	raw := strings.Join(lines, "\n") + "\n" + `{"seq":6,"time":"2025-0`
	require.NoError(t, os.WriteFile(filepath.Join(dir, JournalFile), []byte(raw), 0o644))
	return dir, scopes
}

func TestImportWorkspace(t *testing.T) {
	dir, scopes := legacyWorkspace(t)
	home := t.TempDir()
	j := OpenJournal(openDB(t, home), "hotpotqa", WithMirror(dir))
	rep, err := j.ImportWorkspace(dir, legacySeal)
	require.NoError(t, err)
	require.Equal(t, 5, rep.Entries)
	require.Equal(t, 2, rep.Sessions)
	require.Equal(t, "imported 5 journal entries and 2 sessions of tenant hotpotqa from the workspace into the sealed store; tenants/hotpotqa/journal.jsonl is now a mirror", rep.Notice)

	entries := readAll(t, j)
	require.Len(t, entries, 6)
	require.Equal(t, KindImported, entries[5].Kind)
	require.Equal(t, rep.Notice, entries[5].Data["message"])
	require.Equal(t, time.Date(2025, 5, 1, 10, 4, 0, 0, time.UTC), entries[4].Time, "imported entries keep their time")
	sessions, err := j.Sessions()
	require.NoError(t, err)
	require.Equal(t, scopes, sessions)
	s, err := ActiveSession(j)
	require.NoError(t, err)
	require.Equal(t, "s0002", s.ID())
	st, err := s.State()
	require.NoError(t, err)
	require.Equal(t, Usage{Variants: 1, ValidationEvals: 1}, st.Used)

	// Once imported, the workspace files are a mirror: forging them now
	// changes nothing, and importing again does nothing.
	f, err := os.OpenFile(filepath.Join(dir, JournalFile), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"seq":7,"time":"2025-05-01T11:00:00Z","kind":"session_started","session":"s0009"}` + "\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	again := OpenJournal(openDB(t, home), "hotpotqa", WithMirror(dir))
	rep, err = again.ImportWorkspace(dir, legacySeal)
	require.NoError(t, err)
	require.Zero(t, rep)
	require.Len(t, readAll(t, again), 6)

	// A new session gets the next id after the imported ones.
	s3, err := CreateSession(again, testScope())
	require.NoError(t, err)
	require.Equal(t, "s0003", s3.ID())
}

func TestImportWorkspaceSkipsAndRefuses(t *testing.T) {
	t.Run("edited scope.json is skipped and said", func(t *testing.T) {
		dir, _ := legacyWorkspace(t)
		p := filepath.Join(dir, SessionsDir, "s0002", scopeFile)
		require.NoError(t, os.Chmod(p, 0o644))
		require.NoError(t, os.WriteFile(p, []byte(`{"id":"s0002","budget":{"max_variants":1000}}`), 0o644))
		j := OpenJournal(openDB(t, ""), "hotpotqa")
		rep, err := j.ImportWorkspace(dir, legacySeal)
		require.NoError(t, err)
		require.Equal(t, 1, rep.Sessions)
		require.Contains(t, rep.Notice, "skipped: session s0002: sessions/s0002/scope.json differs from the contract journaled when it started")
		s, err := ActiveSession(j)
		require.NoError(t, err)
		require.Equal(t, "s0001", s.ID())
	})
	t.Run("a malformed journal is refused, nothing imported", func(t *testing.T) {
		dir, _ := legacyWorkspace(t)
		p := filepath.Join(dir, JournalFile)
		raw, err := os.ReadFile(p)
		require.NoError(t, err)
		lines := strings.SplitAfter(string(raw), "\n")
		require.NoError(t, os.WriteFile(p, []byte(lines[0]+lines[2]), 0o644))
		j := OpenJournal(openDB(t, ""), "hotpotqa")
		_, err = j.ImportWorkspace(dir, legacySeal)
		require.ErrorContains(t, err, "journal.jsonl:2: entry has seq 3 where 2 was due")
		require.Empty(t, readAll(t, j))
	})
	t.Run("a linked journal is refused", func(t *testing.T) {
		dir, _ := legacyWorkspace(t)
		p := filepath.Join(dir, JournalFile)
		require.NoError(t, os.Rename(p, p+".real"))
		require.NoError(t, os.Symlink(p+".real", p))
		_, err := OpenJournal(openDB(t, ""), "hotpotqa").ImportWorkspace(dir, legacySeal)
		require.ErrorContains(t, err, "not a regular file")
	})
	t.Run("no workspace journal, nothing to say", func(t *testing.T) {
		j := OpenJournal(openDB(t, ""), "hotpotqa")
		rep, err := j.ImportWorkspace(t.TempDir(), legacySeal)
		require.NoError(t, err)
		require.Zero(t, rep)
		require.Empty(t, readAll(t, j))
	})
}

// TestImportOnlyWhereAnEarlierFapoCanHaveWritten: a workspace journal is
// imported only for a tenant sealed before the database existed and never
// sealed or pinned with it. A journal planted in a tenant this store sealed,
// in one sealed after the database was created, or in one not sealed at all
// is refused: nothing imported, an import_refused entry, and a notice for
// the operator saying why. The refusal is asked once.
func TestImportOnlyWhereAnEarlierFapoCanHaveWritten(t *testing.T) {
	for _, tc := range []struct {
		name string
		// prepare returns the tenant's seal time after setting up the db.
		prepare func(t *testing.T, db *statedb.DB) time.Time
		why     string
	}{
		{"sealed by this store", func(t *testing.T, db *statedb.DB) time.Time {
			require.NoError(t, MarkSealed(context.Background(), db, "hotpotqa", "seal"))
			return time.Now().UTC().Truncate(time.Second)
		}, "tenant hotpotqa was sealed by this store (fapo seal, "},
		{"an old seal, pinned with this store", func(t *testing.T, db *statedb.DB) time.Time {
			require.NoError(t, MarkSealed(context.Background(), db, "hotpotqa", "pin"))
			return legacySeal
		}, "tenant hotpotqa was sealed by this store (fapo pin, "},
		{"sealed after the database was created", func(t *testing.T, db *statedb.DB) time.Time {
			return time.Now().UTC().Add(time.Second).Truncate(time.Second)
		}, "tenant hotpotqa was sealed ("},
		{"not sealed", func(t *testing.T, db *statedb.DB) time.Time { return time.Time{} },
			"tenant hotpotqa is not sealed, so no fapo kept a journal for it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, _ := legacyWorkspace(t)
			db := openDB(t, "")
			sealed := tc.prepare(t, db)
			j := OpenJournal(db, "hotpotqa", WithMirror(dir))
			rep, err := j.ImportWorkspace(dir, sealed)
			require.NoError(t, err)
			require.True(t, rep.Refused)
			require.Zero(t, rep.Entries)
			require.Contains(t, rep.Notice, "tenants/hotpotqa/journal.jsonl (5 entries) was not imported: "+tc.why)
			require.Contains(t, rep.Notice, "planted or copied")
			entries := readAll(t, j)
			require.Len(t, entries, 1, "nothing of the planted journal")
			require.Equal(t, KindImportRefused, entries[0].Kind)
			require.Equal(t, rep.Notice, entries[0].Data["message"])
			sessions, err := j.Sessions()
			require.NoError(t, err)
			require.Empty(t, sessions, "no planted session")
			_, err = ActiveSession(j)
			require.ErrorIs(t, err, ErrNoSession)
			raw, err := os.ReadFile(filepath.Join(dir, JournalFile))
			require.NoError(t, err)
			require.NotContains(t, string(raw), `"session_started"`, "the mirror replaced the planted file")

			rep, err = OpenJournal(db, "hotpotqa", WithMirror(dir)).ImportWorkspace(dir, legacySeal)
			require.NoError(t, err)
			require.Zero(t, rep, "asked once")
		})
	}
}

// TestDatabaseCreationRecordedOnce: a new database records when it was
// created; one created before fapo recorded it gets its earliest own entry
// (not the older times of an imported journal); the record never moves.
func TestDatabaseCreationRecordedOnce(t *testing.T) {
	created := func(db *statedb.DB) string {
		var v string
		require.NoError(t, db.SQL().QueryRow(`SELECT value FROM store_meta WHERE key = 'created'`).Scan(&v))
		return v
	}
	home := t.TempDir()
	db := openDB(t, home)
	first := created(db)
	require.NoError(t, Migrate(context.Background(), db))
	require.Equal(t, first, created(db))

	// An older database: an imported journal (entries of 2025, then the
	// imported entry) and another tenant's own entries, no record yet.
	dir, _ := legacyWorkspace(t)
	_, err := OpenJournal(db, "hotpotqa").ImportWorkspace(dir, legacySeal)
	require.NoError(t, err)
	own := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	_, err = OpenJournal(db, "other", WithClock(func() time.Time { return own })).Append(Entry{Kind: KindTampered})
	require.NoError(t, err)
	_, err = db.SQL().Exec(`DELETE FROM store_meta`)
	require.NoError(t, err)
	require.NoError(t, Migrate(context.Background(), db))
	require.Equal(t, own.Format(time.RFC3339Nano), created(db))
}
