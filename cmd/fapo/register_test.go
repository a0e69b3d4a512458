package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/server"
)

// TestMain lets the test binary stand in for fapo when --check starts it as
// `<binary> serve ...`: the checks then run the real serve command without
// a separate build.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		os.Exit(runCLI(context.Background(), &cliEnv{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}, os.Args[1:]))
	}
	os.Exit(m.Run())
}

func selfBinary(t *testing.T) string {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	return self
}

// registerEnv is a workspace with the capitals tenant sealed into its
// store, and an environment with an isolated HOME.
func registerEnv(t *testing.T) (*looptest.Fixture, map[string]string) {
	t.Helper()
	f := looptest.New(t, nil)
	home := t.TempDir()
	return f, map[string]string{"HOME": home, "FAPO_HOME": f.Home, "PATH": os.Getenv("PATH")}
}

func TestRegisterPrint(t *testing.T) {
	f, env := registerEnv(t)
	bin := selfBinary(t)
	tests := []struct {
		name   string
		args   []string
		checks func(t *testing.T, out string)
	}{
		{"claude stdio", []string{"claude", "--workspace", f.Dir, "--command", bin}, func(t *testing.T, out string) {
			start := strings.Index(out, "{")
			end := strings.LastIndex(out[:strings.Index(out, "Claude Code starts")], "}")
			var cfg struct {
				MCPServers map[string]map[string]any `json:"mcpServers"`
			}
			require.NoError(t, json.Unmarshal([]byte(out[start:end+1]), &cfg))
			e := cfg.MCPServers["fapo"]
			require.Equal(t, "stdio", e["type"])
			require.Equal(t, bin, e["command"])
			require.Equal(t, []any{"serve", "--workspace", f.Dir, "--home", f.Home}, e["args"])
			require.Contains(t, out, filepath.Join(f.Dir, ".mcp.json"))
			require.Contains(t, out, "enabledMcpjsonServers")
			require.Contains(t, out, "accept the trust prompt")
		}},
		{"claude http", []string{"claude", "--workspace", f.Dir, "--http", "http://127.0.0.1:8765/mcp"}, func(t *testing.T, out string) {
			require.Contains(t, out, `"url": "http://127.0.0.1:8765/mcp"`)
			require.Contains(t, out, `"Authorization": "Bearer ${FAPO_TOKEN}"`)
			require.Contains(t, out, `"type": "http"`)
			require.Contains(t, out, "Export FAPO_TOKEN")
		}},
		{"codex stdio", []string{"codex", "--workspace", f.Dir, "--command", bin}, func(t *testing.T, out string) {
			block := out[strings.Index(out, "[mcp_servers.fapo]"):]
			var cfg struct {
				MCPServers map[string]struct {
					Command      string   `toml:"command"`
					Args         []string `toml:"args"`
					EnvVars      []string `toml:"env_vars"`
					ApprovalMode string   `toml:"default_tools_approval_mode"`
					ToolTimeout  int      `toml:"tool_timeout_sec"`
				} `toml:"mcp_servers"`
			}
			_, err := toml.Decode(block, &cfg)
			require.NoError(t, err)
			e := cfg.MCPServers["fapo"]
			require.Equal(t, bin, e.Command)
			require.Equal(t, []string{"serve", "--workspace", f.Dir, "--home", f.Home}, e.Args)
			require.Equal(t, "approve", e.ApprovalMode)
			require.Equal(t, []string{"FAPO_HOME"}, e.EnvVars, "the fixture's tenant needs no key")
			require.Equal(t, 900, e.ToolTimeout)
			require.Contains(t, out, filepath.Join(env["HOME"], ".codex", "config.toml"))
			require.Contains(t, out, "codex exec (which never asks) would")
		}},
		{"codex http with another token variable", []string{"codex", "--workspace", f.Dir, "--http", "https://fapo.internal/mcp", "--token-env", "MY_TOKEN"}, func(t *testing.T, out string) {
			require.Contains(t, out, `url = "https://fapo.internal/mcp"`)
			require.Contains(t, out, `bearer_token_env_var = "MY_TOKEN"`)
			require.Contains(t, out, `default_tools_approval_mode = "approve"`)
			require.NotContains(t, out, "command =")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := cliRun(t, env, append([]string{"register"}, tc.args...)...)
			require.Equal(t, 0, code, errs)
			tc.checks(t, out)
		})
	}
}

