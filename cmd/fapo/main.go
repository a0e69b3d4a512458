// Command fapo is a pipeline-aware prompt optimizer served to coding agents
// over MCP. `fapo serve` is the server; the other subcommands are for the
// human operator: scaffold and seal tenants, evaluate, run the one-shot test
// evaluation, check a workspace for leaks.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/fapo-dev/fapo/engine/run"
)

// command is one fapo subcommand. run receives the arguments after the
// subcommand name; flag parsing is the command's own.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, env *cliEnv, args []string) error
}

// cliEnv is what a subcommand may touch of the process: its streams and
// environment, passed in so tests can run commands in-process.
type cliEnv struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

func commands() []command {
	return []command{
		serveCommand(),
		evalCommand(),
		sealCommand(),
		importCommand(),
		initCommand(),
		doctorCommand(),
		finalCommand(),
		pinCommand(),
		sessionCommand(),
		exploreCommand(),
		versionCommand(),
		registerCommand(),
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := &cliEnv{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	run.SetGCPercent(os.Getenv)
	os.Exit(runCLI(ctx, env, os.Args[1:]))
}

// Exit codes. eval and final use the last two when cases errored (no
// answer because of provider or network errors), so scripts can tell "the
// pipeline scores badly" from "the provider was down".
const (
	exitFailure     = 1
	exitUsage       = 2
	exitSomeErrored = 3 // some cases errored; the rest were scored
	exitAllErrored  = 4 // every case errored: nothing was scored
)

// exitError is a failure with its own exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// runCLI dispatches to a subcommand and returns the process exit code:
// 0 success, 1 failure, 2 usage error, 3 and 4 cases errored (see above).
func runCLI(ctx context.Context, env *cliEnv, args []string) int {
	slog.SetDefault(slog.New(slog.NewTextHandler(env.stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) > 1 {
			return runCLI(ctx, env, []string{args[1], "--help"})
		}
		printUsage(env.stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, env, args[1:])
		var ee *exitError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, new(usageError)):
			fmt.Fprintf(env.stderr, "fapo %s: %v\nRun 'fapo %s --help' for usage.\n", c.name, err, c.name)
			return exitUsage
		case errors.As(err, &ee):
			fmt.Fprintf(env.stderr, "fapo %s: %s\n", c.name, errorText(err))
			return ee.code
		default:
			fmt.Fprintf(env.stderr, "fapo %s: %s\n", c.name, errorText(err))
			return exitFailure
		}
	}
	fmt.Fprintf(env.stderr, "fapo: unknown command %q%s\nRun 'fapo --help' for the list of commands.\n", args[0], suggest(args[0]))
	return 2
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, `fapo — pipeline-aware prompt optimization for coding agents, over MCP.

Usage:
  fapo <command> [flags]

Commands:
`)
	cmds := commands()
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-9s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Run 'fapo <command> --help' for the flags of a command.
A typical start, in a new directory (see README, Quick start):
  fapo init tenants/capitals --example capitals --agent claude   # an example tenant, sealed
  fapo doctor tenants/capitals                   # the tenant, the model, the leak scan
  fapo register claude --write                   # or: fapo register codex --write
Your own task: fapo init tenants/NAME --task-type TYPE, then fapo seal tenants/NAME --source cases.jsonl
`)
}

// usageError marks a mistake in how the command was called (exit code 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// newFlagSet returns a flag set that prints the command's help text and
// reports parse errors to the caller instead of exiting.
func newFlagSet(env *cliEnv, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("fapo "+name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.stdout, "%s\nFlags:\n", strings.TrimSpace(usage))
		fs.SetOutput(env.stdout)
		fs.PrintDefaults()
		fs.SetOutput(env.stderr)
	}
	return fs
}

// parseFlags parses args, turning a parse failure into a usageError.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	return nil
}

func suggest(name string) string {
	for _, c := range commands() {
		if strings.HasPrefix(c.name, name) || strings.HasPrefix(name, c.name) {
			return fmt.Sprintf("; did you mean %q?", c.name)
		}
	}
	return ""
}

// closeAndLog closes what a command opened, at its end. By then everything
// the command decided is committed, so a failed close cannot change its
// outcome: it is logged for the operator rather than returned.
func closeAndLog(c io.Closer) {
	if err := c.Close(); err != nil {
		slog.Error("close failed", "err", err)
	}
}
