package clients_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/loop/agenttest"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/engine/session"
)

const tenant = looptest.Tenant

// betterPrompt is the prompt fix the scripted agent proposes: the test
// double of the tenant's model answers bare city names when told to.
const betterPrompt = "Answer with " + looptest.BarePhrase + ", nothing else.\n\n{{.context.question}}\n"

// clientBin finds an installed client: in $FAPO_CLIENTS_BIN (set by
// .ci/run), else in the cache .ci/run installs into. A missing client
// skips the test loudly, naming what to install.
func clientBin(t *testing.T, name, pkg string) string {
	t.Helper()
	dirs := []string{os.Getenv("FAPO_CLIENTS_BIN")}
	if abs, err := filepath.Abs("../../.ci/cache/npm/node_modules/.bin"); err == nil {
		dirs = append(dirs, abs)
	}
	for _, d := range dirs {
		if d == "" {
			continue
		}
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("SKIP: %s not installed: %s is in neither $FAPO_CLIENTS_BIN (%q) nor .ci/cache/npm; run bash .ci/run or npm install --prefix .ci/cache/npm %s",
		pkg, name, os.Getenv("FAPO_CLIENTS_BIN"), pkg)
	return ""
}

// run executes a client command in its own process group, killing the
// group (the client and the fapo servers it started) on timeout or exit.
func run(t *testing.T, timeout time.Duration, dir string, env []string, name string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdin = strings.NewReader("")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // leftover servers
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("%s timed out after %v: %w", name, timeout, err)
	}
	return out.String(), errb.String(), err
}

// baseEnv is a minimal environment: an isolated HOME, PATH, the sealed
// store, and nothing of the developer's own client configuration.
func baseEnv(home string, f *looptest.Fixture, extra ...string) []string {
	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "FAPO_HOME=" + f.Home, "LANG=C.UTF-8", "TERM=dumb",
		"TMPDIR=" + os.TempDir(), "USER=fapo-test"}
	return append(env, extra...)
}

// register runs the real `fapo register CLIENT --write` the way a user would.
func register(t *testing.T, bin, client string, f *looptest.Fixture, env []string) string {
	t.Helper()
	// No --command: register writes its own absolute path, and PATH (from
	// the environment of go test) does not lead to this freshly built fapo,
	// so the clients below connect only because of that.
	out, errs, err := run(t, time.Minute, f.Dir, env, bin, "register", client, "--workspace", f.Dir, "--write")
	require.NoError(t, err, "fapo register %s --write: %s%s", client, out, errs)
	out, errs, err = run(t, time.Minute, f.Dir, env, bin, "register", client, "--workspace", f.Dir, "--check")
	require.NoError(t, err, "fapo register %s --check: %s%s", client, out, errs)
	require.Regexp(t, `ok: fapo answered tools/list with \d+ tools`, out)
	return out
}

// cycle is the scripted optimization session: start, evaluate train,
// inspect the failures, propose the prompt fix, review it, compare.
func cycle() agenttest.Script {
	var variant string
	return agenttest.Script{Steps: []agenttest.Step{
		func(string) agenttest.Call {
			return agenttest.Call{Tool: "start_session", Args: map[string]any{"tenant": tenant}}
		},
		func(string) agenttest.Call {
			return agenttest.Call{Tool: "evaluate", Args: map[string]any{"tenant": tenant, "split": "train"}}
		},
		func(prev string) agenttest.Call {
			return agenttest.Call{Tool: "inspect_cases", Args: map[string]any{"tenant": tenant,
				"run": agenttest.Field(prev, "run"), "failed": true, "limit": 2}}
		},
		func(string) agenttest.Call {
			return agenttest.Call{Tool: "propose_variant", Args: map[string]any{"tenant": tenant, "level": "prompt",
				"rationale":      "answers are full sentences; exact match needs the bare city",
				"target_cluster": "format @ answer",
				"prompts":        map[string]any{"answer": betterPrompt}}}
		},
		func(prev string) agenttest.Call {
			variant = agenttest.Field(prev, "variant")
			return agenttest.Call{Tool: "review_variant", Args: map[string]any{"tenant": tenant, "variant": variant}}
		},
		func(string) agenttest.Call {
			return agenttest.Call{Tool: "compare", Args: map[string]any{"tenant": tenant, "candidate": variant}}
		},
	}, Final: "Cycle done: the prompt fix was accepted."}
}