func TestRegisterCodexForwardsKeyVariables(t *testing.T) {
	ws := t.TempDir()
	for name, key := range map[string]string{"a": "OPENAI_API_KEY", "b": "ANTHROPIC_API_KEY", "c": "OPENAI_API_KEY"} {
		dir := filepath.Join(ws, "tenants", name)
		require.NoError(t, os.MkdirAll(dir, 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, "tenant.toml"), []byte("[model]\napi_key_env = \""+key+"\"\n"), 0o644))
	}
	code, out, errs := cliRun(t, map[string]string{"HOME": t.TempDir()}, "register", "codex", "--workspace", ws, "--command", "fapo")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, `env_vars = ["FAPO_HOME", "ANTHROPIC_API_KEY", "OPENAI_API_KEY"]`)
	require.Contains(t, out, `args = ["serve", "--workspace", "`+ws+`"]`, "no --home without FAPO_HOME")
}

func TestRegisterWriteClaudeMerges(t *testing.T) {
	f, env := registerEnv(t)
	mcpJSON := filepath.Join(f.Dir, ".mcp.json")
	settings := filepath.Join(f.Dir, ".claude", "settings.local.json")
	require.NoError(t, os.WriteFile(mcpJSON, []byte(`{"mcpServers":{"other":{"type":"stdio","command":"other-server"},"fapo":{"command":"old"}},"keep":1}`), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Dir(settings), 0o755))
	require.NoError(t, os.WriteFile(settings, []byte(`{"enabledMcpjsonServers":["other"],"permissions":{"deny":["Read(//x/**)"]}}`), 0o644))

	for range 2 { // a second write changes nothing
		code, out, errs := cliRun(t, env, "register", "claude", "--workspace", f.Dir, "--command", "fapo", "--write")
		require.Equal(t, 0, code, errs)
		require.Contains(t, out, "wrote mcpServers.fapo to "+mcpJSON)
	}
	var cfg map[string]any
	b, err := os.ReadFile(mcpJSON)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &cfg))
	require.Equal(t, float64(1), cfg["keep"])
	servers := cfg["mcpServers"].(map[string]any)
	require.Equal(t, map[string]any{"type": "stdio", "command": "other-server"}, servers["other"])
	require.Equal(t, "fapo", servers["fapo"].(map[string]any)["command"])

	var st map[string]any
	b, err = os.ReadFile(settings)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &st))
	require.Equal(t, []any{"other", "fapo"}, st["enabledMcpjsonServers"])
	require.NotNil(t, st["permissions"])
}

const codexExisting = `# my settings
model = "gpt-5"

[mcp_servers.docs]
command = "docs-server"

[mcp_servers.fapo]
command = "old-fapo"
args = ["serve"]

[mcp_servers.fapo.env]
SECRET = "x"

[mcp_servers.fapo.tools.evaluate]
approval_mode = "prompt"

[mcp_servers."other"]
url = "http://example.invalid/mcp"
`

func TestRegisterWriteCodexMerges(t *testing.T) {
	f, env := registerEnv(t)
	codexHome := t.TempDir()
	env["CODEX_HOME"] = codexHome
	path := filepath.Join(codexHome, "config.toml")
	require.NoError(t, os.WriteFile(path, []byte(codexExisting), 0o600))

	var texts []string
	for i, args := range [][]string{{"--force"}, nil} { // the old block serves another workspace
		code, out, errs := cliRun(t, env, append([]string{"register", "codex", "--workspace", f.Dir, "--command", "fapo", "--write"}, args...)...)
		require.Equal(t, 0, code, errs)
		require.Contains(t, out, "wrote [mcp_servers.fapo] to "+path)
		if i == 0 {
			require.Contains(t, out, "replaced the registration of old-fapo serve (--force)")
		}
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		texts = append(texts, string(b))
	}
	require.Equal(t, texts[0], texts[1], "writing twice is idempotent")
	text := texts[0]
	require.True(t, strings.HasPrefix(text, "# fapo register codex: the agent's commands run with the permission profile below\ndefault_permissions = \"fapo\"\n\n# my settings\nmodel = \"gpt-5\""), text)
	require.NotContains(t, text, "old-fapo")
	require.NotContains(t, text, "SECRET")
	require.Equal(t, 1, strings.Count(text, "[mcp_servers.fapo]"))

	var cfg struct {
		Model      string                    `toml:"model"`
		MCPServers map[string]map[string]any `toml:"mcp_servers"`
	}
	_, err := toml.Decode(text, &cfg)
	require.NoError(t, err)
	require.Equal(t, "gpt-5", cfg.Model)
	require.Equal(t, "docs-server", cfg.MCPServers["docs"]["command"])
	require.Equal(t, "http://example.invalid/mcp", cfg.MCPServers["other"]["url"])
	require.Equal(t, "fapo", cfg.MCPServers["fapo"]["command"])
	require.Equal(t, "approve", cfg.MCPServers["fapo"]["default_tools_approval_mode"])
	require.Nil(t, cfg.MCPServers["fapo"]["tools"])

	info, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "config.toml may hold tokens")
}

