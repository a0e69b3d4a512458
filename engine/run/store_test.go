package run

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
)

// TestSealedStoreKeepsCaseLogsEncrypted: a sealed store's case log holds
// no case id or score in plaintext, reads back with its key, refuses to
// read with another key or after a line was moved into another run, and
// its files are 0600 in 0700 directories.
func TestSealedStoreKeepsCaseLogsEncrypted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "runs")
	key := bytes.Repeat([]byte{7}, 32)
	store, err := NewSealedStore(dir, key)
	require.NoError(t, err)
	cases := makeCases(12)
	for i := range cases {
		cases[i].CaseID = "held-out-case-" + cases[i].CaseID // long enough never to occur in base64 by chance
	}
	r := &Runner{Store: store, Pipeline: &echoPipeline{}, Models: upperModel{n: nil}, Scorer: exactScorer{}}
	var started []string
	sum, err := r.Execute(context.Background(), sliceSource(cases), Options{Tenant: "t", Variant: "v0000", Split: dataset.Validation,
		Redact: true, OnStart: func(id string) error { started = append(started, id); return nil }})
	require.NoError(t, err)
	require.Equal(t, []string{sum.RunID}, started, "OnStart saw the run before it ran")

	raw, err := os.ReadFile(filepath.Join(dir, sum.RunID, casesFile))
	require.NoError(t, err)
	for _, c := range cases {
		require.NotContains(t, string(raw), c.CaseID)
	}
	require.NotContains(t, string(raw), "composite_score")
	for _, p := range []string{filepath.Join(dir, sum.RunID, casesFile), filepath.Join(dir, sum.RunID, summaryFile)} {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), p)
	}
	for _, p := range []string{dir, filepath.Join(dir, sum.RunID)} {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o700), fi.Mode().Perm(), p)
	}

	var ids []string
	require.NoError(t, store.Cases(sum.RunID, func(cr CaseResult) error { ids = append(ids, cr.CaseID); return nil }))
	require.Len(t, ids, len(cases))

	other, err := NewSealedStore(dir, bytes.Repeat([]byte{8}, 32))
	require.NoError(t, err)
	require.ErrorContains(t, other.Cases(sum.RunID, func(CaseResult) error { return nil }), "does not decrypt")

	// A line moved into another run does not decrypt there.
	moved := "r20300101T000000Z-abcdef"
	require.NoError(t, os.MkdirAll(filepath.Join(dir, moved), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, moved, casesFile), append(raw, raw...), 0o600))
	require.ErrorContains(t, store.Cases(moved, func(CaseResult) error { return nil }), "moved from another run")
}

// TestOnStartErrorStopsTheRun: a run the index refuses to record runs no
// case and leaves no directory.
func TestOnStartErrorStopsTheRun(t *testing.T) {
	dir := t.TempDir()
	store := NewStore(dir, false)
	p := &echoPipeline{}
	r := &Runner{Store: store, Pipeline: p, Models: upperModel{n: nil}, Scorer: exactScorer{}}
	_, err := r.Execute(context.Background(), sliceSource(makeCases(3)), Options{Split: dataset.Train,
		OnStart: func(string) error { return os.ErrPermission }})
	require.ErrorIs(t, err, os.ErrPermission)
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Empty(t, entries)
}

// TestCaseLogWritesInGroups: lines wait in memory for at most caseLogWait,
// then reach the file whole, without a close; close writes the rest.
func TestCaseLogWritesInGroups(t *testing.T) {
	store := NewStore(filepath.Join(t.TempDir(), "runs"), false)
	id, err := store.newRunDir(time.Now())
	require.NoError(t, err)
	log, err := store.openCaseLog(id)
	require.NoError(t, err)
	lines := func() int {
		n := 0
		_ = store.Cases(id, func(CaseResult) error { n++; return nil })
		return n
	}
	for i := range 3 {
		require.NoError(t, log.append(&CaseResult{CaseID: fmt.Sprint("c", i)}))
	}
	require.Eventually(t, func() bool { return lines() == 3 }, 5*time.Second, time.Millisecond,
		"a group is written after caseLogWait")
	for i := 3; i < 5; i++ {
		require.NoError(t, log.append(&CaseResult{CaseID: fmt.Sprint("c", i)}))
	}
	require.NoError(t, log.close())
	require.Equal(t, 5, lines(), "close writes what waits")
}
