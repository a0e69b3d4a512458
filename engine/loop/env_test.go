package loop_test

import (
	"bytes"
	"context"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/engine/statedb"
)

// cachedScopes counts the tenant's cache entries per scope.
func cachedScopes(t *testing.T, home string) map[string]int {
	t.Helper()
	db, err := statedb.Open(home)
	require.NoError(t, err)
	defer db.Close()
	rows, err := db.SQL().Query(`SELECT scope, COUNT(*) FROM cached_responses WHERE tenant = ? GROUP BY scope`, tenantName)
	require.NoError(t, err)
	defer rows.Close()
	out := map[string]int{}
	for rows.Next() {
		var scope string
		var n int
		require.NoError(t, rows.Scan(&scope, &n))
		out[scope] = n
	}
	require.NoError(t, rows.Err())
	return out
}

// TestResponseCacheScopesAndSealing: a validation run's answers are cached
// in the held-out scope and a train run's in the train scope; none of them
// (the double's answers quote each question's country) is readable in any
// file of the sealed store, while the workspace is open or after it closed.
func TestResponseCacheScopesAndSealing(t *testing.T) {
	f := looptest.New(t, nil)
	w, err := loop.Open(f.Dir, loop.Options{Home: f.Home, Getenv: func(string) string { return "" }})
	require.NoError(t, err)
	ctx := context.Background()
	_, err = w.EvaluateForOperator(ctx, loop.RunRequest{Tenant: tenantName, Split: dataset.Validation})
	require.NoError(t, err)
	_, err = w.EvaluateForOperator(ctx, loop.RunRequest{Tenant: tenantName, Split: dataset.Train})
	require.NoError(t, err)

	scan := func(when string) {
		require.NoError(t, filepath.WalkDir(f.Home, func(p string, d fs.DirEntry, err error) error {
			require.NoError(t, err)
			if d.IsDir() {
				return nil
			}
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			// Every answer of the double is "The capital of X is Y.".
			require.False(t, bytes.Contains(b, []byte("capital of")), "%s: %s holds a model answer in plaintext", when, p)
			if strings.HasPrefix(filepath.Base(p), statedb.File) || filepath.Base(filepath.Dir(p)) == "keys" {
				info, err := d.Info()
				require.NoError(t, err)
				require.Equal(t, fs.FileMode(0o600), info.Mode().Perm(), p)
			}
			return nil
		}))
	}
	// The cache commits within its group's wait; then the WAL holds it.
	require.Eventually(t, func() bool { return cachedScopes(t, f.Home)["train"] > 0 }, 5*time.Second, 10*time.Millisecond)
	scan("open")
	require.NoError(t, w.Close())
	scan("closed")

	m, err := dataset.OpenStore(f.Home).Manifest(tenantName)
	require.NoError(t, err)
	scopes := cachedScopes(t, f.Home)
	require.Equal(t, m.Counts.Of(dataset.Validation), scopes["heldout"], "one held-out entry per validation case")
	require.Equal(t, m.Counts.Of(dataset.Train), scopes["train"], "one train entry per train case")
	for _, dir := range []string{f.Home, filepath.Join(f.Home, "keys")} {
		info, err := os.Stat(dir)
		require.NoError(t, err)
		require.Equal(t, fs.FileMode(0o700), info.Mode().Perm(), dir)
	}
}

// TestLegacyPlaintextCacheDeleted: the bbolt cache of earlier versions, which
// kept answers in plaintext, is deleted when the tenant's cache opens, with
// one log line saying so.
func TestLegacyPlaintextCacheDeleted(t *testing.T) {
	f := looptest.New(t, nil)
	legacy := filepath.Join(f.Home, "cache", tenantName, "responses.db")
	require.NoError(t, os.MkdirAll(filepath.Dir(legacy), 0o755))
	require.NoError(t, os.WriteFile(legacy, []byte("The capital of France is Paris."), 0o644))

	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&logs, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })

	w := open(t, f)
	_, err := w.EvaluateForOperator(context.Background(), loop.RunRequest{Tenant: tenantName, Split: dataset.Train, Limit: 2})
	require.NoError(t, err)
	_, err = os.Stat(legacy)
	require.ErrorIs(t, err, fs.ErrNotExist)
	_, err = os.Stat(filepath.Join(f.Home, "cache"))
	require.ErrorIs(t, err, fs.ErrNotExist, "the emptied directories go too")
	require.Equal(t, 1, strings.Count(logs.String(), "deleted the legacy response cache"), logs.String())
	require.Contains(t, logs.String(), legacy)
}