func TestRegisterWriteCodexNewFile(t *testing.T) {
	f, env := registerEnv(t)
	ws := t.TempDir()
	code, _, errs := cliRun(t, env, "register", "codex", "--workspace", ws, "--command", "fapo", "--write")
	require.Equal(t, 0, code, errs)
	b, err := os.ReadFile(filepath.Join(env["HOME"], ".codex", "config.toml"))
	require.NoError(t, err)
	var cfg codexState
	_, err = toml.Decode(string(b), &cfg)
	require.NoError(t, err)
	require.Equal(t, "fapo", cfg.DefaultPermissions)
	require.Equal(t, []string{"serve", "--workspace", ws, "--home", env["FAPO_HOME"]}, cfg.MCPServers["fapo"].Args)
	require.Equal(t, ":workspace", cfg.Permissions["fapo"].Extends)
	m, err := dataset.OpenStore(f.Home).Manifest(looptest.Tenant)
	require.NoError(t, err)
	require.Equal(t, map[string]any{env["FAPO_HOME"]: "none", m.Source.Path: "none"}, cfg.Permissions["fapo"].Filesystem,
		"the store and the source sealed into it are unreadable for the agent's commands")
}

func TestRegisterErrors(t *testing.T) {
	ws := t.TempDir()
	bad := func(files map[string]string) string {
		dir := t.TempDir()
		for name, text := range files {
			p := filepath.Join(dir, name)
			require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
			require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
		}
		return dir
	}
	badJSON := bad(map[string]string{".mcp.json": "{not json"})
	badServers := bad(map[string]string{".mcp.json": `{"mcpServers":[1]}`})
	badSettings := bad(map[string]string{".claude/settings.local.json": "[]"})
	badEnabled := bad(map[string]string{".claude/settings.local.json": `{"enabledMcpjsonServers":"fapo"}`})
	badTOML := bad(map[string]string{"config.toml": "[unclosed"})
	inline := bad(map[string]string{"config.toml": "mcp_servers.fapo = { command = \"x\" }\n"})
	home := t.TempDir()

	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"no client", nil, []string{}, 2, "name the client"},
		{"flag before client", nil, []string{"--write"}, 2, "name the client"},
		{"unknown client", nil, []string{"cursor"}, 2, `unknown client "cursor"`},
		{"unexpected argument", nil, []string{"claude", "--workspace", ws, "extra"}, 2, `unexpected argument "extra"`},
		{"bad flag", nil, []string{"claude", "--nope"}, 2, "flag provided but not defined"},
		{"http not a URL", nil, []string{"claude", "--workspace", ws, "--http", "127.0.0.1:8765"}, 2, "is not a URL"},
		{"bad token variable", nil, []string{"codex", "--workspace", ws, "--http", "http://h/mcp", "--token-env", "A-B"}, 2, "not an environment variable name"},
		{"missing workspace", nil, []string{"claude", "--workspace", filepath.Join(ws, "nope")}, 1, "is not a directory"},
		{"no HOME for codex", map[string]string{}, []string{"codex", "--workspace", ws, "--command", "fapo"}, 1, "neither CODEX_HOME nor HOME"},
		{"invalid .mcp.json", nil, []string{"claude", "--workspace", badJSON, "--command", "fapo", "--write"}, 1, ".mcp.json is not a JSON object"},
		{"mcpServers not an object", nil, []string{"claude", "--workspace", badServers, "--command", "fapo", "--write"}, 1, "mcpServers is not an object"},
		{"invalid settings", nil, []string{"claude", "--workspace", badSettings, "--command", "fapo", "--write"}, 1, "settings.local.json is not a JSON object"},
		{"enabledMcpjsonServers not a list", nil, []string{"claude", "--workspace", badEnabled, "--command", "fapo", "--write"}, 1, "enabledMcpjsonServers is not a list"},
		{"invalid config.toml", map[string]string{"CODEX_HOME": badTOML}, []string{"codex", "--workspace", ws, "--command", "fapo", "--write"}, 1, "does not parse as TOML"},
		{"inline fapo table", map[string]string{"CODEX_HOME": inline}, []string{"codex", "--workspace", ws, "--command", "fapo", "--write"}, 1, "inline table or dotted keys"},
		{"check with invalid .mcp.json", nil, []string{"claude", "--workspace", badJSON, "--check"}, 1, "is not valid JSON"},
		{"check with invalid config.toml", map[string]string{"CODEX_HOME": badTOML}, []string{"codex", "--workspace", ws, "--check"}, 1, "does not parse as TOML"},
		{"check a command that is not there", map[string]string{"HOME": home}, []string{"claude", "--workspace", ws, "--command", filepath.Join(ws, "no-fapo"), "--check"}, 1, "did not answer tools/list"},
		{"check a server that exits", map[string]string{"HOME": home}, []string{"codex", "--workspace", ws, "--command", "false", "--check"}, 1, "did not answer tools/list"},
		{"check http without a token", map[string]string{"HOME": home}, []string{"codex", "--workspace", ws, "--http", "http://127.0.0.1:1/mcp", "--check"}, 1, "FAPO_TOKEN is empty"},
		{"check http with nothing listening", map[string]string{"HOME": home, "FAPO_TOKEN": "t"}, []string{"claude", "--workspace", ws, "--http", "http://127.0.0.1:1/mcp", "--check"}, 1, "did not answer tools/list"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.env
			if env == nil {
				env = map[string]string{"HOME": home, "PATH": os.Getenv("PATH")}
			}
			if _, ok := env["PATH"]; !ok {
				env["PATH"] = os.Getenv("PATH")
			}
			code, out, errs := cliRun(t, env, append([]string{"register"}, tc.args...)...)
			require.Equal(t, tc.code, code, out+errs)
			require.Contains(t, errs, tc.want)
		})
	}
}

