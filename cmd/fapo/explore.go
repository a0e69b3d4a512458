package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/fapo-dev/fapo/engine/httpauth"
	"github.com/fapo-dev/fapo/server"
	"github.com/fapo-dev/fapo/server/explorer"
)

const exploreUsage = `Usage: fapo explore [--workspace DIR] [--home DIR] [--addr HOST:PORT] [--token-file FILE]

Serves the fapo Explorer: a read-only web UI (and JSON API under /api) over
the workspace (tenants, the variant lineage and diffs, attribution) and over
what the sealed store's database records: the sessions, the score chart, the
journal, the cost ledger and the index of runs, so that it shows only the
train runs the server recorded, never a directory planted under runs/. The
database is opened read-only, so an edited workspace cannot change what you
see; validation results appear as the aggregates the journal records, never
a held-out case.

It binds the loopback interface by default. Binding another address needs
--token-file: open the Explorer once with ?token=TOKEN (a cookie keeps it)
or send "Authorization: Bearer TOKEN".`

func exploreCommand() command {
	return command{
		name:    "explore",
		summary: "browse a workspace's sessions, variants and runs in a read-only web UI",
		run: func(ctx context.Context, env *cliEnv, args []string) error {
			fs := newFlagSet(env, "explore", exploreUsage)
			workspace := fs.String("workspace", ".", "the directory holding tenants/")
			home := fs.String("home", "", "the sealed store directory (default: $FAPO_HOME, else the user data directory)")
			addr := fs.String("addr", "127.0.0.1:8765", "address to listen on (HOST:PORT; port 0 picks a free one)")
			tokenFile := fs.String("token-file", "", "file holding the token every request must carry (mode 0600); required off loopback")
			if err := parseFlags(fs, args); err != nil {
				return err
			}
			if fs.NArg() > 0 {
				return usagef("unexpected argument %q: pass the workspace with --workspace", fs.Arg(0))
			}
			token := ""
			if *tokenFile != "" {
				var err error
				if token, err = server.ReadTokenFile(*tokenFile); err != nil {
					return err
				}
			}
			if _, _, err := net.SplitHostPort(*addr); err != nil {
				return usagef("--addr %q: want HOST:PORT, e.g. 127.0.0.1:8765", *addr)
			}
			if !httpauth.LoopbackAddr(*addr) && token == "" {
				return usagef("--addr %s is not a loopback address: anyone who can reach it could read the workspace; pass --token-file FILE (mode 0600) or bind 127.0.0.1", *addr)
			}
			// Without a sealed store the workspace is still worth showing;
			// the pages then say there are no sessions.
			storeHome := ""
			if store, err := openStore(env, *home); err != nil {
				if *home != "" {
					return err
				}
				fmt.Fprintf(env.stderr, "fapo explore: %v; sessions and the journal are not shown\n", err)
			} else {
				storeHome = store.Home()
			}
			ex, err := explorer.New(explorer.Options{Workspace: *workspace, Home: storeHome, Token: token, Logger: slog.Default()})
			if err != nil {
				return err
			}
			defer closeAndLog(ex)
			ln, err := net.Listen("tcp", *addr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w; pick another port with --addr", *addr, err)
			}
			fmt.Fprintf(env.stdout, "fapo explore: serving %s at http://%s/\n", *workspace, ln.Addr())
			if token != "" {
				fmt.Fprintf(env.stdout, "fapo explore: open http://%s/?token=<the token in %s> once; a cookie keeps it\n", ln.Addr(), *tokenFile)
			}
			return serveUntilDone(ctx, ln, ex)
		},
	}
}

// serveUntilDone serves h on ln until ctx ends, then shuts down gracefully.
func serveUntilDone(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdown); err != nil {
		return err
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
