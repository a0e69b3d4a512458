package session

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/statedb"
)

// openDB opens a migrated state database in home (a fresh one when home is
// ""); two calls on one home stand for two processes.
func openDB(t testing.TB, home string) *statedb.DB {
	t.Helper()
	if home == "" {
		home = t.TempDir()
	}
	db, err := statedb.Open(home)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	require.NoError(t, Migrate(context.Background(), db))
	return db
}

func readAll(t *testing.T, j *Journal) []Entry {
	t.Helper()
	var out []Entry
	require.NoError(t, j.Read(func(e Entry) error { out = append(out, e); return nil }))
	return out
}

func TestJournalAppendRead(t *testing.T) {
	home, tenantDir := t.TempDir(), t.TempDir()
	j := OpenJournal(openDB(t, home), "t1", WithMirror(tenantDir))
	when := time.Date(2025, 3, 4, 5, 6, 7, 8, time.FixedZone("x", 3600))
	e1, err := j.Append(Entry{Kind: KindProposed, Session: "s0001", Variant: "v0001", Time: when, Data: map[string]any{"level": "prompt", "n": 3}})
	require.NoError(t, err)
	require.Equal(t, int64(1), e1.Seq)
	require.Equal(t, when.UTC(), e1.Time)
	require.Equal(t, 3.0, e1.Data["n"], "the stored entry is what a read returns")
	e2, err := j.Append(Entry{Kind: KindReviewed})
	require.NoError(t, err)
	require.Equal(t, int64(2), e2.Seq)
	require.False(t, e2.Time.IsZero())
	require.Equal(t, []Entry{e1, e2}, readAll(t, j))

	// Another handle (another process) sees the same, and continues the
	// sequence.
	other := OpenJournal(openDB(t, home), "t1", WithMirror(tenantDir))
	require.Equal(t, []Entry{e1, e2}, readAll(t, other))
	e3, err := other.Append(Entry{Kind: KindEvaluated})
	require.NoError(t, err)
	require.Equal(t, int64(3), e3.Seq)
	e4, err := j.Append(Entry{Kind: KindEvaluated})
	require.NoError(t, err)
	require.Equal(t, int64(4), e4.Seq, "the first handle picks up what the other appended")
	last, err := j.LastSeq(context.Background())
	require.NoError(t, err)
	require.Equal(t, int64(4), last)

	// Tenants are numbered apart.
	e, err := OpenJournal(j.db, "t2").Append(Entry{Kind: KindCharged})
	require.NoError(t, err)
	require.Equal(t, int64(1), e.Seq)

	raw, err := os.ReadFile(filepath.Join(tenantDir, JournalFile))
	require.NoError(t, err)
	require.Len(t, strings.Split(strings.TrimSpace(string(raw)), "\n"), 4)
	require.True(t, strings.HasPrefix(string(raw), `{"seq":1,"time":"2025-03-04T04:06:07.000000008Z","kind":"proposed","session":"s0001","variant":"v0001","data":{"level":"prompt","n":3}}`+"\n"))

	stop := errors.New("stop")
	n := 0
	err = j.Read(func(Entry) error { n++; return stop })
	require.ErrorIs(t, err, stop)
	require.Equal(t, 1, n)
}

func TestJournalConcurrentHandles(t *testing.T) {
	home := t.TempDir()
	const handles, each = 4, 25
	var wg sync.WaitGroup
	for h := range handles {
		j := OpenJournal(openDB(t, home), "t") // each handle its own database connection pool, as in another process
		wg.Go(func() {
			for i := range each {
				_, err := j.Append(Entry{Kind: KindCharged, Data: map[string]any{"who": fmt.Sprintf("%d-%d", h, i), "pad": strings.Repeat("x", 4096)}})
				require.NoError(t, err)
			}
		})
	}
	wg.Wait()
	entries := readAll(t, OpenJournal(openDB(t, home), "t"))
	require.Len(t, entries, handles*each)
	seen := map[string]bool{}
	for i, e := range entries {
		require.Equal(t, int64(i+1), e.Seq)
		seen[e.Data["who"].(string)] = true
	}
	require.Len(t, seen, handles*each)
}

