package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/fapo-dev/fapo/engine/dataset"
)

const registerUsage = `Usage: fapo register claude|codex [--workspace DIR] [--http URL [--token-env NAME]] [--write [--force]] [--check]

Prints the exact registration of this fapo server for a coding agent:
  claude  the .mcp.json entry (project scope, in the workspace) and how to approve it
  codex   the [mcp_servers.fapo] block for ~/.codex/config.toml, with the approval line
          that tools which write need under codex exec

--write merges it into the client's files without touching other servers or settings:
  claude  .mcp.json, .claude/settings.local.json (approves fapo) and .claude/settings.json:
          deny rules keeping Claude's file tools out of the sealed store and the sealed
          source files, and the Bash sandbox (bubblewrap on Linux, Seatbelt on macOS)
          denying the agent's shell the same paths
  codex   $CODEX_HOME/config.toml (default ~/.codex/config.toml): the server block, and
          the permission profile "fapo" (default_permissions) whose sandbox cannot read
          the sealed store. A [mcp_servers.fapo] of another workspace is not replaced
          unless --force is given.
The server command is this binary's absolute path, so the client finds it off PATH.
--check starts the server the way the client will (the registration in that file when
there is one, else the printed one), calls tools/list and list_tenants through an MCP
client, and reports whether the client's sandbox can run here and keeps the agent out
of the sealed store.
`

// registerTimeout bounds --check: a server that has not answered tools/list
// by then would also time out in the clients (Codex waits 10 s by default).
const registerTimeout = 30 * time.Second

// codexEnvWhitelist is what Codex passes to a stdio MCP server besides the
// server's env and env_vars: it does not inherit the user's environment.
var codexEnvWhitelist = []string{"HOME", "LOGNAME", "PATH", "SHELL", "USER", "LANG", "LC_ALL", "TERM", "TMPDIR", "TZ"}

// registration is one server entry as a client stores it.
type registration struct {
	Client    string   // "claude" or "codex"
	Workspace string   // absolute
	Command   string   // stdio
	Args      []string // stdio
	EnvVars   []string // codex: names forwarded from the user's environment
	URL       string   // http
	TokenEnv  string   // http: the variable holding the bearer token
	// Home is the sealed store the stdio server uses (absolute), and
	// Sources the source files sealed into it that still exist: what the
	// client's sandbox must keep the agent from reading.
	Home    string
	Sources []string
}

func registerCommand() command {
	return command{
		name:    "register",
		summary: "print, write or check the registration for Claude Code or Codex",
		run: func(ctx context.Context, env *cliEnv, args []string) error {
			if len(args) == 0 || strings.HasPrefix(args[0], "-") {
				if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
					fmt.Fprint(env.stdout, registerUsage)
					return flag.ErrHelp
				}
				return usagef("name the client: fapo register claude or fapo register codex")
			}
			clientName := args[0]
			if clientName != "claude" && clientName != "codex" {
				return usagef("unknown client %q: fapo registers with claude (Claude Code) or codex (Codex)", clientName)
			}
			fs := newFlagSet(env, "register", registerUsage)
			workspace := fs.String("workspace", ".", "the directory holding tenants/ (written as an absolute path)")
			httpURL := fs.String("http", "", "register a running fapo serve --http server by `URL` (e.g. http://127.0.0.1:8765/mcp)")
			tokenEnv := fs.String("token-env", "FAPO_TOKEN", "with --http: the environment variable the client reads the bearer token from")
			home := fs.String("home", "", "sealed store passed to the server as --home (default: $FAPO_HOME when set)")
			commandPath := fs.String("command", "", "the fapo executable the client runs (default: this binary's absolute path, symlinks resolved)")
			write := fs.Bool("write", false, "apply the registration to the client's configuration file")
			force := fs.Bool("force", false, "with --write for codex: replace a [mcp_servers.fapo] that serves another workspace")
			check := fs.Bool("check", false, "start the server as the client will and call tools/list")
			if err := parseFlags(fs, args[1:]); err != nil {
				return err
			}
			if fs.NArg() > 0 {
				return usagef("unexpected argument %q", fs.Arg(0))
			}
			reg, err := newRegistration(env, clientName, *workspace, *httpURL, *tokenEnv, *home, *commandPath)
			if err != nil {
				return err
			}
			target, err := reg.configPath(env)
			if err != nil {
				return err
			}
			switch {
			case *write:
				if err := reg.write(env, target, *force); err != nil {
					return err
				}
			case !*check:
				reg.print(env.stdout, target)
			}
			if *check {
				return checkRegistration(ctx, env, reg, target)
			}
			return nil
		},
	}
}

