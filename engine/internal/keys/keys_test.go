package keys

import (
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGetCreatesOnceAndReadsBack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	_, err := Get(dir, "a.key", false)
	require.ErrorIs(t, err, fs.ErrNotExist, "without create a missing key is an error")

	// Racing creators (processes, here goroutines) agree on one key.
	var wg sync.WaitGroup
	got := make([][]byte, 8)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, err := Get(dir, "a.key", true)
			require.NoError(t, err)
			got[i] = k
		}()
	}
	wg.Wait()
	for _, k := range got {
		require.Len(t, k, 32)
		require.Equal(t, got[0], k)
	}
	again, err := Get(dir, "a.key", false)
	require.NoError(t, err)
	require.Equal(t, got[0], again)

	fi, err := os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o700), fi.Mode().Perm())
	fi, err = os.Stat(filepath.Join(dir, "a.key"))
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o600), fi.Mode().Perm())
}

// A link planted in place of a key (pointing at a key the planter knows)
// is refused, for creating and for reading callers alike.
func TestGetRefusesPlantedLinks(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	// The link stays inside the directory, where os.Root alone would
	// follow it.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "known.key"), make([]byte, 32), 0o600))
	require.NoError(t, os.Symlink("known.key", filepath.Join(dir, "b.key")))
	for _, create := range []bool{false, true} {
		_, err := Get(dir, "b.key", create)
		require.Error(t, err, "create=%v", create)
	}

	linked := filepath.Join(t.TempDir(), "linked")
	require.NoError(t, os.Symlink(dir, linked))
	_, err := Get(linked, "c.key", true)
	require.Error(t, err, "a key directory that is a link is refused")
}

func TestGetNarrowsWideModesAndRejectsDamage(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "d.key"), make([]byte, 32), 0o644))
	_, err := Get(dir, "d.key", false)
	require.NoError(t, err)
	fi, err := os.Stat(filepath.Join(dir, "d.key"))
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o600), fi.Mode().Perm())
	fi, err = os.Stat(dir)
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o700), fi.Mode().Perm())

	require.NoError(t, os.WriteFile(filepath.Join(dir, "e.key"), make([]byte, 10), 0o600))
	_, err = Get(dir, "e.key", true)
	require.ErrorContains(t, err, "corrupt (10 bytes, want 32)", "a damaged key is never replaced silently")
}
