package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/tenant"
)

const evalUsage = `
Usage: fapo eval --tenant NAME --split train|validation [--variant v0000]
                 [--limit N] [--repeats N] [--resume RUN] [--offline] [--cpuprofile FILE]
                 [--workspace DIR] [--home DIR]

Evaluate a variant of a tenant's pipeline on the train or validation split
and print the run's summary: score mean and breakdown, execution and scoring
errors, per-step calls, cache hits, tokens and latency, usage and cost.

This is the operator's view: validation is open here, no session is needed
and nothing is charged to a session's budget. An agent reaches validation
only through the MCP tools, which show it aggregates of reviewed variants.
The test split is never evaluated here: it is looked at once, at the end,
with 'fapo final'.

Validation is evaluated the way compare evaluates it: each case as many
times as [acceptance] repeats in tenant.toml says (each repeat its own
model calls, scores and cache entries), so its figures are the ones a
session decides on. Train is evaluated once. --repeats N overrides both
(--repeats 1: once); the cases, scored and failed rows then count
evaluations, N per case.

Cases run in parallel (concurrency from [model] in tenant.toml) and each
is written to the run's cases.jsonl as it completes. Ctrl-C stops the run
promptly and keeps the finished cases; --resume RUN continues it without
repeating a scored case, and runs the errored ones again. A run resumes
only with the variant, split, chain files and repeats it started with. Model
answers are cached per tenant in the sealed store, so a variant that
changes only the last step re-issues only that step's calls; --offline
answers from that cache only and fails on a miss.

A case is "failed" when it is scored below full marks, and "errored" when
it got no answer because of the infrastructure (provider errors after the
retries, a network that fails): errored cases are in no mean, and the run
ends with their commonest causes and what to do about them.

--cpuprofile FILE writes a CPU profile of the whole run to FILE (created
0600; read it with 'go tool pprof FILE'): stack traces and sample counts,
none of the data the run handled.

Exit status: 0 when every case was scored, 3 when some cases errored, 4
when every case errored, 1 on any other failure, 2 on a usage mistake.

Train runs are written to tenants/NAME/runs/RUN/, held-out runs (validation)
to the sealed store. Progress goes to stderr (a bar on a terminal, a line
every 5% or 10 s otherwise); the summary to stdout.

Examples:
  fapo eval --tenant capitals --split train
  fapo eval --tenant capitals --split validation --variant v0003
  fapo eval --tenant capitals --split train --repeats 3
  fapo eval --tenant capitals --split train --resume r20250101T120000Z-a1b2c3
`

func evalCommand() command {
	return command{
		name:    "eval",
		summary: "evaluate a variant on train or validation and print a per-step summary",
		run:     runEval,
	}
}

