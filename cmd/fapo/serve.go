package main

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/review"
	"github.com/fapo-dev/fapo/engine/tenant"
	"github.com/fapo-dev/fapo/server"
)

const serveUsage = `Usage: fapo serve [--workspace DIR] [--http ADDR [--token-file FILE]] [--home DIR] [--offline]
                  [--pprof 127.0.0.1:PORT]

Serves the workspace's tenants to a coding agent over MCP: on stdio by default
(register it in Claude Code or Codex), or as streamable HTTP at /mcp with --http.

HTTP binds loopback unless an address says otherwise, and every request must
carry "Authorization: Bearer TOKEN": without --token-file a token is generated
and printed to stderr. A non-loopback address refuses to start without
--token-file. Running the HTTP server under another OS account (one the agent
cannot read as) is the only way to keep held-out data out of the agent's reach
at the operating-system level; see README "Strict mode".

--pprof ADDR serves Go's profiling endpoints (net/http/pprof) on ADDR, to
profile the server's own runs, under a random path written to pprof-url in
the sealed store (0600; the server's log names the file): e.g.
'go tool pprof "$(cat $FAPO_HOME/pprof-url)profile?seconds=30"'. Only a
loopback address is accepted. Anything on this machine that can read that
file can read the endpoints (stacks and timings, never the data): in strict
mode the agent cannot; otherwise turn them on to profile, not for a session
whose held-out results matter.

Logs go to stderr; stdout belongs to the MCP protocol. Started from a
terminal, it says on stderr what it serves and how to register it; started
by an MCP client (stdin and stdout piped), it prints nothing of its own.
`

func serveCommand() command {
	return command{
		name:    "serve",
		summary: "serve the workspace to a coding agent over MCP (stdio or HTTP)",
		run: func(ctx context.Context, env *cliEnv, args []string) error {
			fs := newFlagSet(env, "serve", serveUsage)
			workspace := fs.String("workspace", ".", "the directory holding tenants/")
			httpAddr := fs.String("http", "", "serve streamable HTTP on this address (e.g. 127.0.0.1:8765) instead of stdio")
			tokenFile := fs.String("token-file", "", "file holding the bearer token HTTP clients must send (mode 0600)")
			home := fs.String("home", "", "sealed store directory (default $FAPO_HOME or the user data dir)")
			offline := fs.Bool("offline", false, "answer model calls from the response cache only; a miss is an error")
			pprofAddr := fs.String("pprof", "", "serve the Go profiling endpoints on this loopback address (e.g. 127.0.0.1:6060)")
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			if fs.NArg() > 0 {
				return usagef("unexpected argument %q", fs.Arg(0))
			}
			if *pprofAddr != "" {
				if err := loopbackAddr(*pprofAddr); err != nil {
					return err
				}
			}
			store, err := openStore(env, *home)
			if err != nil {
				return err
			}
			if *pprofAddr != "" {
				if err := servePprof(ctx, *pprofAddr, store.Home(), env.stderr); err != nil {
					return err
				}
			}
			ws, err := loop.Open(*workspace, loop.Options{Home: store.Home(), Getenv: env.getenv, Offline: *offline,
				NewReviewer: review.NewModelReviewer})
			if err != nil {
				return err
			}
			defer closeAndLog(ws)
			for _, n := range ws.ImportJournals() {
				fmt.Fprintf(env.stderr, "fapo: %s\n", n)
			}
			s := server.New(ws, server.Options{Version: versionString()})
			if *httpAddr == "" {
				if isTerminal(env.stdin) || isTerminal(env.stdout) {
					fmt.Fprintln(env.stderr, serveBanner(ws.Dir()))
				}
				return server.ServeStdio(ctx, s, env.stdin, env.stdout)
			}
			token := ""
			if *tokenFile != "" {
				if token, err = server.ReadTokenFile(*tokenFile); err != nil {
					return err
				}
			}
			return server.ServeHTTP(ctx, s, server.HTTPOptions{Addr: *httpAddr, Token: token,
				OnToken: func(tok string) {
					if token == "" {
						fmt.Fprintf(env.stderr, "fapo: bearer token for this server (send as Authorization: Bearer <token>):\n%s\n", tok)
					}
				},
				OnListen: func(a net.Addr) { fmt.Fprintf(env.stderr, "fapo: serving MCP at http://%s/mcp\n", a) },
			})
		},
	}
}

// serveBanner is the one line a person who started fapo serve by hand
// sees: the server speaks MCP on stdin/stdout and waits for a client, which
// looks like a hang unless something says so.
func serveBanner(workspace string) string {
	ts, _ := tenant.List(workspace)
	names := make([]string, 0, len(ts))
	for _, t := range ts {
		names = append(names, t.Name())
	}
	what := "no tenants yet (fapo init tenants/NAME)"
	if len(names) > 0 {
		what = plural(len(names), "tenant") + " (" + strings.Join(names, ", ") + ")"
	}
	return fmt.Sprintf("fapo: serving %s of %s over MCP on stdin/stdout, waiting for an MCP client; register it with `fapo register claude --write` or `fapo register codex --write` in %s, then start the agent there (Ctrl-C stops this)",
		what, workspace, workspace)
}
