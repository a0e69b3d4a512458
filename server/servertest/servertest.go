// Package servertest supports end-to-end tests of the fapo binary: it builds
// cmd/fapo once per test process so that tests drive the real executable,
// the way MCP clients start it.
package servertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var build = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "fapo-e2e-*")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "fapo")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/fapo-dev/fapo/cmd/fapo").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build cmd/fapo: %v\n%s", err, out)
	}
	return bin, nil
})

// Binary returns the path of a freshly built fapo binary. End-to-end tests
// are skipped in -short mode, saying so.
func Binary(t testing.TB) string {
	t.Helper()
	if testing.Short() {
		t.Skip("SKIP: end-to-end test of the fapo binary; skipped in -short mode")
	}
	bin, err := build()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}