func TestRegisterCheckStdio(t *testing.T) {
	f, env := registerEnv(t)
	bin := selfBinary(t)
	for _, client := range []string{"claude", "codex"} {
		t.Run(client, func(t *testing.T) {
			env := map[string]string{"HOME": t.TempDir(), "FAPO_HOME": f.Home, "PATH": os.Getenv("PATH")}
			code, out, errs := cliRun(t, env, "register", client, "--workspace", f.Dir, "--command", bin, "--check")
			require.Equal(t, 0, code, out+errs)
			require.Contains(t, out, "has no fapo registration yet")
			require.Regexp(t, `ok: fapo answered tools/list with \d+ tools: .*compare.*start_session`, out)
			require.Regexp(t, `ok: tenant capitals is sealed, \d+ train cases`, out)

			// After --write, --check uses what the client's file holds.
			code, _, errs = cliRun(t, env, "register", client, "--workspace", f.Dir, "--command", bin, "--write")
			require.Equal(t, 0, code, errs)
			code, out, errs = cliRun(t, env, "register", client, "--workspace", f.Dir, "--command", "not-this-one", "--check")
			require.Equal(t, 0, code, out+errs)
			require.Contains(t, out, "checking the fapo registration in")
			require.Contains(t, out, "ok: fapo answered tools/list")
		})
	}
	_ = env
}

