package statedb

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestOpenRestrictsModesAndRefusesLinks(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	d, err := Open(home)
	require.NoError(t, err)
	require.NoError(t, d.RecordRun(context.Background(), RunRecord{Tenant: "a", ID: "r1", Split: "train", Variant: "v0000"}))
	require.NoError(t, d.Close())
	for _, p := range []string{home, filepath.Join(home, File)} {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		require.Zero(t, fi.Mode().Perm()&0o077, "%s is %v", p, fi.Mode())
	}

	other := filepath.Join(t.TempDir(), "other")
	require.NoError(t, os.MkdirAll(other, 0o700))
	require.NoError(t, os.Symlink(filepath.Join(home, File), filepath.Join(other, File)))
	_, err = Open(other)
	require.ErrorContains(t, err, "symbolic link")
}

// Two handles stand for two processes: their write transactions serialize
// instead of failing, and a read-then-write decision is never overtaken.
func TestWritesFromTwoHandlesSerialize(t *testing.T) {
	home := t.TempDir()
	a, err := Open(home)
	require.NoError(t, err)
	defer a.Close()
	b, err := Open(home)
	require.NoError(t, err)
	defer b.Close()
	ctx := context.Background()
	require.NoError(t, a.Migrate(ctx, `CREATE TABLE IF NOT EXISTS counter (n INTEGER NOT NULL) STRICT`,
		`INSERT INTO counter SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM counter)`))
	var wg sync.WaitGroup
	for _, d := range []*DB{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				require.NoError(t, d.Write(ctx, func(tx *sql.Tx) error {
					var n int
					if err := tx.QueryRowContext(ctx, `SELECT n FROM counter`).Scan(&n); err != nil {
						return err
					}
					_, err := tx.ExecContext(ctx, `UPDATE counter SET n = ?`, n+1)
					return err
				}))
			}
		}()
	}
	wg.Wait()
	var n int
	require.NoError(t, b.SQL().QueryRow(`SELECT n FROM counter`).Scan(&n))
	require.Equal(t, 100, n)
}

func TestRunIndex(t *testing.T) {
	d, err := Open(t.TempDir())
	require.NoError(t, err)
	defer d.Close()
	ctx := context.Background()
	r := RunRecord{Tenant: "a", ID: "r20261201T000000Z-abcdef", Split: "train", Variant: "v0001"}
	require.NoError(t, d.RecordRun(ctx, r))
	require.NoError(t, d.RecordRun(ctx, r), "a resume records the same run again")
	r2 := r
	r2.Variant = "v0002"
	require.ErrorContains(t, d.RecordRun(ctx, r2), "not a train run of v0002")
	got, ok, err := d.Run(ctx, "a", r.ID)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "v0001", got.Variant)
	_, ok, err = d.Run(ctx, "b", r.ID)
	require.NoError(t, err)
	require.False(t, ok, "runs are per tenant")
	list, err := d.Runs(ctx, "a", "train")
	require.NoError(t, err)
	require.Len(t, list, 1)
}

// TestOpenReadOnly: a viewer reads what a writer committed, beside it, and
// can write nothing; a missing database is not created.
func TestOpenReadOnly(t *testing.T) {
	home := t.TempDir()
	_, err := OpenReadOnly(home)
	require.ErrorIs(t, err, os.ErrNotExist)
	_, statErr := os.Stat(filepath.Join(home, File))
	require.True(t, os.IsNotExist(statErr), "a reader creates no database")

	w, err := Open(home)
	require.NoError(t, err)
	defer w.Close()
	ctx := context.Background()
	require.NoError(t, w.RecordRun(ctx, RunRecord{Tenant: "a", ID: "r1", Split: "train", Variant: "v0000"}))
	r, err := OpenReadOnly(home)
	require.NoError(t, err)
	defer r.Close()
	_, ok, err := r.Run(ctx, "a", "r1")
	require.NoError(t, err)
	require.True(t, ok)
	require.NoError(t, w.RecordRun(ctx, RunRecord{Tenant: "a", ID: "r2", Split: "train", Variant: "v0000"}))
	runs, err := r.Runs(ctx, "a", "")
	require.NoError(t, err)
	require.Len(t, runs, 2, "the reader sees later commits")
	err = r.RecordRun(ctx, RunRecord{Tenant: "a", ID: "r3", Split: "train", Variant: "v0000"})
	require.Error(t, err, "a read-only handle writes nothing")
	_, err = r.SQL().ExecContext(ctx, `DELETE FROM runs`)
	require.Error(t, err)

	other := t.TempDir()
	require.NoError(t, os.Symlink(filepath.Join(home, File), filepath.Join(other, File)))
	_, err = OpenReadOnly(other)
	require.ErrorContains(t, err, "not a regular file")
}
