package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/fapo-dev/fapo/engine/dataset"
)

// The client's own sandbox is the second wall around the sealed store: the
// server never hands held-out content out, but the agent also has file
// tools and a shell running as the user. register --write configures the
// client so that neither reaches $FAPO_HOME, and --check says whether that
// configuration can hold on this machine.

// sealedSources lists the source files sealed into the store at home that
// still exist: a user's cases.jsonl holds the held-out cases in plain text,
// so the agent must not read it either. Missing ones (a deleted temporary
// file) are left out: there is nothing to read, and bubblewrap cannot mask
// a path that does not exist.
func sealedSources(home string) []string {
	dirs, err := os.ReadDir(filepath.Join(home, "tenants"))
	if err != nil {
		return nil
	}
	store := dataset.OpenStore(home)
	var out []string
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		m, err := store.Manifest(d.Name())
		if err != nil || m.Source.Path == "" || !filepath.IsAbs(m.Source.Path) {
			continue
		}
		if info, err := os.Stat(m.Source.Path); err == nil && info.Mode().IsRegular() && !slices.Contains(out, m.Source.Path) {
			out = append(out, m.Source.Path)
		}
	}
	sort.Strings(out)
	return out
}

// deniedPaths is what the agent's tools must not read or write: the
// sealed store and the sources sealed into it.
func (r *registration) deniedPaths() []string {
	if r.Home == "" {
		return nil
	}
	return append([]string{r.Home}, r.Sources...)
}

// claudeRulePath writes an absolute path the way Claude Code's permission
// rules want it: "//abs/path" (a single leading slash would be relative to
// the settings file).
func claudeRulePath(p string) string { return "/" + filepath.ToSlash(p) }

// claudeGuard is what register --write puts into .claude/settings.json.
type claudeGuard struct {
	deny      []string // permissions.deny rules
	denyRead  []string // sandbox.filesystem.denyRead
	denyWrite []string // sandbox.filesystem.denyWrite
}

// claudeGuard: Read/Edit/Write deny rules govern Claude's own file tools,
// the sandbox governs Bash and everything it starts; neither alone is
// enough. The settings files and .mcp.json are denied to both as well:
// Claude Code reloads its settings while it runs, so an agent that could
// edit them could switch the sandbox off mid-session.
func (r *registration) claudeGuard() claudeGuard {
	var g claudeGuard
	for i, p := range r.deniedPaths() {
		pattern := claudeRulePath(p)
		if i == 0 { // the store is a directory
			pattern += "/**"
		}
		for _, tool := range []string{"Read", "Edit", "Write"} {
			g.deny = append(g.deny, tool+"("+pattern+")")
		}
		g.denyRead = append(g.denyRead, p)
		g.denyWrite = append(g.denyWrite, p)
	}
	own := []string{filepath.Join(r.Workspace, ".claude"), filepath.Join(r.Workspace, ".mcp.json")}
	g.deny = append(g.deny, "Edit("+claudeRulePath(own[0])+"/**)", "Write("+claudeRulePath(own[0])+"/**)",
		"Edit("+claudeRulePath(own[1])+")", "Write("+claudeRulePath(own[1])+")")
	g.denyWrite = append(g.denyWrite, own...)
	return g
}

// sandboxSettings are the fixed sandbox keys: on, refuse to run Bash at
// all when the sandbox cannot start (rather than silently unsandboxed),
// no per-command escape hatch, and no prompt for sandboxed commands (the
// sandbox is what makes them safe).
var sandboxSettings = map[string]bool{
	"enabled":                  true,
	"failIfUnavailable":        true,
	"autoAllowBashIfSandboxed": true,
	"allowUnsandboxedCommands": false,
}