func newRegistration(env *cliEnv, clientName, workspace, httpURL, tokenEnv, home, commandPath string) (*registration, error) {
	ws, err := filepath.Abs(workspace)
	if err != nil {
		return nil, err
	}
	if info, err := os.Stat(ws); err != nil || !info.IsDir() {
		return nil, fmt.Errorf("workspace %s is not a directory: pass --workspace with the directory that holds tenants/", ws)
	}
	reg := &registration{Client: clientName, Workspace: ws}
	if httpURL != "" {
		if !strings.HasPrefix(httpURL, "http://") && !strings.HasPrefix(httpURL, "https://") {
			return nil, usagef("--http %q is not a URL: give the address fapo serve --http printed, e.g. http://127.0.0.1:8765/mcp", httpURL)
		}
		if !regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`).MatchString(tokenEnv) {
			return nil, usagef("--token-env %q is not an environment variable name", tokenEnv)
		}
		reg.URL, reg.TokenEnv = httpURL, tokenEnv
		return reg, nil
	}
	if commandPath == "" {
		if commandPath, err = defaultCommand(); err != nil {
			return nil, err
		}
	}
	reg.Command = commandPath
	reg.Args = []string{"serve", "--workspace", ws}
	if home == "" {
		home = env.getenv("FAPO_HOME")
	}
	if home != "" {
		if home, err = filepath.Abs(home); err != nil {
			return nil, err
		}
		reg.Args = append(reg.Args, "--home", home)
	} else if home, err = dataset.DefaultHome(env.getenv); err != nil {
		home = "" // reported where it matters: no sandbox settings can name the store
	}
	if home != "" {
		reg.Home = home
		reg.Sources = sealedSources(home)
	}
	if clientName == "codex" {
		reg.EnvVars = append([]string{"FAPO_HOME"}, apiKeyEnvs(ws)...)
	}
	return reg, nil
}

// defaultCommand is this binary's absolute path with symlinks resolved: a
// bare "fapo" works only while fapo is on the PATH the client was started
// with, and a first install (`go install`) rarely puts it there, so the
// client would fail with ENOENT. The price is re-running register after
// moving the binary; --check says so when it has moved.
func defaultCommand() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("cannot tell where this fapo binary is (%v): pass --command PATH", err)
	}
	if resolved, err := filepath.EvalSymlinks(self); err == nil {
		self = resolved
	}
	return filepath.Abs(self)
}

var apiKeyEnvRe = regexp.MustCompile(`(?m)^\s*api_key_env\s*=\s*"([A-Za-z_][A-Za-z0-9_]*)"`)

// apiKeyEnvs lists the key variables the workspace's tenants name: Codex
// forwards only what env_vars lists, so without them the tenant's model
// calls would fail for want of a key.
func apiKeyEnvs(ws string) []string {
	files, _ := filepath.Glob(filepath.Join(ws, "tenants", "*", "tenant.toml"))
	seen := map[string]bool{}
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, m := range apiKeyEnvRe.FindAllStringSubmatch(string(b), -1) {
			if !seen[m[1]] {
				seen[m[1]] = true
				out = append(out, m[1])
			}
		}
	}
	sort.Strings(out)
	return out
}

func (r *registration) configPath(env *cliEnv) (string, error) {
	if r.Client == "claude" {
		return filepath.Join(r.Workspace, ".mcp.json"), nil
	}
	if h := env.getenv("CODEX_HOME"); h != "" {
		return filepath.Join(h, "config.toml"), nil
	}
	home := env.getenv("HOME")
	if home == "" {
		return "", errors.New("neither CODEX_HOME nor HOME is set: set CODEX_HOME to the directory of Codex's config.toml")
	}
	return filepath.Join(home, ".codex", "config.toml"), nil
}

// claudeEntry is the server's value under mcpServers in .mcp.json.
func (r *registration) claudeEntry() map[string]any {
	if r.URL != "" {
		// Claude Code expands ${VAR} in .mcp.json, so the token stays out of the file.
		return map[string]any{"type": "http", "url": r.URL,
			"headers": map[string]string{"Authorization": "Bearer ${" + r.TokenEnv + "}"}}
	}
	return map[string]any{"type": "stdio", "command": r.Command, "args": r.Args, "env": map[string]string{}}
}

// codexBlock is the TOML table for ~/.codex/config.toml; the comments are
// inside the table so a later --write replaces them with it.
func (r *registration) codexBlock() string {
	var b strings.Builder
	b.WriteString("[mcp_servers.fapo]\n")
	b.WriteString("# written by fapo register codex; fapo register codex --check verifies it\n")
	if r.URL != "" {
		fmt.Fprintf(&b, "url = %s\n", tomlString(r.URL))
		fmt.Fprintf(&b, "bearer_token_env_var = %s\n", tomlString(r.TokenEnv))
	} else {
		fmt.Fprintf(&b, "command = %s\n", tomlString(r.Command))
		fmt.Fprintf(&b, "args = %s\n", tomlStrings(r.Args))
		b.WriteString("# Codex passes servers no environment but these names (and HOME, PATH, ...)\n")
		fmt.Fprintf(&b, "env_vars = %s\n", tomlStrings(r.EnvVars))
		b.WriteString("startup_timeout_sec = 30\n")
	}
	b.WriteString("# evaluate and compare run the whole pipeline over a split: allow them minutes\n")
	b.WriteString("tool_timeout_sec = 900\n")
	b.WriteString("# start_session, evaluate, propose_variant, review_variant and compare write the\n")
	b.WriteString("# session state, so they are not read-only and codex exec (which never asks) would\n")
	b.WriteString("# refuse them without this line. The server enforces the rules either way.\n")
	b.WriteString("default_tools_approval_mode = \"approve\"\n")
	return b.String()
}

func tomlString(s string) string {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a JSON string is a valid TOML basic string
	return strings.TrimSpace(buf.String())
}

func tomlStrings(ss []string) string {
	parts := make([]string, len(ss))
	for i, s := range ss {
		parts[i] = tomlString(s)
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

func (r *registration) print(w io.Writer, target string) {
	if r.Client == "claude" {
		b, _ := json.MarshalIndent(map[string]any{"mcpServers": map[string]any{"fapo": r.claudeEntry()}}, "", "  ")
		fmt.Fprintf(w, "# %s (fapo register claude --write merges it in)\n%s\n\n", target, b)
		fmt.Fprint(w, claudeApprovalNote(r))
		return
	}
	fmt.Fprintf(w, "# %s (fapo register codex --write merges it in)\n%s\n", target, r.codexBlock())
	if r.Home != "" {
		fmt.Fprintf(w, "# and, with default_permissions = \"fapo\" at the top of the file, the sandbox of the agent's commands:\n%s\n",
			codexProfileBlock(r, nil))
	}
	if r.URL != "" {
		fmt.Fprintf(w, "Export %s with the server's bearer token before starting codex.\n", r.TokenEnv)
	}
}

func claudeApprovalNote(r *registration) string {
	// Checked with Claude Code 2.1.330 (server/clients TestClaudeCodeApproval).
	note := "Claude Code starts the servers of a project's .mcp.json only in a trusted project, once approved.\n" +
		"fapo register claude --write approves fapo in .claude/settings.local.json\n" +
		"({\"enabledMcpjsonServers\": [\"fapo\"]}); trust is yours to give: start claude once in\n" +
		r.Workspace + " and accept the trust prompt. Until then `claude mcp list` shows fapo\n" +
		"\"Pending approval\" (claude -p connects anyway); then it shows fapo connected, and\n" +
		"/mcp__fapo__optimize TENANT starts the playbook.\n"
	if r.URL != "" {
		note += "Export " + r.TokenEnv + " with the server's bearer token before starting claude.\n"
	} else if r.Home != "" {
		note += "--write also writes .claude/settings.json: deny rules and the Bash sandbox keeping the agent out of\n" +
			strings.Join(r.deniedPaths(), ", ") + " (on Linux the sandbox needs bubblewrap and socat).\n"
	}
	return note
}

func (r *registration) write(env *cliEnv, target string, force bool) error {
	if r.Client == "claude" {
		if err := mergeMCPJSON(target, r.claudeEntry()); err != nil {
			return err
		}
		local := filepath.Join(r.Workspace, ".claude", "settings.local.json")
		if err := approveInClaudeSettings(local); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "wrote mcpServers.fapo to %s\napproved fapo for this project in %s\n", target, local)
		if r.Home != "" {
			settings := filepath.Join(r.Workspace, ".claude", "settings.json")
			if err := mergeClaudeSandbox(settings, r.claudeGuard()); err != nil {
				return err
			}
			fmt.Fprintf(env.stdout, "wrote to %s: deny rules for Claude's file tools and the Bash sandbox, keeping the agent out of %s\n",
				settings, strings.Join(r.deniedPaths(), ", "))
		} else if r.URL != "" {
			fmt.Fprintln(env.stdout, "the server runs elsewhere (--http): no sandbox settings written; strict mode keeps the store out of the agent's account")
		} else {
			fmt.Fprintln(env.stdout, "warning: cannot tell where the sealed store is (no FAPO_HOME, no HOME): no sandbox settings written; pass --home DIR")
		}
		fmt.Fprintln(env.stdout, "Check it with: claude mcp list   (or fapo register claude --check)")
		return nil
	}
	notes, err := mergeCodexConfig(target, r, force)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "wrote [mcp_servers.fapo] to %s\n", target)
	for _, n := range notes {
		fmt.Fprintln(env.stdout, n)
	}
	fmt.Fprintln(env.stdout, "Check it with: codex mcp list   (or fapo register codex --check)")
	return nil
}

// mergeMCPJSON sets mcpServers.fapo and keeps every other key as it was.
func mergeMCPJSON(path string, entry map[string]any) error {
	top := map[string]json.RawMessage{}
	if b, err := os.ReadFile(path); err == nil {
		if len(bytes.TrimSpace(b)) > 0 {
			if err := json.Unmarshal(b, &top); err != nil {
				return fmt.Errorf("%s is not a JSON object (%v): fix or move it, then run fapo register claude --write again", path, err)
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	servers := map[string]json.RawMessage{}
	if raw, ok := top["mcpServers"]; ok {
		if err := json.Unmarshal(raw, &servers); err != nil {
			return fmt.Errorf("%s: mcpServers is not an object (%v): fix it, then run fapo register claude --write again", path, err)
		}
	}
	b, err := json.Marshal(entry)
	if err != nil {
		return err
	}
	servers["fapo"] = b
	if top["mcpServers"], err = json.Marshal(servers); err != nil {
		return err
	}
	out, err := json.MarshalIndent(top, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(out, '\n'), 0o644)
}

func approveInClaudeSettings(path string) error {
	top := map[string]json.RawMessage{}
	if b, err := os.ReadFile(path); err == nil {
		if err := json.Unmarshal(b, &top); err != nil {
			return fmt.Errorf("%s is not a JSON object (%v): fix it, then run fapo register claude --write again", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var enabled []string
	if raw, ok := top["enabledMcpjsonServers"]; ok {
		if err := json.Unmarshal(raw, &enabled); err != nil {
			return fmt.Errorf("%s: enabledMcpjsonServers is not a list of names (%v): fix it, then run again", path, err)
		}
	}
	for _, n := range enabled {
		if n == "fapo" {
			return nil
		}
	}
	b, err := json.Marshal(append(enabled, "fapo"))
	if err != nil {
		return err
	}
	top["enabledMcpjsonServers"] = b
	out, err := json.MarshalIndent(top, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return writeFileAtomic(path, append(out, '\n'), 0o644)
}

var tomlHeaderRe = regexp.MustCompile(`^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$`)

// tableKey splits a table header's dotted key into its unquoted parts.
func tableKey(key string) []string {
	parts := strings.Split(key, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return parts
}

// isFapoTable reports whether a table header names mcp_servers.fapo or one
// of its subtables (env, tools.NAME), or fapo's permission profile
// (permissions.fapo, permissions.fapo.filesystem), however it is quoted:
// the tables fapo register codex owns and rewrites.
func isFapoTable(key string) bool {
	parts := tableKey(key)
	return len(parts) >= 2 && (parts[0] == "mcp_servers" || parts[0] == "permissions") && parts[1] == codexProfile
}

// codexProfile names both the server block and the permission profile.
const codexProfile = "fapo"

// codexState is what mergeCodexConfig and --check read of config.toml.
type codexState struct {
	DefaultPermissions string `toml:"default_permissions"`
	SandboxMode        string `toml:"sandbox_mode"`
	MCPServers         map[string]struct {
		Command string   `toml:"command"`
		Args    []string `toml:"args"`
		URL     string   `toml:"url"`
	} `toml:"mcp_servers"`
	Permissions map[string]struct {
		Extends    string         `toml:"extends"`
		Filesystem map[string]any `toml:"filesystem"`
	} `toml:"permissions"`
}

// servedBy names what an existing fapo block serves: its workspace, or
// its URL.
func (c *codexState) servedBy() (string, bool) {
	e, ok := c.MCPServers[codexProfile]
	if !ok {
		return "", false
	}
	if e.URL != "" {
		return e.URL, true
	}
	if ws := argValue(e.Args, "--workspace"); ws != "" {
		return ws, true
	}
	return strings.TrimSpace(e.Command + " " + strings.Join(e.Args, " ")), true
}

// codexProfileBlock is fapo's permission profile: Codex's workspace
// sandbox (writes in the workspace roots, no network) with the sealed
// store and the sealed sources unreadable and unwritable ("none") for the
// agent's commands. Entries already in the profile are kept, so a store
// registered earlier stays denied.
func codexProfileBlock(r *registration, prior map[string]any) string {
	entries := map[string]string{}
	for k, v := range prior {
		if s, ok := v.(string); ok {
			entries[k] = s
		}
	}
	for _, p := range r.deniedPaths() {
		entries[p] = "none"
	}
	keys := make([]string, 0, len(entries))
	for k := range entries {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString("[permissions.fapo]\n")
	b.WriteString("# written by fapo register codex: Codex's workspace sandbox for the agent's commands,\n")
	b.WriteString("# which cannot read or write the sealed store (\"none\"). MCP servers are not\n")
	b.WriteString("# sandboxed, so fapo itself still reads it.\n")
	b.WriteString("extends = \":workspace\"\n\n")
	b.WriteString("[permissions.fapo.filesystem]\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s = %s\n", tomlString(k), tomlString(entries[k]))
	}
	return b.String()
}

// mergeCodexConfig replaces the tables fapo owns in config.toml (the
// server block and the permission profile), textually, so other servers,
// settings and comments stay as the user wrote them; both the old and the
// new text must parse. Codex has one [mcp_servers.fapo] for every
// workspace, so a block that serves another workspace is replaced only
// with force: silently switching it would disconnect the other one.
func mergeCodexConfig(path string, r *registration, force bool) ([]string, error) {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	var before codexState
	if _, err := toml.Decode(string(old), &before); err != nil {
		return nil, fmt.Errorf("%s does not parse as TOML (%v): fix it, then run fapo register codex --write again", path, err)
	}
	var kept []string
	inFapo := false
	for _, line := range strings.SplitAfter(string(old), "\n") {
		if m := tomlHeaderRe.FindStringSubmatch(line); m != nil {
			inFapo = isFapoTable(m[1])
		}
		if !inFapo {
			kept = append(kept, line)
		}
	}
	rest := strings.Join(kept, "")
	var without codexState
	if _, err := toml.Decode(rest, &without); err != nil {
		return nil, fmt.Errorf("%s: removing the old [mcp_servers.fapo] table left invalid TOML (%v): remove it by hand, then run again", path, err)
	}
	if _, ok := without.MCPServers[codexProfile]; ok {
		return nil, fmt.Errorf("%s defines mcp_servers.fapo as an inline table or dotted keys, which fapo register cannot rewrite: remove it, then run again", path)
	}
	if _, ok := without.Permissions[codexProfile]; ok {
		return nil, fmt.Errorf("%s defines permissions.fapo as an inline table or dotted keys, which fapo register cannot rewrite: remove it, then run again", path)
	}
	var notes []string
	want := r.Workspace
	if r.URL != "" {
		want = r.URL
	}
	if other, ok := before.servedBy(); ok && other != want {
		if !force {
			return nil, fmt.Errorf("%s already has [mcp_servers.fapo] for %s; Codex keeps one fapo server for all workspaces, so registering %s would disconnect it: run fapo register codex --write --force to switch it here", path, other, want)
		}
		notes = append(notes, "replaced the registration of "+other+" (--force)")
	}
	blocks := r.codexBlock()
	if r.Home != "" {
		blocks += "\n" + codexProfileBlock(r, before.Permissions[codexProfile].Filesystem)
		switch before.DefaultPermissions {
		case "":
			// A top-level key must precede every table: first line it is.
			rest = "# fapo register codex: the agent's commands run with the permission profile below\n" +
				"default_permissions = \"fapo\"\n\n" + rest
		case codexProfile:
		default:
			notes = append(notes, fmt.Sprintf("warning: default_permissions is %q, so Codex does not use fapo's profile: add %s = \"none\" to [permissions.%s.filesystem] yourself",
				before.DefaultPermissions, tomlString(r.Home), before.DefaultPermissions))
		}
		if before.SandboxMode != "" {
			notes = append(notes, fmt.Sprintf("warning: sandbox_mode = %q makes Codex ignore permission profiles, so its sandbox can read %s: remove sandbox_mode from %s",
				before.SandboxMode, r.Home, path))
		}
	}
	rest = strings.TrimRight(rest, "\n")
	text := blocks
	if rest != "" {
		text = rest + "\n\n" + blocks
	}
	var after map[string]any
	if _, err := toml.Decode(text, &after); err != nil {
		return nil, fmt.Errorf("%s: the merged configuration does not parse (%v); it was not written: add this block by hand:\n%s", path, err, blocks)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	return notes, writeFileAtomic(path, []byte(text), 0o600)
}

// readRegistration returns the fapo entry the client's file holds, or nil
// when it has none.
func readRegistration(reg *registration, target string) (*registration, error) {
	b, err := os.ReadFile(target)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	out := &registration{Client: reg.Client, Workspace: reg.Workspace}
	if reg.Client == "claude" {
		var f struct {
			MCPServers map[string]struct {
				Type    string            `json:"type"`
				Command string            `json:"command"`
				Args    []string          `json:"args"`
				URL     string            `json:"url"`
				Headers map[string]string `json:"headers"`
			} `json:"mcpServers"`
		}
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("%s is not valid JSON (%v): fix it or run fapo register claude --write", target, err)
		}
		e, ok := f.MCPServers["fapo"]
		if !ok {
			return nil, nil
		}
		out.Command, out.Args, out.URL = e.Command, e.Args, e.URL
		if m := regexp.MustCompile(`^Bearer \$\{(\w+)\}$`).FindStringSubmatch(e.Headers["Authorization"]); m != nil {
			out.TokenEnv = m[1]
		}
		return out, nil
	}
	var f struct {
		MCPServers map[string]struct {
			Command           string   `toml:"command"`
			Args              []string `toml:"args"`
			EnvVars           []string `toml:"env_vars"`
			URL               string   `toml:"url"`
			BearerTokenEnvVar string   `toml:"bearer_token_env_var"`
		} `toml:"mcp_servers"`
	}
	if _, err := toml.Decode(string(b), &f); err != nil {
		return nil, fmt.Errorf("%s does not parse as TOML (%v): fix it or run fapo register codex --write", target, err)
	}
	e, ok := f.MCPServers["fapo"]
	if !ok {
		return nil, nil
	}
	out.Command, out.Args, out.EnvVars, out.URL, out.TokenEnv = e.Command, e.Args, e.EnvVars, e.URL, e.BearerTokenEnvVar
	return out, nil
}

func checkRegistration(ctx context.Context, env *cliEnv, reg *registration, target string) error {
	use := reg
	if found, err := readRegistration(reg, target); err != nil {
		return err
	} else if found != nil {
		use = found
		fmt.Fprintf(env.stdout, "checking the fapo registration in %s\n", target)
	} else {
		fmt.Fprintf(env.stdout, "%s has no fapo registration yet; checking the one fapo register %s prints\n", target, reg.Client)
	}
	ctx, cancel := context.WithTimeout(ctx, registerTimeout)
	defer cancel()
	tools, tenants, err := listTools(ctx, env, use)
	if err != nil {
		return fmt.Errorf("the server did not answer tools/list: %w", err)
	}
	fmt.Fprintf(env.stdout, "ok: fapo answered tools/list with %d tools: %s\n", len(tools), strings.Join(tools, ", "))
	// tools/list works without any data; list_tenants shows whether the
	// server, in the client's environment, finds the sealed store.
	for _, t := range tenants {
		switch {
		case !t.Sealed:
			fmt.Fprintf(env.stdout, "warning: tenant %s is not sealed in the store this server uses: seal it, or pass the store with --home (or FAPO_HOME) when registering\n", t.Name)
		case len(t.Problems) > 0:
			fmt.Fprintf(env.stdout, "warning: tenant %s: %s\n", t.Name, strings.Join(t.Problems, "; "))
		default:
			fmt.Fprintf(env.stdout, "ok: tenant %s is sealed, %d train cases\n", t.Name, t.TrainCases)
		}
	}
	if tenants != nil && len(tenants) == 0 {
		fmt.Fprintf(env.stdout, "warning: the workspace %s has no tenants yet: fapo init tenants/NAME\n", reg.Workspace)
	}
	guarded := *reg
	if use.URL != "" {
		guarded.Home = ""
	} else if h := argValue(use.Args, "--home"); h != "" {
		guarded.Home, guarded.Sources = h, sealedSources(h)
	}
	if reg.Client == "claude" {
		checkClaudeSandbox(ctx, env, &guarded)
	} else {
		checkCodexSandbox(env.stdout, &guarded, target)
	}
	return nil
}

// argValue returns the value after flag in args, or "".
func argValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}

// checkedTenant is what --check reads of list_tenants.
type checkedTenant struct {
	Name       string   `json:"name"`
	Sealed     bool     `json:"sealed"`
	TrainCases int      `json:"train_cases"`
	Problems   []string `json:"problems"`
}

func listTools(ctx context.Context, env *cliEnv, r *registration) ([]string, []checkedTenant, error) {
	var c *client.Client
	stderr := &lockedBuffer{}
	if r.URL != "" {
		token := env.getenv(r.TokenEnv)
		if token == "" {
			return nil, nil, fmt.Errorf("%s is empty: export it with the server's bearer token (the client reads it from there)", r.TokenEnv)
		}
		var err error
		c, err = client.NewStreamableHttpClient(r.URL, transport.WithHTTPHeaders(map[string]string{"Authorization": "Bearer " + token}))
		if err != nil {
			return nil, nil, err
		}
	} else {
		if r.Command == "" {
			return nil, nil, errors.New("the registration has neither a command nor a url")
		}
		t := transport.NewStdioWithOptions(r.Command, nil, r.Args,
			transport.WithCommandFunc(func(ctx context.Context, command string, _ []string, args []string) (*exec.Cmd, error) {
				cmd := exec.CommandContext(ctx, command, args...)
				cmd.Dir = r.Workspace
				cmd.Env = serverEnv(env, r)
				return cmd, nil
			}),
			transport.WithCommandStderrWriter(stderr))
		c = client.NewClient(t)
	}
	defer closeAndLog(c)
	if err := c.Start(ctx); err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", describe(r), err)
	}
	init := mcp.InitializeRequest{}
	init.Params.ProtocolVersion = mcp.LATEST_PROTOCOL_VERSION
	init.Params.ClientInfo = mcp.Implementation{Name: "fapo-register-check", Version: versionString()}
	if _, err := c.Initialize(ctx, init); err != nil {
		return nil, nil, withStderr(fmt.Errorf("initialize with %s: %w", describe(r), err), stderr)
	}
	res, err := c.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil {
		return nil, nil, withStderr(fmt.Errorf("tools/list with %s: %w", describe(r), err), stderr)
	}
	names := make([]string, len(res.Tools))
	for i, t := range res.Tools {
		names[i] = t.Name
	}
	sort.Strings(names)
	call := mcp.CallToolRequest{}
	call.Params.Name = "list_tenants"
	call.Params.Arguments = map[string]any{}
	lt, err := c.CallTool(ctx, call)
	if err != nil || lt.IsError {
		return names, nil, nil // tools/list is what the check promises
	}
	var out struct {
		Tenants []checkedTenant `json:"tenants"`
	}
	if b, err := json.Marshal(lt.StructuredContent); err == nil && json.Unmarshal(b, &out) == nil && out.Tenants != nil {
		return names, out.Tenants, nil
	}
	return names, nil, nil
}

// serverEnv is the environment the client gives the server: Claude Code
// passes its own; Codex only a few basics plus env_vars.
func serverEnv(env *cliEnv, r *registration) []string {
	var out []string
	names := append(append([]string{}, codexEnvWhitelist...), r.EnvVars...)
	if r.Client == "claude" {
		out = os.Environ()
		names = []string{"HOME", "PATH", "FAPO_HOME"}
	}
	seen := map[string]bool{}
	for _, n := range names {
		if v := env.getenv(n); v != "" && !seen[n] {
			seen[n] = true
			out = append(out, n+"="+v)
		}
	}
	return out
}

func describe(r *registration) string {
	if r.URL != "" {
		return r.URL
	}
	return strings.Join(append([]string{r.Command}, r.Args...), " ")
}

func withStderr(err error, stderr *lockedBuffer) error {
	// The transport copies the server's stderr from a pipe on its own
	// goroutine, so a server that died may have said why a moment after
	// the failure arrived: let the copy settle before reading it.
	last := -1
	for range 10 {
		if n := len(stderr.String()); n > 0 && n == last {
			break
		} else {
			last = n
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s := strings.TrimSpace(stderr.String()); s != "" {
		if len(s) > 2000 {
			s = "…" + s[len(s)-2000:]
		}
		return fmt.Errorf("%w\nserver stderr:\n%s", err, s)
	}
	return err
}

// lockedBuffer collects the server's stderr, written by the transport's
// goroutine while a failure may be reading it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// writeFileAtomic replaces path in one rename, so a client reading its
// configuration never sees half a file.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
