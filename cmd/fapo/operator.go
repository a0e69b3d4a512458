package main

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"

	"golang.org/x/term"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/statedb"
	"github.com/fapo-dev/fapo/engine/tenant"
)

// operatorOf says who runs an operator command, for the tenant's journal:
// the OS account, $SUDO_USER under sudo, and whether stdin is a terminal (a
// person at a keyboard rather than a script or an agent's shell).
func operatorOf(env *cliEnv, command string, args []string) loop.Operator {
	op := loop.Operator{Command: command, Args: args, Terminal: stdinIsTerminal(env), SudoUser: env.getenv("SUDO_USER")}
	if u, err := user.Current(); err == nil {
		op.User, op.UID = u.Username, u.Uid
	} else {
		op.UID = strconv.Itoa(os.Getuid())
	}
	return op
}

func stdinIsTerminal(env *cliEnv) bool {
	f, ok := env.stdin.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// recordOperator journals an operator command before it acts; a command
// whose run cannot be journaled does not run.
func recordOperator(env *cliEnv, w *loop.Workspace, name, command string, args []string) error {
	if err := w.RecordOperator(name, operatorOf(env, command, args)); err != nil {
		return fmt.Errorf("could not journal this %s in tenant %s, so it did not run: %w", command, name, err)
	}
	return nil
}

// markSealed records in the sealed store's database that this store seals
// the tenant in dir. In a workspace it goes through the workspace (which
// first imports an earlier fapo's journal the tenant may have); a tenant
// directory elsewhere has no journal to import.
func markSealed(env *cliEnv, store *dataset.Store, dir, command string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	name := filepath.Base(abs)
	if filepath.Base(filepath.Dir(abs)) == tenant.TenantsDir {
		w, err := loop.Open(filepath.Dir(filepath.Dir(abs)), loop.Options{Home: store.Home(), Getenv: env.getenv})
		if err != nil {
			return err
		}
		defer closeAndLog(w)
		if err := w.MarkSealed(name, command); err != nil {
			return fmt.Errorf("could not record the seal of tenant %s in the sealed store's database, so it did not run: %w", name, err)
		}
		for _, n := range w.Notices() {
			fmt.Fprintf(env.stderr, "fapo: %s\n", n)
		}
		return nil
	}
	db, err := statedb.Open(store.Home())
	if err != nil {
		return err
	}
	defer closeAndLog(db)
	if err := session.Migrate(context.Background(), db); err != nil {
		return err
	}
	return session.MarkSealed(context.Background(), db, name, command)
}

// recordSealForce journals a forced seal. The seal works on a tenant
// directory, which need not sit in a workspace's tenants/; then there is no
// journal to write to, and stderr says so.
func recordSealForce(env *cliEnv, store *dataset.Store, dir string, args []string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if filepath.Base(filepath.Dir(abs)) != "tenants" {
		fmt.Fprintf(env.stderr, "warning: the forced seal is not journaled: %s is not in a workspace's tenants/ directory\n", dir)
		return nil
	}
	w, err := loop.Open(filepath.Dir(filepath.Dir(abs)), loop.Options{Home: store.Home(), Getenv: env.getenv})
	if err != nil {
		return err
	}
	defer closeAndLog(w)
	return recordOperator(env, w, filepath.Base(abs), "seal --force", args)
}