var cycleTools = []string{"start_session", "evaluate", "inspect_cases", "propose_variant", "review_variant", "compare"}

// journal reads the tenant's journal the way fapo keeps it.
func journal(t *testing.T, f *looptest.Fixture) []session.Entry {
	t.Helper()
	ws, err := loop.Open(f.Dir, loop.Options{Home: f.Home, Getenv: func(string) string { return "" }})
	require.NoError(t, err)
	defer ws.Close()
	entries, err := ws.Journal(tenant, 0)
	require.NoError(t, err)
	return entries
}

// requireAccepted asserts that the journal records the whole cycle, ending
// with the proposed variant accepted.
func requireAccepted(t *testing.T, f *looptest.Fixture) {
	t.Helper()
	kinds := map[session.Kind]int{}
	var accepted string
	for _, e := range journal(t, f) {
		kinds[e.Kind]++
		if e.Kind == session.KindAccepted {
			accepted = e.Variant
		}
	}
	for _, k := range []session.Kind{session.KindSessionStarted, session.KindEvaluated, session.KindProposed, session.KindReviewed, session.KindAccepted} {
		require.NotZero(t, kinds[k], "journal has no %s entry: %v", k, kinds)
	}
	require.Equal(t, "v0001", accepted)
}

// requireNoLeak asserts that nothing held out reached the client's model.
func requireNoLeak(t *testing.T, f *looptest.Fixture, model *agenttest.Server) {
	t.Helper()
	bodies := model.Bodies()
	require.NotEmpty(t, bodies)
	require.Empty(t, f.LeakedMarkers(bodies), "held-out content reached the model endpoint")
}

// placeholders are the names the clients' bubblewrap sandboxes mask in
// every writable root, /tmp included, leaving empty mount points behind on
// the host when they were missing.
var placeholders = []string{".git", ".claude", ".codex", ".agents"}

// keepTempClean removes the mount points a sandboxed client left in the
// shared temporary directory during the test: an empty /tmp/.git makes
// Claude Code treat every later workspace under /tmp as part of a
// repository rooted at /tmp, and key its trust and approval there.
// Only what appeared during the test, and holds nothing but empty files
// and directories, is removed.
func keepTempClean(t *testing.T) {
	t.Helper()
	tmp := os.TempDir()
	var fresh []string
	for _, name := range placeholders {
		if _, err := os.Lstat(filepath.Join(tmp, name)); errors.Is(err, os.ErrNotExist) {
			fresh = append(fresh, filepath.Join(tmp, name))
		}
	}
	t.Cleanup(func() {
		for _, p := range fresh {
			empty := true
			_ = filepath.Walk(p, func(_ string, info os.FileInfo, err error) error {
				if err != nil || (!info.IsDir() && info.Size() > 0) || info.Mode()&os.ModeSymlink != 0 {
					empty = false
				}
				return nil
			})
			if empty {
				_ = os.RemoveAll(p)
			}
		}
	})
}

// ownRepository makes the workspace a git repository of its own, as a
// user's usually is: Claude Code keys a project's trust and approval by
// its repository root, which must not depend on what else sits above it.
func ownRepository(t *testing.T, dir string) {
	t.Helper()
	if out, err := exec.Command("git", "init", "-q", dir).CombinedOutput(); err != nil {
		t.Logf("git init %s: %v: %s (Claude Code may then key trust by a repository above it)", dir, err, out)
	}
}
