package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/fapo-dev/fapo/engine/statedb"
	"github.com/fapo-dev/fapo/server"
	"github.com/fapo-dev/fapo/server/explorer"
)

const exploreUsage = `Usage: fapo explore [--workspace DIR] [--home DIR] [--addr HOST:PORT] [--token-file FILE]

Serves the fapo Explorer: a read-only web UI (and JSON API under /api) over
the workspace as it is on disk: tenants, sessions, the score chart, the
variant lineage and diffs, train runs with every step's trace, attribution,
the journal and the cost ledger. Of the sealed store it reads only the index
of runs (state.db), so that it shows the train runs the server recorded and
never a directory planted under runs/; validation results appear as the
aggregates the journal records.

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
			home := fs.String("home", "", "the sealed store whose run index says which train runs are real (default: $FAPO_HOME, else the user data directory)")
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
			if !explorer.IsLoopback(*addr) && token == "" {
				return usagef("--addr %s is not a loopback address: anyone who can reach it could read the workspace; pass --token-file FILE (mode 0600) or bind 127.0.0.1", *addr)
			}
			db, err := openRunIndex(env, *home)
			if err != nil {
				return err
			}
			if db != nil {
				defer db.Close()
			}
			ex, err := explorer.New(explorer.Options{Workspace: *workspace, Token: token, Logger: slog.Default(), DB: db})
			if err != nil {
				return err
			}
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

// openRunIndex opens the sealed store's state database for its run index.
// Without a sealed store (none configured, or never created) the Explorer
// still serves, showing no train run, and says why.
func openRunIndex(env *cliEnv, home string) (*statedb.DB, error) {
	store, err := openStore(env, home)
	if err == nil {
		if _, serr := os.Stat(filepath.Join(store.Home(), statedb.File)); serr != nil {
			err = serr
		}
	}
	if err != nil {
		slog.Warn("no run index: train runs are not shown, since only the server's index tells its runs from directories planted under runs/; pass --home with the sealed store", "error", err)
		return nil, nil
	}
	return statedb.Open(store.Home())
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