func runEval(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "eval", evalUsage)
	var op operatorFlags
	op.register(fs)
	variantID := fs.String("variant", "", "the variant to evaluate (default v0000, the tenant's baseline)")
	splitName := fs.String("split", "", "train or validation (required)")
	limit := fs.Int("limit", 0, "evaluate only the first N cases of the split (0: all)")
	repeats := fs.Int("repeats", 0, "evaluate each case N times (default: [acceptance] repeats on validation, once on train)")
	resume := fs.String("resume", "", "continue the interrupted run RUN; its completed cases are not run again")
	offline := fs.Bool("offline", false, "answer every model call from the response cache; a cache miss fails the case")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to FILE, for go tool pprof")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q: name the tenant with --tenant", fs.Args())
	}
	split := dataset.Split(*splitName)
	switch {
	case *splitName == "":
		return usagef("--split is required: train or validation")
	case split == dataset.Test:
		return usagef("the test split is not evaluated by fapo eval: it is looked at once, at the end, with 'fapo final --tenant NAME'")
	case !split.Valid():
		return usagef("--split %q: use train or validation", *splitName)
	case *limit < 0:
		return usagef("--limit %d: use a positive number of cases, or 0 for all", *limit)
	case *repeats < 0:
		return usagef("--repeats %d: evaluate each case at least once (--repeats 1), or leave it out for the default", *repeats)
	}
	if *resume != "" && !run.ValidID(*resume) {
		return usagef("--resume %q is not a run id (like r20250101T120000Z-a1b2c3): the interrupted run printed its id", *resume)
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer func() {
			if err := stop(); err != nil {
				fmt.Fprintf(env.stderr, "fapo: the CPU profile %s was not written completely: %v\n", *cpuProfile, err)
			}
		}()
	}
	w, name, err := op.open(env, *offline)
	if err != nil {
		return err
	}
	defer closeAndLog(w)
	if split.HeldOut() {
		// Train is the agent's own data; a look at a held-out split is the
		// operator's, and the journal says whose.
		if err := recordOperator(env, w, name, "eval", args); err != nil {
			return err
		}
	}

	p := newProgressReporter(env.stderr, fmt.Sprintf("%s %s", name, split))
	p.heldOut = split.HeldOut()
	sum, err := w.EvaluateForOperator(ctx, loop.RunRequest{Tenant: name, Variant: *variantID, Split: split,
		Limit: *limit, Repeats: *repeats, Resume: *resume, Progress: p.update})
	p.finish()
	if err != nil {
		var stopped *run.StoppedError
		if errors.As(err, &stopped) {
			return fmt.Errorf("%w\nto continue: fapo eval %s", err, resumeArgs(op, name, *variantID, split, *limit, *repeats, stopped.RunID))
		}
		return err
	}
	where := "the sealed store (held-out runs never enter the workspace)"
	if split == dataset.Train {
		where = filepath.Join(op.tenantDir, tenant.RunsDir, sum.RunID)
	}
	printRunSummary(env.stdout, sum, where)
	if sum.Errored > 0 {
		return erroredExit(sum, fmt.Sprintf("to run the errored cases again: fapo eval %s", resumeArgs(op, name, *variantID, split, *limit, *repeats, sum.RunID)))
	}
	return nil
}

// erroredExit is the ending of a run with errored cases: the commonest
// causes with their counts and what to do, and exit code 3 (some errored)
// or 4 (all errored).
func erroredExit(sum *run.Summary, next string) error {
	code := exitSomeErrored
	if sum.Scored == 0 {
		code = exitAllErrored
	}
	return &exitError{code: code, err: fmt.Errorf("errored %d of %d: %s\n%s", sum.Errored, sum.Cases, causeLines(sum.ErrorCauses), next)}
}

// causeLines lists the three commonest causes with their hints.
func causeLines(causes []run.CauseCount) string {
	const shown = 3
	var b strings.Builder
	for i, c := range causes {
		if i == shown {
			rest := 0
			for _, r := range causes[i:] {
				rest += r.Count
			}
			fmt.Fprintf(&b, "; %d more with other causes", rest)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s ×%d (%s)", c.Cause, c.Count, c.Hint)
	}
	return b.String()
}

// resumeArgs is the command line that continues an interrupted run, so the
// operator can paste it.
func resumeArgs(op operatorFlags, name, variantID string, split dataset.Split, limit, repeats int, runID string) string {
	args := []string{"--tenant", name}
	if variantID != "" {
		args = append(args, "--variant", variantID)
	}
	args = append(args, "--split", string(split))
	if limit > 0 {
		args = append(args, "--limit", fmt.Sprint(limit))
	}
	if repeats > 0 {
		args = append(args, "--repeats", fmt.Sprint(repeats))
	}
	if op.workspace != "" {
		args = append(args, "--workspace", op.workspace)
	}
	if op.home != "" {
		args = append(args, "--home", op.home)
	}
	return strings.Join(append(args, "--resume", runID), " ")
}

// operatorFlags are the flags every operator command that works on one
// tenant of a workspace shares.
type operatorFlags struct {
	tenantArg string
	workspace string
	home      string
	tenantDir string // resolved by open
}

func (o *operatorFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&o.tenantArg, "tenant", "", "the tenant, by name (capitals) or as tenants/NAME (required)")
	fs.StringVar(&o.workspace, "workspace", "", "the workspace: the directory that holds tenants/ (default: the current directory)")
	fs.StringVar(&o.home, "home", "", "the sealed store directory (default: $FAPO_HOME, else the user data directory)")
}