// TestRegisterCheckCodexEnvironment: Codex gives the server only the names
// in env_vars, so a registration that neither forwards FAPO_HOME nor passes
// --home finds no sealed store: the check warns, as Codex would fail.
func TestRegisterCheckCodexEnvironment(t *testing.T) {
	f, env := registerEnv(t)
	env["CODEX_HOME"] = t.TempDir()
	block := "[mcp_servers.fapo]\ncommand = " + tomlString(selfBinary(t)) + "\nargs = [\"serve\", \"--workspace\", " + tomlString(f.Dir) + "]\n"
	require.NoError(t, os.WriteFile(filepath.Join(env["CODEX_HOME"], "config.toml"), []byte(block), 0o600))
	code, out, errs := cliRun(t, env, "register", "codex", "--workspace", f.Dir, "--check")
	require.Equal(t, 0, code, out+errs)
	require.Contains(t, out, "ok: fapo answered tools/list")
	require.Contains(t, out, "warning: tenant capitals is not sealed in the store this server uses")

	// Forwarded, the same registration finds the store.
	require.NoError(t, os.WriteFile(filepath.Join(env["CODEX_HOME"], "config.toml"), []byte(block+"env_vars = [\"FAPO_HOME\"]\n"), 0o600))
	code, out, errs = cliRun(t, env, "register", "codex", "--workspace", f.Dir, "--check")
	require.Equal(t, 0, code, out+errs)
	require.Contains(t, out, "ok: tenant capitals is sealed")
}

// TestRegisterCheckShowsServerStderr: a server that fails to start shows
// its own complaint.
func TestRegisterCheckShowsServerStderr(t *testing.T) {
	ws := t.TempDir()
	env := map[string]string{"HOME": t.TempDir(), "PATH": os.Getenv("PATH")}
	notDir := filepath.Join(t.TempDir(), "store")
	require.NoError(t, os.WriteFile(notDir, nil, 0o600))
	code, out, errs := cliRun(t, env, "register", "claude", "--workspace", ws, "--command", selfBinary(t), "--home", notDir, "--check")
	require.Equal(t, 1, code, out+errs)
	require.Contains(t, errs, "did not answer tools/list")
	require.Contains(t, errs, "server stderr:")
	require.Contains(t, errs, "is a file, not a directory")
}

func TestRegisterCheckHTTP(t *testing.T) {
	f, _ := registerEnv(t)
	ws, err := loop.Open(f.Dir, loop.Options{Home: f.Home, Getenv: func(string) string { return "" }})
	require.NoError(t, err)
	defer ws.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan net.Addr, 1)
	const token = "register-check-token-0123456789"
	go func() {
		_ = server.ServeHTTP(ctx, server.New(ws, server.Options{}), server.HTTPOptions{Addr: "127.0.0.1:0", Token: token,
			OnListen: func(a net.Addr) { addrs <- a }})
	}()
	var url string
	select {
	case a := <-addrs:
		url = "http://" + a.String() + "/mcp"
	case <-time.After(10 * time.Second):
		t.Fatal("the HTTP server did not start")
	}
	for _, client := range []string{"claude", "codex"} {
		env := map[string]string{"HOME": t.TempDir(), "FAPO_TOKEN": token}
		code, out, errs := cliRun(t, env, "register", client, "--workspace", f.Dir, "--http", url, "--check")
		require.Equal(t, 0, code, out+errs)
		require.Contains(t, out, "ok: fapo answered tools/list")

		env["FAPO_TOKEN"] = "wrong"
		code, out, errs = cliRun(t, env, "register", client, "--workspace", f.Dir, "--http", url, "--check")
		require.Equal(t, 1, code, out+errs)
		require.Contains(t, errs, "did not answer tools/list")
	}
}