// mergeClaudeSandbox adds the guard to .claude/settings.json, keeping every
// other setting (and every other rule) as the user wrote it.
func mergeClaudeSandbox(path string, g claudeGuard) error {
	top := map[string]any{}
	if b, err := os.ReadFile(path); err == nil {
		if len(bytes.TrimSpace(b)) > 0 {
			if err := json.Unmarshal(b, &top); err != nil {
				return fmt.Errorf("%s is not a JSON object (%v): fix it, then run fapo register claude --write again", path, err)
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	object := func(parent map[string]any, key string) (map[string]any, error) {
		v, ok := parent[key]
		if !ok || v == nil {
			m := map[string]any{}
			parent[key] = m
			return m, nil
		}
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%s: %q is not an object: fix it, then run fapo register claude --write again", path, key)
		}
		return m, nil
	}
	addAll := func(parent map[string]any, key string, add []string) error {
		var list []any
		if v, ok := parent[key]; ok && v != nil {
			if list, ok = v.([]any); !ok {
				return fmt.Errorf("%s: %q is not a list: fix it, then run fapo register claude --write again", path, key)
			}
		}
		for _, a := range add {
			if !slices.Contains(list, any(a)) {
				list = append(list, a)
			}
		}
		parent[key] = list
		return nil
	}
	perms, err := object(top, "permissions")
	if err != nil {
		return err
	}
	if err := addAll(perms, "deny", g.deny); err != nil {
		return err
	}
	sandbox, err := object(top, "sandbox")
	if err != nil {
		return err
	}
	for k, v := range sandboxSettings {
		sandbox[k] = v
	}
	fsys, err := object(sandbox, "filesystem")
	if err != nil {
		return err
	}
	if err := addAll(fsys, "denyRead", g.denyRead); err != nil {
		return err
	}
	if err := addAll(fsys, "denyWrite", g.denyWrite); err != nil {
		return err
	}
	out, err := json.MarshalIndent(top, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return writeFileAtomic(path, append(out, '\n'), 0o644)
}

// claudeGuardProblems says what .claude/settings.json lacks of the guard.
func claudeGuardProblems(path string, g claudeGuard) []string {
	b, err := os.ReadFile(path)
	if err != nil {
		return []string{fmt.Sprintf("%s does not exist: run fapo register claude --write", path)}
	}
	var st struct {
		Permissions struct {
			Deny []string `json:"deny"`
		} `json:"permissions"`
		Sandbox map[string]any `json:"sandbox"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return []string{fmt.Sprintf("%s is not valid JSON (%v)", path, err)}
	}
	var out []string
	for _, rule := range g.deny {
		if !slices.Contains(st.Permissions.Deny, rule) {
			out = append(out, "permissions.deny lacks "+rule)
		}
	}
	for k, v := range sandboxSettings {
		if st.Sandbox[k] != v {
			out = append(out, fmt.Sprintf("sandbox.%s is not %v", k, v))
		}
	}
	fsys, _ := st.Sandbox["filesystem"].(map[string]any)
	for key, want := range map[string][]string{"denyRead": g.denyRead, "denyWrite": g.denyWrite} {
		have, _ := fsys[key].([]any)
		for _, p := range want {
			if !slices.Contains(have, any(p)) {
				out = append(out, fmt.Sprintf("sandbox.filesystem.%s lacks %s", key, p))
			}
		}
	}
	sort.Strings(out)
	return out
}

// bwrapProbeTimeout bounds the bubblewrap probe.
const bwrapProbeTimeout = 10 * time.Second

// claudeSandboxProblem says why Claude Code's Bash sandbox cannot run
// here, or "" when it can: on Linux it needs bubblewrap (that can create
// its namespaces, which some containers forbid) and socat; on macOS it
// uses Seatbelt, which ships with the system.
func claudeSandboxProblem(ctx context.Context, getenv func(string) string) string {
	switch runtime.GOOS {
	case "darwin":
		if _, err := os.Stat("/usr/bin/sandbox-exec"); err != nil {
			return "/usr/bin/sandbox-exec (Seatbelt) is missing"
		}
		return ""
	case "linux":
		var missing []string
		for _, tool := range []string{"bwrap", "socat"} {
			if _, err := lookPath(tool, getenv("PATH")); err != nil {
				missing = append(missing, tool)
			}
		}
		if len(missing) > 0 {
			return "not on PATH: " + strings.Join(missing, ", ") + " (Debian/Ubuntu: apt-get install bubblewrap socat)"
		}
		bwrap, _ := lookPath("bwrap", getenv("PATH"))
		ctx, cancel := context.WithTimeout(ctx, bwrapProbeTimeout)
		defer cancel()
		if out, err := exec.CommandContext(ctx, bwrap, "--ro-bind", "/", "/", "true").CombinedOutput(); err != nil {
			return fmt.Sprintf("bubblewrap cannot create its sandbox here (%v: %s): allow unprivileged user namespaces, or use strict mode", err, strings.TrimSpace(string(out)))
		}
		return ""
	default:
		return "Claude Code has no Bash sandbox on " + runtime.GOOS
	}
}

// lookPath is exec.LookPath over the PATH the client will have.
func lookPath(name, path string) (string, error) {
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		if info, err := os.Stat(p); err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", exec.ErrNotFound
}

// checkClaudeSandbox is the sandbox part of register claude --check.
func checkClaudeSandbox(ctx context.Context, env *cliEnv, r *registration) {
	w := env.stdout
	if r.Home == "" {
		fmt.Fprintln(w, "note: an HTTP server's store is not on this account's reach only in strict mode (see README, Strict mode)")
		return
	}
	if p := claudeSandboxProblem(ctx, env.getenv); p != "" {
		fmt.Fprintf(w, "warning: Claude Code's Bash sandbox cannot run here: %s; with failIfUnavailable Bash refuses to run\n", p)
	} else {
		fmt.Fprintln(w, "ok: Claude Code's Bash sandbox can run here")
	}
	settings := filepath.Join(r.Workspace, ".claude", "settings.json")
	if problems := claudeGuardProblems(settings, r.claudeGuard()); len(problems) > 0 {
		fmt.Fprintf(w, "warning: %s does not keep the agent out of %s: %s; run fapo register claude --write\n",
			settings, strings.Join(r.deniedPaths(), ", "), strings.Join(problems, "; "))
	} else {
		fmt.Fprintf(w, "ok: %s denies %s to Claude's file tools and to the Bash sandbox\n", settings, strings.Join(r.deniedPaths(), ", "))
	}
}

// checkCodexSandbox is the sandbox part of register codex --check: Codex
// runs the agent's commands with its permission profile, and bundles its
// own bubblewrap on Linux.
func checkCodexSandbox(w io.Writer, r *registration, target string) {
	if r.Home == "" {
		fmt.Fprintln(w, "note: an HTTP server's store is not on this account's reach only in strict mode (see README, Strict mode)")
		return
	}
	var st codexState
	b, _ := os.ReadFile(target)
	if _, err := toml.Decode(string(b), &st); err != nil {
		return // reported by readRegistration already
	}
	fs := st.Permissions[codexProfile].Filesystem
	var missing []string
	for _, p := range r.deniedPaths() {
		if fs[p] != "none" {
			missing = append(missing, p)
		}
	}
	switch {
	case st.SandboxMode != "":
		fmt.Fprintf(w, "warning: sandbox_mode = %q in %s makes Codex ignore permission profiles: its sandbox can read %s; remove sandbox_mode\n", st.SandboxMode, target, r.Home)
	case st.DefaultPermissions != codexProfile:
		fmt.Fprintf(w, "warning: default_permissions in %s is %q, not %q: the agent's commands can read %s; run fapo register codex --write\n", target, st.DefaultPermissions, codexProfile, r.Home)
	case len(missing) > 0:
		fmt.Fprintf(w, "warning: the permission profile %q does not deny %s; run fapo register codex --write\n", codexProfile, strings.Join(missing, ", "))
	default:
		fmt.Fprintf(w, "ok: Codex's sandbox (permission profile %q) denies the agent's commands %s\n", codexProfile, strings.Join(r.deniedPaths(), ", "))
	}
}