// open resolves the tenant name and opens the workspace over the sealed
// store. The loop takes tenant names only; a path such as tenants/NAME is
// reduced to its name after checking that it is a tenant of the workspace.
func (o *operatorFlags) open(env *cliEnv, offline bool) (*loop.Workspace, string, error) {
	if o.tenantArg == "" {
		return nil, "", usagef("--tenant is required, e.g. --tenant capitals")
	}
	ws := o.workspace
	if ws == "" {
		var err error
		if ws, err = os.Getwd(); err != nil {
			return nil, "", err
		}
	}
	dir, err := tenant.ResolveDir(ws, o.tenantArg)
	if err != nil {
		return nil, "", usagef("--tenant: %v", err)
	}
	o.tenantDir = dir
	store, err := openStore(env, o.home)
	if err != nil {
		return nil, "", err
	}
	w, err := loop.Open(ws, loop.Options{Home: store.Home(), Getenv: env.getenv, Offline: offline})
	if err != nil {
		return nil, "", err
	}
	name := filepath.Base(dir)
	notices, err := w.ImportJournal(name)
	if err != nil {
		_ = w.Close()
		return nil, "", err
	}
	for _, n := range notices {
		fmt.Fprintf(env.stderr, "fapo: %s\n", n)
	}
	return w, name, nil
}

// printRunSummary prints a run's summary as tables: the run, its score, its
// steps, and its usage by model.
func printRunSummary(w io.Writer, sum *run.Summary, where string) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s\t%s\n", k, fmt.Sprintf(format, a...)) }
	row("run", "%s", sum.RunID)
	if sum.Resumed {
		row("", "resumed: cases finished before the interruption are included")
	}
	row("tenant", "%s", sum.Tenant)
	row("variant", "%s", sum.Variant)
	row("split", "%s", sum.Split)
	row("cases", "%d", sum.Cases)
	if sum.Repeats > 1 {
		row("repeats", "%d: each case evaluated %d times; cases, scored and failed count evaluations", sum.Repeats, sum.Repeats)
	}
	row("scored", "%d, of which %d failed: below full marks (%d execution and %d scoring errors, scored 0)", sum.Scored, sum.Failed, sum.ExecErrors, sum.ScoreErrors)
	if sum.Errored > 0 {
		row("errored", "%d: no answer because of the infrastructure, in no mean: %s", sum.Errored, run.FormatCauses(sum.ErrorCauses, 3))
	} else {
		row("errored", "0")
	}
	if sum.Scored > 0 {
		row("score mean", "%.2f", sum.ScoreMean) // over the scored cases; the row above says how many
	} else {
		row("score mean", "none: no case was scored")
	}
	keys := make([]string, 0, len(sum.BreakdownMeans))
	for k := range sum.BreakdownMeans {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		row("  "+k, "%.2f", sum.BreakdownMeans[k])
	}
	if !sum.Finished.IsZero() && !sum.Started.IsZero() {
		row("duration", "%s", sum.Finished.Sub(sum.Started).Round(10*time.Millisecond))
	}
	u := sum.Usage
	row("usage", "%d calls (%d cache hits), %d prompt + %d completion tokens, $%.4f", u.Calls, u.CacheHits, u.PromptTokens, u.CompletionTokens, u.USD)
	if len(u.Unpriced) > 0 {
		row("", "no price in tenant.toml for %s: counted as $0; add [prices.\"MODEL\"]", strings.Join(u.Unpriced, ", "))
	}
	if where != "" {
		row("written to", "%s", where)
	}
	tw.Flush()

	if len(sum.Steps) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "step\tkind\truns\terrors\tskipped\tcalls\tcache hits\tprompt tok\tcompl tok\tp50 ms\tp95 ms\t")
		for _, s := range sum.Steps {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%.0f\t%.0f\t\n", s.StepID, s.Kind, s.Runs, s.Errors, s.Skipped,
				s.Calls, s.CacheHits, s.PromptTokens, s.CompletionTokens, s.LatencyP50MS, s.LatencyP95MS)
		}
		tw.Flush()
	}
	if len(sum.UsageByModel) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "model\tcalls\tcache hits\tprompt tok\tcompl tok\tUSD\t")
		for _, m := range sum.UsageByModel {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.4f\t\n", m.Model, m.Calls, m.CacheHits, m.PromptTokens, m.CompletionTokens, m.USD)
		}
		tw.Flush()
	}
}
