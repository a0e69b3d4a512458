// Package datasettest finds the shared benchmark subsets (shared/data beside
// the repository) for tests. The data is read in place and never copied into
// the repository; a test whose data is absent is skipped with a loud message,
// never passed silently.
package datasettest

import (
	"os"
	"path/filepath"
	"testing"
)

// SharedFile returns the path of shared/data/name, found by walking up from
// the test's working directory, or skips the test saying what did not run.
func SharedFile(t testing.TB, name string) string {
	t.Helper()
	start, err := os.Getwd()
	if err != nil {
		t.Fatalf("working directory: %v", err)
	}
	for dir := start; ; {
		p := filepath.Join(dir, "shared", "data", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skipf("SKIPPED LOUDLY: shared/data/%s not found above %s; this test on real benchmark data did not run", name, start)
		}
		dir = parent
	}
}
