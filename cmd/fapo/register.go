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
)

const registerUsage = `Usage: fapo register claude|codex [--workspace DIR] [--http URL [--token-env NAME]] [--write] [--check]

Prints the exact registration of this fapo server for a coding agent:
  claude  the .mcp.json entry (project scope, in the workspace) and how to approve it
  codex   the [mcp_servers.fapo] block for ~/.codex/config.toml, with the approval line
          that tools which write need under codex exec

--write merges it into the client's file without touching other servers
(.mcp.json and .claude/settings.local.json in the workspace; $CODEX_HOME/config.toml,
default ~/.codex/config.toml). --check starts the server the way the client will
(the registration in that file when there is one, else the printed one) and calls
tools/list through an MCP client, reporting the tool count or what failed.
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
			commandPath := fs.String("command", "", "the fapo executable the client runs (default: fapo when it is this binary on PATH, else this binary's absolute path)")
			write := fs.Bool("write", false, "apply the registration to the client's configuration file")
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
				if err := reg.write(env, target); err != nil {
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
	}
	if clientName == "codex" {
		reg.EnvVars = append([]string{"FAPO_HOME"}, apiKeyEnvs(ws)...)
	}
	return reg, nil
}

// defaultCommand prefers the bare name so the registration survives
// reinstalls, but only when PATH really leads to this binary.
func defaultCommand() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("cannot tell where this fapo binary is (%v): pass --command PATH", err)
	}
	if onPath, err := exec.LookPath("fapo"); err == nil {
		a, errA := os.Stat(onPath)
		b, errB := os.Stat(self)
		if errA == nil && errB == nil && os.SameFile(a, b) {
			return "fapo", nil
		}
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
	if r.URL != "" {
		fmt.Fprintf(w, "Export %s with the server's bearer token before starting codex.\n", r.TokenEnv)
	}
}

func claudeApprovalNote(r *registration) string {
	note := "Claude Code starts servers from a project's .mcp.json only once the project is trusted and\n" +
		"the server approved. fapo register claude --write approves fapo in .claude/settings.local.json\n" +
		"({\"enabledMcpjsonServers\": [\"fapo\"]}); trust is yours to give: start claude once in\n" +
		r.Workspace + " and accept the trust prompt (it also offers to approve fapo).\n" +
		"Then `claude mcp list` shows fapo as connected, and /mcp__fapo__optimize TENANT starts the playbook.\n"
	if r.URL != "" {
		note += "Export " + r.TokenEnv + " with the server's bearer token before starting claude.\n"
	}
	return note
}

func (r *registration) write(env *cliEnv, target string) error {
	if r.Client == "claude" {
		if err := mergeMCPJSON(target, r.claudeEntry()); err != nil {
			return err
		}
		settings := filepath.Join(r.Workspace, ".claude", "settings.local.json")
		if err := approveInClaudeSettings(settings); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "wrote mcpServers.fapo to %s\napproved fapo for this project in %s\n", target, settings)
		fmt.Fprintln(env.stdout, "Check it with: claude mcp list   (or fapo register claude --check)")
		return nil
	}
	if err := mergeCodexConfig(target, r.codexBlock()); err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "wrote [mcp_servers.fapo] to %s\n", target)
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

// isFapoTable reports whether a table header names mcp_servers.fapo or one
// of its subtables (env, tools.NAME), however it is quoted.
func isFapoTable(key string) bool {
	parts := strings.Split(key, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return len(parts) >= 2 && parts[0] == "mcp_servers" && parts[1] == "fapo"
}

// mergeCodexConfig replaces the fapo tables of config.toml by block,
// textually, so other servers, settings and comments stay as the user wrote
// them; both the old and the new text must parse.
func mergeCodexConfig(path, block string) error {
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	var before map[string]any
	if _, err := toml.Decode(string(old), &before); err != nil {
		return fmt.Errorf("%s does not parse as TOML (%v): fix it, then run fapo register codex --write again", path, err)
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
	rest := strings.TrimRight(strings.Join(kept, ""), "\n")
	var without map[string]any
	if _, err := toml.Decode(rest, &without); err != nil {
		return fmt.Errorf("%s: removing the old [mcp_servers.fapo] table left invalid TOML (%v): remove it by hand, then run again", path, err)
	}
	if servers, ok := without["mcp_servers"].(map[string]any); ok {
		if _, ok := servers["fapo"]; ok {
			return fmt.Errorf("%s defines mcp_servers.fapo as an inline table or dotted keys, which fapo register cannot rewrite: remove it, then run again", path)
		}
	}
	text := block
	if rest != "" {
		text = rest + "\n\n" + block
	}
	var after map[string]any
	if _, err := toml.Decode(text, &after); err != nil {
		return fmt.Errorf("%s: the merged configuration does not parse (%v); it was not written: add this block by hand:\n%s", path, err, block)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	return writeFileAtomic(path, []byte(text), 0o600)
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
	return nil
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
	defer c.Close()
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
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