// TestRegisterCommandIsThisBinary: without --command the registration
// names this binary by its absolute, resolved path, even where PATH leads
// to it as "fapo" now: a client started with another PATH still finds it.
func TestRegisterCommandIsThisBinary(t *testing.T) {
	f, env := registerEnv(t)
	bin := t.TempDir()
	require.NoError(t, os.Symlink(selfBinary(t), filepath.Join(bin, "fapo")))
	t.Setenv("PATH", bin)
	self, err := filepath.EvalSymlinks(selfBinary(t))
	require.NoError(t, err)
	code, _, errs := cliRun(t, env, "register", "claude", "--workspace", f.Dir, "--write")
	require.Equal(t, 0, code, errs)
	var cfg struct {
		MCPServers map[string]struct {
			Command string `json:"command"`
		} `json:"mcpServers"`
	}
	b, err := os.ReadFile(filepath.Join(f.Dir, ".mcp.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &cfg))
	require.Equal(t, self, cfg.MCPServers["fapo"].Command)
	require.True(t, filepath.IsAbs(cfg.MCPServers["fapo"].Command))
}

// TestRegisterWriteClaudeSandbox: --write adds the deny rules and the Bash
// sandbox to .claude/settings.json, keeps the user's own settings and
// rules, is idempotent, and --check reports the guard in place.
func TestRegisterWriteClaudeSandbox(t *testing.T) {
	f, env := registerEnv(t)
	settings := filepath.Join(f.Dir, ".claude", "settings.json")
	require.NoError(t, os.MkdirAll(filepath.Dir(settings), 0o755))
	require.NoError(t, os.WriteFile(settings, []byte(`{"model":"opus","permissions":{"allow":["Bash(go test:*)"],"deny":["Read(./.env)"]},
		"sandbox":{"enabled":false,"excludedCommands":["docker"],"filesystem":{"denyRead":["/etc/secret"]}}}`), 0o644))
	m, err := dataset.OpenStore(f.Home).Manifest(looptest.Tenant)
	require.NoError(t, err)
	src := m.Source.Path

	var texts []string
	for range 2 {
		code, out, errs := cliRun(t, env, "register", "claude", "--workspace", f.Dir, "--command", selfBinary(t), "--write")
		require.Equal(t, 0, code, errs)
		require.Contains(t, out, "keeping the agent out of "+f.Home+", "+src)
		b, err := os.ReadFile(settings)
		require.NoError(t, err)
		texts = append(texts, string(b))
	}
	require.Equal(t, texts[0], texts[1], "writing twice is idempotent")
	var st struct {
		Model       string `json:"model"`
		Permissions struct {
			Allow []string `json:"allow"`
			Deny  []string `json:"deny"`
		} `json:"permissions"`
		Sandbox struct {
			Enabled, FailIfUnavailable, AutoAllowBashIfSandboxed, AllowUnsandboxedCommands bool
			ExcludedCommands                                                               []string `json:"excludedCommands"`
			Filesystem                                                                     struct {
				DenyRead  []string `json:"denyRead"`
				DenyWrite []string `json:"denyWrite"`
			} `json:"filesystem"`
		} `json:"sandbox"`
	}
	require.NoError(t, json.Unmarshal([]byte(texts[0]), &st))
	require.Equal(t, "opus", st.Model)
	require.Equal(t, []string{"Bash(go test:*)"}, st.Permissions.Allow)
	home, ws := "/"+f.Home, "/"+f.Dir
	require.Equal(t, []string{"Read(./.env)",
		"Read(" + home + "/**)", "Edit(" + home + "/**)", "Write(" + home + "/**)",
		"Read(/" + src + ")", "Edit(/" + src + ")", "Write(/" + src + ")",
		"Edit(" + ws + "/.claude/**)", "Write(" + ws + "/.claude/**)", "Edit(" + ws + "/.mcp.json)", "Write(" + ws + "/.mcp.json)",
	}, st.Permissions.Deny)
	require.True(t, st.Sandbox.Enabled, "the sandbox is switched on even where the user had it off")
	require.True(t, st.Sandbox.FailIfUnavailable)
	require.True(t, st.Sandbox.AutoAllowBashIfSandboxed)
	require.False(t, st.Sandbox.AllowUnsandboxedCommands)
	require.Equal(t, []string{"docker"}, st.Sandbox.ExcludedCommands)
	require.Equal(t, []string{"/etc/secret", f.Home, src}, st.Sandbox.Filesystem.DenyRead)
	require.Equal(t, []string{f.Home, src, filepath.Join(f.Dir, ".claude"), filepath.Join(f.Dir, ".mcp.json")}, st.Sandbox.Filesystem.DenyWrite)

	code, out, errs := cliRun(t, env, "register", "claude", "--workspace", f.Dir, "--check")
	require.Equal(t, 0, code, out+errs)
	require.Contains(t, out, "ok: "+settings+" denies "+f.Home)
	require.Regexp(t, `(ok: Claude Code's Bash sandbox can run here|warning: Claude Code's Bash sandbox cannot run here: .+)`, out)

	// A setting the user removes afterwards shows in --check.
	require.NoError(t, os.WriteFile(settings, []byte(`{"sandbox":{"enabled":true}}`), 0o644))
	code, out, errs = cliRun(t, env, "register", "claude", "--workspace", f.Dir, "--check")
	require.Equal(t, 0, code, out+errs)
	require.Contains(t, out, "does not keep the agent out of "+f.Home)
	require.Contains(t, out, "permissions.deny lacks Read("+home+"/**)")
	require.Contains(t, out, "sandbox.filesystem.denyRead lacks "+f.Home)
}

// TestRegisterCodexTwoWorkspaces: Codex keeps one [mcp_servers.fapo] for
// all workspaces, so registering a second workspace is refused, naming the
// first, until --force; the permission profile keeps denying both stores.
func TestRegisterCodexTwoWorkspaces(t *testing.T) {
	a, env := registerEnv(t)
	b := looptest.New(t, nil)
	env["CODEX_HOME"] = t.TempDir()
	path := filepath.Join(env["CODEX_HOME"], "config.toml")
	reg := func(f *looptest.Fixture, extra ...string) (int, string, string) {
		e := map[string]string{}
		for k, v := range env {
			e[k] = v
		}
		e["FAPO_HOME"] = f.Home
		return cliRun(t, e, append([]string{"register", "codex", "--workspace", f.Dir, "--command", "fapo", "--write"}, extra...)...)
	}
	code, _, errs := reg(a)
	require.Equal(t, 0, code, errs)
	first, err := os.ReadFile(path)
	require.NoError(t, err)

	code, out, errs := reg(b)
	require.Equal(t, 1, code, out+errs)
	require.Contains(t, errs, "already has [mcp_servers.fapo] for "+a.Dir)
	require.Contains(t, errs, "--force")
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, string(first), string(after), "a refused registration changes nothing")

	code, _, errs = reg(a) // the same workspace again is no conflict
	require.Equal(t, 0, code, errs)

	code, out, errs = reg(b, "--force")
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "replaced the registration of "+a.Dir+" (--force)")
	var cfg codexState
	text, err := os.ReadFile(path)
	require.NoError(t, err)
	_, err = toml.Decode(string(text), &cfg)
	require.NoError(t, err)
	require.Equal(t, []string{"serve", "--workspace", b.Dir, "--home", b.Home}, cfg.MCPServers["fapo"].Args)
	require.Equal(t, "none", cfg.Permissions["fapo"].Filesystem[a.Home], "the first store stays denied")
	require.Equal(t, "none", cfg.Permissions["fapo"].Filesystem[b.Home])
	require.Equal(t, 1, strings.Count(string(text), "default_permissions"))
}