// TestJournalAppendOnly checks the database's own guard: whatever code
// writes to it, entries cannot be changed, removed or numbered with a gap,
// and contracts cannot be changed.
func TestJournalAppendOnly(t *testing.T) {
	db := openDB(t, "")
	j := OpenJournal(db, "t")
	_, err := CreateSession(j, testScope())
	require.NoError(t, err)
	_, err = j.Append(Entry{Kind: KindCharged})
	require.NoError(t, err)
	ctx := context.Background()
	for stmt, want := range map[string]string{
		`UPDATE journal SET kind = 'reviewed' WHERE seq = 2`: "append-only",
		`DELETE FROM journal WHERE seq = 2`:                  "append-only",
		`INSERT INTO journal (tenant, seq, time, kind, session, variant) VALUES ('t', 5, '2025-01-01T00:00:00Z', 'reviewed', 's0001', '')`: "without gaps",
		`INSERT INTO journal (tenant, seq, time, kind, session, variant) VALUES ('t', 2, '2025-01-01T00:00:00Z', 'reviewed', 's0001', '')`: "without gaps",
		`UPDATE sessions SET scope = '{}'`: "immutable",
		`DELETE FROM sessions`:             "immutable",
	} {
		err := db.Write(ctx, func(tx *sql.Tx) error { _, err := tx.ExecContext(ctx, stmt); return err })
		require.ErrorContains(t, err, want, stmt)
	}
	require.Len(t, readAll(t, OpenJournal(db, "t")), 2)
}

// TestMirrorRewrittenAfterTampering checks that the workspace mirror is
// rewritten from the database, whatever was done to it: an edited, appended
// to, replaced-by-a-link mirror is simply overwritten on the next commit.
func TestMirrorRewrittenAfterTampering(t *testing.T) {
	tenantDir := t.TempDir()
	j := OpenJournal(openDB(t, ""), "t", WithMirror(tenantDir))
	s, err := CreateSession(j, testScope())
	require.NoError(t, err)
	mirror := filepath.Join(tenantDir, JournalFile)
	scopeMirror := filepath.Join(tenantDir, SessionsDir, "s0001", scopeFile)
	want := func() string {
		var b strings.Builder
		for _, e := range readAll(t, j) {
			fmt.Fprintf(&b, "%s\n", mustJSON(t, e))
		}
		return b.String()
	}
	outside := filepath.Join(t.TempDir(), "outside")
	require.NoError(t, os.WriteFile(outside, []byte("untouched\n"), 0o644))
	for name, tamper := range map[string]func(){
		"appended": func() {
			f, err := os.OpenFile(mirror, os.O_APPEND|os.O_WRONLY, 0)
			require.NoError(t, err)
			_, err = f.WriteString(`{"seq":99,"kind":"reviewed","session":"s0001","variant":"v0001","data":{"passed":true}}` + "\n")
			require.NoError(t, err)
			require.NoError(t, f.Close())
		},
		"truncated": func() { require.NoError(t, os.Truncate(mirror, 3)) },
		"removed":   func() { require.NoError(t, os.Remove(mirror)) },
		"link":      func() { require.NoError(t, os.Remove(mirror)); require.NoError(t, os.Symlink(outside, mirror)) },
		"scope": func() {
			require.NoError(t, os.WriteFile(scopeMirror, []byte(`{"id":"s0001","budget":{"max_variants":1000}}`), 0o644))
		},
	} {
		tamper()
		require.NoError(t, s.RecordAttribution(Dominant{Class: "format", Step: "answer", Level: "prompt"}), name)
		raw, err := os.ReadFile(mirror)
		require.NoError(t, err, name)
		require.Equal(t, want(), string(raw), name)
		raw, err = os.ReadFile(scopeMirror)
		require.NoError(t, err, name)
		require.Equal(t, string(mustJSONIndent(t, s.Scope))+"\n", string(raw), name)
	}
	raw, err := os.ReadFile(outside)
	require.NoError(t, err)
	require.Equal(t, "untouched\n", string(raw), "the link was replaced, not followed")
	st, err := s.State()
	require.NoError(t, err)
	require.Empty(t, st.Reviews, "the forged line was never read")
}

func BenchmarkJournalAppend(b *testing.B) {
	j := OpenJournal(openDB(b, ""), "t", WithMirror(b.TempDir()))
	for b.Loop() {
		if _, err := j.Append(Entry{Kind: KindCharged, Data: map[string]any{"usd": 0.01}}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTransactOnLongJournal measures one decision (a charge) on a
// session whose journal already holds 1000 entries, mirror included: the
// cost of an operation late in a long session.
func BenchmarkTransactOnLongJournal(b *testing.B) {
	j := OpenJournal(openDB(b, ""), "t", WithMirror(b.TempDir()))
	sc := testScope()
	sc.Budget.MaxValidationEvals = 1 << 30
	s, err := CreateSession(j, sc)
	require.NoError(b, err)
	for range 1000 {
		require.NoError(b, s.RecordAttribution(Dominant{Class: "format", Step: "answer", Level: "prompt", Share: 0.5, Run: "r"}))
	}
	for b.Loop() {
		if err := s.Charge(Charge{ValidationEvals: 1, Reason: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
}
