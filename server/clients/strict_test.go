package clients_test

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/server/servertest"
)

// Strict mode's two accounts (README, "Strict mode"): the service account
// alone owns the sealed store and the workspace; the agent's account can
// read the workspace (train data, variants, train runs) and write none of it.
const (
	serviceUser = "fapo-svc"
	agentUser   = "fapo-agent"
)

// ensureUser creates a system account without a home or login shell
// unless it exists (tests may run more than once, and in parallel).
func ensureUser(t *testing.T, name string) *syscall.Credential {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		out, addErr := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
		if u, err = user.Lookup(name); err != nil {
			t.Fatalf("useradd %s: %v: %s", name, addErr, out)
		}
	}
	uid, err := strconv.ParseUint(u.Uid, 10, 32)
	require.NoError(t, err)
	gid, err := strconv.ParseUint(u.Gid, 10, 32)
	require.NoError(t, err)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}
}

// chownTree gives every file under dir to cred.
func chownTree(t *testing.T, dir string, cred *syscall.Credential) {
	t.Helper()
	require.NoError(t, filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(cred.Uid), int(cred.Gid))
	}))
}

// asUser runs a shell command under cred and returns its combined output.
func asUser(t *testing.T, cred *syscall.Credential, dir string, env []string, script string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", script)
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestStrictModeSeparateAccounts: fapo serve --http runs as the service
// account with $FAPO_HOME (0700) and the workspace its own, laid out as
// README tells operators to. As the agent's account, every way around the
// server fails at the OS level — reading the store, its token, the source
// dataset; editing tenant.toml; forging the journal or the state database;
// planting a file or link in the workspace — while the agent can read the
// train split, and the server answers its tools over HTTP with the bearer
// token, the agent's own `fapo register --check` included.
func TestStrictModeSeparateAccounts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("SKIP: strict mode test needs root to create the service and agent accounts (CI runs as root)")
	}
	if _, err := exec.LookPath("useradd"); err != nil {
		t.Skip("SKIP: strict mode test needs useradd to create the service and agent accounts")
	}
	svc := ensureUser(t, serviceUser)
	agent := ensureUser(t, agentUser)
	built := servertest.Binary(t)
	f := looptest.New(t, nil)

	// The binary where both accounts can run it.
	binDir, err := os.MkdirTemp("", "fapo-strict-bin-*")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(binDir) })
	require.NoError(t, os.Chmod(binDir, 0o755))
	bin := filepath.Join(binDir, "fapo")
	src, err := os.Open(built)
	require.NoError(t, err)
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	require.NoError(t, err)
	_, err = io.Copy(dst, src)
	require.NoError(t, err)
	require.NoError(t, errors.Join(src.Close(), dst.Close()))

	// The layout README gives: store 0700 and workspace owned by the
	// service account; the workspace's directories 0755 and files 0644, so
	// the agent reads train data but writes nothing the server trusts. The
	// test's temporary root is opened for traversal (not listing) only.
	for _, d := range []string{f.Dir, f.Home} {
		require.NoError(t, os.Chmod(filepath.Dir(d), 0o711))
	}
	tokenFile := filepath.Join(f.Home, "token")
	const token = "strict-mode-token-0123456789abcdef"
	require.NoError(t, os.WriteFile(tokenFile, []byte(token+"\n"), 0o600))
	chownTree(t, f.Home, svc)
	chownTree(t, f.Dir, svc)
	require.NoError(t, os.Chmod(f.Home, 0o700))
	url := servertest.StartHTTPAs(t, bin, f.Dir, f.Home, tokenFile, svc).URL

	store := dataset.OpenStore(f.Home)
	m, err := store.Manifest(looptest.Tenant)
	require.NoError(t, err)
	tenantDir := f.TenantDir()
	agentHome := t.TempDir()
	require.NoError(t, os.Chmod(filepath.Dir(agentHome), 0o711))
	chownTree(t, agentHome, agent)
	agentEnv := []string{"PATH=/usr/bin:/bin", "HOME=" + agentHome, "FAPO_HOME=" + f.Home, "FAPO_TOKEN=" + token}

	// The server works first: a session and a train run write the journal
	// and the state database, which the agent then tries to forge.
	c := strictClient(t, url, token)
	callTool(t, c, "start_session", map[string]any{"tenant": looptest.Tenant})
	callTool(t, c, "evaluate", map[string]any{"tenant": looptest.Tenant, "split": "train"})

	attacks := []struct {
		name, script string
	}{
		{"list the store", "ls " + f.Home},
		{"read the manifest", "cat " + store.ManifestPath(looptest.Tenant)},
		{"read the held-out split", "cat " + filepath.Join(f.Home, "tenants", looptest.Tenant, "validation.jsonl.enc")},
		{"read the token", "cat " + tokenFile},
		{"read the source dataset", "cat " + m.Source.Path},
		{"write the state database", "echo forged >> " + filepath.Join(f.Home, "state.db")},
		{"edit tenant.toml", "printf '\\n[scorer]\\nkind = \"command\"\\n' >> " + filepath.Join(tenantDir, "tenant.toml")},
		{"replace tenant.toml", "cp /etc/hostname " + filepath.Join(tenantDir, "tenant.toml.new") + " && mv " + filepath.Join(tenantDir, "tenant.toml.new") + " " + filepath.Join(tenantDir, "tenant.toml")},
		{"forge the journal mirror", `echo '{"kind":"reviewed","variant":"v0009","passed":true}' >> ` + filepath.Join(tenantDir, "journal.jsonl")},
		{"plant a session", "mkdir -p " + filepath.Join(tenantDir, "sessions", "s0002")},
		{"plant a run link into the store", "ln -s " + f.Home + " " + filepath.Join(tenantDir, "runs", "r-link")},
		{"edit train data", "echo '{}' >> " + filepath.Join(tenantDir, "data", "train.jsonl")},
	}
	for _, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			out, err := asUser(t, agent, agentHome, agentEnv, a.script)
			require.Error(t, err, "the agent's account could %s: %s", a.name, out)
			require.Contains(t, out, "Permission denied", out)
			for _, s := range append([]string{m.Source.SHA256, token}, f.HeldOutMarkers...) {
				require.NotContains(t, out, s)
			}
		})
	}

	// What the agent may do: read train data, and use the server.
	out, err := asUser(t, agent, agentHome, agentEnv, "head -c 200 "+filepath.Join(tenantDir, "data", "train.jsonl"))
	require.NoError(t, err, out)
	require.Contains(t, out, "case_id")
	out, err = asUser(t, agent, agentHome, agentEnv, bin+" register claude --workspace "+f.Dir+" --http "+url+" --check")
	require.NoError(t, err, out)
	require.Contains(t, out, "ok: fapo answered tools/list")
	require.Regexp(t, `ok: tenant capitals is sealed, \d+ train cases`, out)

	// And the server, after every attack, still trusts what it wrote.
	status := callTool(t, c, "session_status", map[string]any{"tenant": looptest.Tenant})
	require.Contains(t, status, `"session":"s0001"`)
	require.NotContains(t, status, "tampered")
	listed := callTool(t, c, "list_tenants", map[string]any{})
	require.Contains(t, listed, `"sealed":true`)

	// Without the token the server refuses.
	bad, err := client.NewStreamableHttpClient(url, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer wrong"}))
	require.NoError(t, err)
	defer bad.Close()
	_, err = bad.Initialize(context.Background(), initRequest())
	require.Error(t, err, "the server answered a wrong bearer token")
}

func initRequest() mcp.InitializeRequest {
	req := mcp.InitializeRequest{}
	req.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	req.Params.ClientInfo = mcp.Implementation{Name: "strict-mode-test", Version: "1"}
	return req
}

func strictClient(t *testing.T, url, token string) *client.Client {
	t.Helper()
	c, err := client.NewStreamableHttpClient(url, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}))
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	_, err = c.Initialize(context.Background(), initRequest())
	require.NoError(t, err)
	return c
}

// callTool calls a tool and returns its JSON text, failing on a tool error.
func callTool(t *testing.T, c *client.Client, name string, args map[string]any) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req := mcp.CallToolRequest{}
	req.Params.Name, req.Params.Arguments = name, args
	res, err := c.CallTool(ctx, req)
	require.NoError(t, err)
	var text []string
	for _, c := range res.Content {
		if tc, ok := c.(mcp.TextContent); ok {
			text = append(text, tc.Text)
		}
	}
	require.False(t, res.IsError, "%s: %s", name, strings.Join(text, "\n"))
	return strings.Join(text, "\n")
}
