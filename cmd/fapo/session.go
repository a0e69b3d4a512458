package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/variant"
)

const sessionUsage = `
Usage: fapo session new --tenant NAME [--target N] [--max-variants N]
                        [--max-validation-evals N] [--max-usd N]
                        [--levels prompt,parameter,structural]
       fapo session status --tenant NAME
       fapo session unlock --tenant NAME --reason TEXT
       (all take [--workspace DIR] [--home DIR])

A session is one optimization effort on a tenant: its scope contract fixes
the target, the budget (variants, validation evaluations, dollars) and the
levels a proposal may use. The agent starts a session with start_session
but can never replace one, so it cannot reset its own budget; starting a
fresh session is the operator's decision, made here. The previous session
stays in the journal. Sessions and the journal live in the sealed store's
database; tenants/NAME/journal.jsonl and sessions/ are a readable mirror
that fapo rewrites and never reads (a workspace journal of an earlier fapo
is imported once, and the command says so).

The review gate locks a session whose variant carries evaluation data in
many places: proposals, validation runs and compares are refused until the
operator has looked at the journal and the variant, and either unlocks it
(the reason is journaled) or starts a new session.

Every value may only tighten what tenant.toml grants ([target], [budget],
[escalation] levels). Both subcommands print the session status as JSON:
incumbent, validation history, budget left, open and locked levels, and
what the agent may do next.
`

func sessionCommand() command {
	return command{
		name:    "session",
		summary: "start a new optimization session for a tenant, show its status, or unlock it",
		run:     runSession,
	}
}

func runSession(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fs := newFlagSet(env, "session", sessionUsage)
		fs.Usage()
		if len(args) == 0 {
			return usagef("missing the subcommand: new, status or unlock")
		}
		return nil
	}
	switch args[0] {
	case "new":
		return runSessionNew(env, args[1:])
	case "status":
		return runSessionStatus(env, args[1:])
	case "unlock":
		return runSessionUnlock(env, args[1:])
	}
	return usagef("unknown subcommand %q: use new, status or unlock", args[0])
}

func runSessionNew(env *cliEnv, args []string) error {
	fs := newFlagSet(env, "session new", sessionUsage)
	var op operatorFlags
	op.register(fs)
	var target *float64
	fs.Func("target", "the target minimum of the tenant's metric (default: [target] min of tenant.toml)", func(s string) error {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("want a number, e.g. 90")
		}
		target = &v
		return nil
	})
	maxVariants := fs.Int("max-variants", 0, "at most this many proposed variants (default: budget.max_variants)")
	maxVal := fs.Int("max-validation-evals", 0, "at most this many validation evaluations (default: budget.max_validation_evals)")
	maxUSD := fs.Float64("max-usd", 0, "at most this many dollars of model calls (default: budget.max_usd)")
	levels := fs.String("levels", "", "comma-separated levels proposals may use, e.g. prompt,parameter (default: escalation.levels)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q: name the tenant with --tenant", fs.Args())
	}
	req := loop.StartRequest{TargetMin: target, MaxVariants: *maxVariants, MaxValidationEvals: *maxVal, MaxUSD: *maxUSD}
	for _, l := range strings.Split(*levels, ",") {
		if l = strings.TrimSpace(l); l != "" {
			req.AllowedLevels = append(req.AllowedLevels, variant.Level(l))
		}
	}
	w, name, err := op.open(env, false)
	if err != nil {
		return err
	}
	defer closeAndLog(w)
	if err := recordOperator(env, w, name, "session new", args); err != nil {
		return err
	}
	req.Tenant = name
	st, err := w.NewSession(req)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "started session %s for %s; any earlier session stays in the journal\n", st.Session, name)
	return printJSON(env.stdout, st)
}

func runSessionStatus(env *cliEnv, args []string) error {
	fs := newFlagSet(env, "session status", sessionUsage)
	var op operatorFlags
	op.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q: name the tenant with --tenant", fs.Args())
	}
	w, name, err := op.open(env, false)
	if err != nil {
		return err
	}
	defer closeAndLog(w)
	st, err := w.SessionStatus(name)
	if err != nil {
		return err
	}
	if st.Halt != nil {
		st.Next = []string{errorText(st.Halt)}
	}
	return printJSON(env.stdout, st)
}

func runSessionUnlock(env *cliEnv, args []string) error {
	fs := newFlagSet(env, "session unlock", sessionUsage)
	var op operatorFlags
	op.register(fs)
	reason := fs.String("reason", "", "what you checked before letting the session go on (journaled)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q: name the tenant with --tenant", fs.Args())
	}
	if strings.TrimSpace(*reason) == "" {
		return usagef("--reason is required: say what you checked; it goes into the journal")
	}
	w, name, err := op.open(env, false)
	if err != nil {
		return err
	}
	defer closeAndLog(w)
	st, err := w.UnlockSession(name, *reason)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "unlocked session %s of %s\n", st.Session, name)
	return printJSON(env.stdout, st)
}

func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
