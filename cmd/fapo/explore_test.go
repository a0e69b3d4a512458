package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop/looptest"
)

func TestExploreRefusals(t *testing.T) {
	f := looptest.New(t, nil)
	loose := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(loose, []byte("0123456789abcdef0123"), 0o644))
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"non-loopback without token", []string{"--workspace", f.Dir, "--addr", "0.0.0.0:0"}, 2, "not a loopback address"},
		{"empty host without token", []string{"--workspace", f.Dir, "--addr", ":0"}, 2, "not a loopback address"},
		{"bad addr", []string{"--workspace", f.Dir, "--addr", "8765"}, 2, "want HOST:PORT"},
		{"stray argument", []string{"--workspace", f.Dir, "extra"}, 2, "unexpected argument"},
		{"unknown flag", []string{"--port", "1"}, 2, "flag provided but not defined"},
		{"not a workspace", []string{"--workspace", t.TempDir(), "--addr", "127.0.0.1:0"}, 1, "has no tenants/ directory"},
		{"readable token file", []string{"--workspace", f.Dir, "--addr", "0.0.0.0:0", "--token-file", loose}, 1, "readable by other users"},
		{"missing token file", []string{"--workspace", f.Dir, "--token-file", filepath.Join(t.TempDir(), "none")}, 1, "token file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := cliRun(t, nil, append([]string{"explore"}, tc.args...)...)
			require.Equal(t, tc.code, code, errOut)
			require.Contains(t, errOut, tc.msg)
		})
	}
	code, out, _ := cliRun(t, nil, "explore", "--help")
	require.Equal(t, 0, code)
	require.Contains(t, out, "--token-file")
}

// syncBuffer is a bytes.Buffer safe to read while the command writes.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestExploreServesUntilCancelled starts the command on a free port, reads
// the dashboard over HTTP, and stops it the way Ctrl-C does.
func TestExploreServesUntilCancelled(t *testing.T) {
	f := looptest.New(t, nil)
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("explore-test-token-0123\n"), 0o600))
	for _, tc := range []struct {
		name  string
		args  []string
		token string
	}{
		{"loopback", []string{"--addr", "127.0.0.1:0"}, ""},
		{"token", []string{"--addr", "127.0.0.1:0", "--token-file", tokenFile}, "explore-test-token-0123"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			var out, errb syncBuffer
			done := make(chan int, 1)
			go func() {
				done <- runCLI(ctx, &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }},
					append([]string{"explore", "--workspace", f.Dir}, tc.args...))
			}()
			urlRe := regexp.MustCompile(`at (http://127\.0\.0\.1:\d+/)`)
			var base string
			require.Eventually(t, func() bool {
				m := urlRe.FindStringSubmatch(out.String())
				if m != nil {
					base = m[1]
				}
				return m != nil
			}, 10*time.Second, 10*time.Millisecond, "no URL printed; stderr: %s", errb.String())

			req, err := http.NewRequest(http.MethodGet, base+"api/tenants", nil)
			require.NoError(t, err)
			if tc.token != "" {
				resp, err := http.DefaultClient.Do(req)
				require.NoError(t, err)
				resp.Body.Close()
				require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, resp.StatusCode, string(body))
			require.Contains(t, string(body), `"name": "capitals"`)

			cancel()
			select {
			case code := <-done:
				require.Equal(t, 0, code, errb.String())
			case <-time.After(10 * time.Second):
				t.Fatal("explore did not stop after cancellation")
			}
		})
	}
}
