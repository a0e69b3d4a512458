package session

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func openJournal(t *testing.T, path string) *Journal {
	t.Helper()
	j, err := OpenJournal(path)
	require.NoError(t, err)
	t.Cleanup(func() { j.Close() })
	return j
}

func readAll(t *testing.T, j *Journal) ([]Entry, ReadReport) {
	t.Helper()
	var out []Entry
	rep, err := j.Read(func(e Entry) error { out = append(out, e); return nil })
	require.NoError(t, err)
	return out, rep
}

func TestJournalAppendRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tenant", JournalFile)
	j := openJournal(t, path)
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

	entries, rep := readAll(t, j)
	require.Equal(t, []Entry{e1, e2}, entries)
	require.Equal(t, ReadReport{Entries: 2}, rep)

	// Another handle (another process) sees the same, and continues the
	// sequence.
	other := openJournal(t, path)
	again, _ := readAll(t, other)
	require.Equal(t, entries, again)
	e3, err := other.Append(Entry{Kind: KindEvaluated})
	require.NoError(t, err)
	require.Equal(t, int64(3), e3.Seq)
	e4, err := j.Append(Entry{Kind: KindEvaluated})
	require.NoError(t, err)
	require.Equal(t, int64(4), e4.Seq, "the first handle picks up what the other appended")

	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Len(t, strings.Split(strings.TrimSpace(string(raw)), "\n"), 4)
	require.True(t, strings.HasPrefix(string(raw), `{"seq":1,"time":"2025-03-04T04:06:07.000000008Z","kind":"proposed","session":"s0001","variant":"v0001","data":{"level":"prompt","n":3}}`+"\n"))

	stop := errors.New("stop")
	n := 0
	_, err = j.Read(func(Entry) error { n++; return stop })
	require.ErrorIs(t, err, stop)
	require.Equal(t, 1, n)
}

func TestJournalConcurrentHandles(t *testing.T) {
	path := filepath.Join(t.TempDir(), JournalFile)
	const handles, each = 4, 25
	var wg sync.WaitGroup
	for h := range handles {
		j := openJournal(t, path) // each handle is its own open file, as in another process
		wg.Go(func() {
			for i := range each {
				_, err := j.Append(Entry{Kind: KindCharged, Data: map[string]any{"who": fmt.Sprintf("%d-%d", h, i), "pad": strings.Repeat("x", 4096)}})
				require.NoError(t, err)
			}
		})
	}
	wg.Wait()
	entries, rep := readAll(t, openJournal(t, path))
	require.Equal(t, handles*each, rep.Entries)
	seen := map[string]bool{}
	for i, e := range entries {
		require.Equal(t, int64(i+1), e.Seq)
		seen[e.Data["who"].(string)] = true
	}
	require.Len(t, seen, handles*each)
}

func TestJournalTornLastLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), JournalFile)
	j := openJournal(t, path)
	_, err := j.Append(Entry{Kind: KindProposed})
	require.NoError(t, err)
	// A crash in the middle of the next append.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"seq":2,"time":"2025-01-0`)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	restarted := openJournal(t, path)
	entries, rep := readAll(t, restarted)
	require.Len(t, entries, 1)
	require.Equal(t, ReadReport{Entries: 1, TornLine: 2, TornBytes: 26}, rep)

	e, err := restarted.Append(Entry{Kind: KindReviewed})
	require.NoError(t, err)
	require.Equal(t, int64(2), e.Seq)
	entries, rep = readAll(t, restarted)
	require.Len(t, entries, 2)
	require.Equal(t, ReadReport{Entries: 2}, rep)
	aside, err := os.ReadFile(path + ".torn")
	require.NoError(t, err)
	require.Equal(t, `{"seq":2,"time":"2025-01-0`+"\n", string(aside), "the torn fragment is kept for inspection")

	// The first handle had cached the file before the repair; it still
	// reads correctly.
	entries, rep = readAll(t, j)
	require.Len(t, entries, 2)
	require.Zero(t, rep.TornLine)
}

func TestJournalEdited(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(s string) string
		wantErr string
	}{
		{"malformed middle line", func(s string) string {
			lines := strings.SplitAfter(s, "\n")
			lines[1] = "not json\n"
			return strings.Join(lines, "")
		}, JournalFile + ":2: not a journal entry"},
		{"line removed", func(s string) string {
			lines := strings.SplitAfter(s, "\n")
			return lines[0] + lines[2]
		}, JournalFile + ":2: entry has seq 3 where 2 was due"},
		{"lines swapped", func(s string) string {
			lines := strings.SplitAfter(s, "\n")
			return lines[1] + lines[0] + lines[2]
		}, ":1: entry has seq 2 where 1 was due"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), JournalFile)
			j := openJournal(t, path)
			for range 3 {
				_, err := j.Append(Entry{Kind: KindCharged})
				require.NoError(t, err)
			}
			raw, err := os.ReadFile(path)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(path, []byte(tt.edit(string(raw))), 0o644))

			fresh := openJournal(t, path)
			_, err = fresh.Read(func(Entry) error { return nil })
			require.ErrorContains(t, err, tt.wantErr)
			require.ErrorContains(t, err, "append-only and was edited")
			_, err = fresh.Append(Entry{Kind: KindCharged})
			require.ErrorContains(t, err, tt.wantErr, "nothing is appended to an edited journal")
		})
	}

	t.Run("shrunk under a running server", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), JournalFile)
		j := openJournal(t, path)
		for range 2 {
			_, err := j.Append(Entry{Kind: KindCharged})
			require.NoError(t, err)
		}
		require.NoError(t, os.Truncate(path, 10))
		_, err := j.Append(Entry{Kind: KindCharged})
		require.ErrorContains(t, err, "shrank")
	})
}

func TestOpenJournalError(t *testing.T) {
	dir := t.TempDir()
	blocker := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(blocker, nil, 0o644))
	_, err := OpenJournal(filepath.Join(blocker, JournalFile))
	require.ErrorContains(t, err, "open journal")
}

func BenchmarkJournalAppend(b *testing.B) {
	j, err := OpenJournal(filepath.Join(b.TempDir(), JournalFile))
	require.NoError(b, err)
	defer j.Close()
	for b.Loop() {
		if _, err := j.Append(Entry{Kind: KindCharged, Data: map[string]any{"usd": 0.01}}); err != nil {
			b.Fatal(err)
		}
	}
}
