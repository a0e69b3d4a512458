package main

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// terminalStream is a stream that says it is a terminal, standing in for
// one; reading it ends at once, as a terminal closed with Ctrl-D.
type terminalStream struct {
	io.Reader
	tty bool
}

func (s terminalStream) IsTerminal() bool { return s.tty }

// TestServeTerminalLine: started by hand on a terminal, fapo serve says in
// one line what it serves and how to register it; started by an MCP client
// with stdin and stdout piped, it prints nothing of its own.
func TestServeTerminalLine(t *testing.T) {
	ws := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(ws, "tenants"), 0o755))
	code, _, errOut := cliRun(t, nil, "init", filepath.Join(ws, "tenants", "demo"), "--task-type", "qa")
	require.Equal(t, 0, code, errOut)
	for _, tc := range []struct {
		name string
		tty  bool
		want string
	}{
		{"terminal", true, "fapo: serving 1 tenant (demo) of " + ws + " over MCP on stdin/stdout, waiting for an MCP client; register it with `fapo register claude --write` or `fapo register codex --write` in " + ws},
		{"piped", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := runCLI(context.Background(), &cliEnv{
				stdin: terminalStream{strings.NewReader(""), tc.tty}, stdout: &out, stderr: &errb,
				getenv: func(k string) string {
					if k == "FAPO_HOME" {
						return filepath.Join(ws, "..", "home-"+tc.name)
					}
					return ""
				},
			}, []string{"serve", "--workspace", ws})
			require.Equal(t, 0, code, errb.String())
			if tc.want == "" {
				require.Empty(t, errb.String(), "an MCP client's server prints nothing of its own")
				return
			}
			lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
			require.Len(t, lines, 1, errb.String())
			require.True(t, strings.HasPrefix(lines[0], tc.want), lines[0])
		})
	}
}