// TestRegisterCodexSandboxWarnings: settings that make Codex ignore fapo's
// profile are reported at --write and at --check, and left as they are.
func TestRegisterCodexSandboxWarnings(t *testing.T) {
	f, env := registerEnv(t)
	tests := []struct {
		name, config, write, check string
	}{
		{"sandbox_mode", "sandbox_mode = \"workspace-write\"\n",
			`warning: sandbox_mode = "workspace-write" makes Codex ignore permission profiles`,
			`warning: sandbox_mode = "workspace-write" in`},
		{"another profile", "default_permissions = \"mine\"\n\n[permissions.mine]\nextends = \":read-only\"\n",
			`warning: default_permissions is "mine", so Codex does not use fapo's profile: add "` + f.Home + `" = "none" to [permissions.mine.filesystem]`,
			`warning: default_permissions in`},
		{"fapo's profile", "",
			"",
			`ok: Codex's sandbox (permission profile "fapo") denies the agent's commands ` + f.Home},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env["CODEX_HOME"] = t.TempDir()
			path := filepath.Join(env["CODEX_HOME"], "config.toml")
			require.NoError(t, os.WriteFile(path, []byte(tc.config), 0o600))
			code, out, errs := cliRun(t, env, "register", "codex", "--workspace", f.Dir, "--command", selfBinary(t), "--write")
			require.Equal(t, 0, code, errs)
			if tc.write != "" {
				require.Contains(t, out, tc.write)
			} else {
				require.NotContains(t, out, "warning")
			}
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			require.Contains(t, string(b), tc.config, "the user's settings stay")
			code, out, errs = cliRun(t, env, "register", "codex", "--workspace", f.Dir, "--check")
			require.Equal(t, 0, code, out+errs)
			require.Contains(t, out, tc.check)
		})
	}
}
