// Package servertest supports end-to-end tests of the fapo binary: it builds
// cmd/fapo once per test process so that tests drive the real executable,
// the way MCP clients start it.
package servertest

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"syscall"
	"testing"
	"time"
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

var servingRe = regexp.MustCompile(`serving MCP at (http://\S+/mcp)`)

// StartHTTP runs `fapo serve --http` on a loopback port over workspace,
// with home as the sealed store and token in a 0600 token file, and returns
// the MCP URL. The server stops when the test ends.
func StartHTTP(t testing.TB, bin, workspace, home, token string) string {
	t.Helper()
	return StartHTTPServer(t, bin, workspace, home, token).URL
}

// Server is a running `fapo serve --http`.
type Server struct {
	URL string
	cmd *exec.Cmd
}

// Kill ends the server with SIGKILL, as a crash or kill -9 would: no
// deferred function, no cleanup runs. It returns once the process is gone.
func (s *Server) Kill(t testing.TB) {
	t.Helper()
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatalf("kill fapo serve: %v", err)
	}
	_ = s.cmd.Wait()
}

// StartHTTPServer is StartHTTP for tests that need the process itself,
// e.g. to kill it mid-call.
func StartHTTPServer(t testing.TB, bin, workspace, home, token string) *Server {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return StartHTTPAs(t, bin, workspace, home, tokenFile, nil)
}

// StartHTTPAs is StartHTTPServer with the token already in tokenFile and, when
// cred is not nil, the server running under that account (strict mode),
// with home as its HOME too: cred must be able to run bin and read
// tokenFile.
func StartHTTPAs(t testing.TB, bin, workspace, home, tokenFile string, cred *syscall.Credential) *Server {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "serve", "--workspace", workspace, "--http", "127.0.0.1:0", "--token-file", tokenFile)
	cmd.Env = append(os.Environ(), "FAPO_HOME="+home)
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		cmd.Env = append(cmd.Env, "HOME="+home)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() }) // after Kill, Wait just reports it was called
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := servingRe.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
		}
	}()
	select {
	case u := <-urls:
		return &Server{URL: u, cmd: cmd}
	case <-time.After(30 * time.Second):
		t.Fatal("fapo serve --http did not report its address within 30 s")
		return nil
	}
}
