package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/run"
)

const finalUsage = `
Usage: fapo final --tenant NAME [--variant best|vNNNN] [--force]
                  [--workspace DIR] [--home DIR]

Evaluate a variant on the test split: the one look at held-out data that
tells how the optimized pipeline does on cases nobody tuned it on. The
variant defaults to "best", the incumbent of the tenant's latest session
(v0000 when there is none).

The test split is evaluated once. A second run is refused: looking again
after changing anything turns the test split into one more validation
split, and its score stops being an unbiased estimate. --force runs it
anyway; every run and every refusal is recorded in the tenant's journal.
No MCP tool or resource reaches the test split; only this command does.

The test split is evaluated the way validation decides: on each task
model of [acceptance] task_models (or [model]), each case as many times as
[acceptance] repeats says. That is cases × repeats × task models
evaluations, so repeats = 3 triples the model calls and the cost of the
one look. Before the first case runs, fapo final prints the number of
evaluations and the model calls and $ to expect, measured on the
session's runs of the variant (validation before train).

The run is written, redacted to its scores and shape, to the sealed store.

A test run is a result only when every case was scored. When cases
errored (no answer because of provider or network errors after the
retries) nothing is reported and the one shot is not used: fix the cause
and run fapo final again, which re-runs only the errored cases. Exit
status: 0 on a result, 3 when some cases errored, 4 when all did, 1 on any
other failure, 2 on a usage mistake.
`

func finalCommand() command {
	return command{
		name:    "final",
		summary: "evaluate the test split, once, for the final score",
		run:     runFinal,
	}
}

func runFinal(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "final", finalUsage)
	var op operatorFlags
	op.register(fs)
	variantID := fs.String("variant", "best", "best (the session's incumbent) or a variant id such as v0003")
	force := fs.Bool("force", false, "run again although the test split was already evaluated (journaled)")
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
	if err := recordOperator(env, w, name, "final", args); err != nil {
		return err
	}

	p := newProgressReporter(env.stderr, name+" test")
	p.heldOut = true
	res, err := w.Final(ctx, loop.FinalRequest{Tenant: name, Variant: *variantID, Force: *force, Progress: p.update,
		OnPlan: func(plan loop.FinalPlan) { fmt.Fprintln(env.stderr, finalPlanLine(name, plan)) }})
	p.finish()
	var inc *run.IncompleteError
	if errors.As(err, &inc) {
		code := exitSomeErrored
		if inc.Errored >= inc.Cases {
			code = exitAllErrored
		}
		return &exitError{code: code, err: err}
	}
	if err != nil {
		return err
	}
	for _, pm := range res.PerModel {
		if len(res.PerModel) > 1 {
			fmt.Fprintf(env.stdout, "Task model %s:\n", pm.Model)
		}
		printRunSummary(env.stdout, pm.Summary, "the sealed store (redacted: scores and shape only)")
		fmt.Fprintln(env.stdout)
	}
	if len(res.PerModel) > 1 {
		fmt.Fprintf(env.stdout, "Test score per task model:")
		for _, pm := range res.PerModel {
			fmt.Fprintf(env.stdout, " %s %.2f", pm.Model, pm.Summary.ScoreMean)
		}
		fmt.Fprintf(env.stdout, "; mean %.2f.\n", res.ScoreMean)
	}
	if res.Previous == 0 {
		fmt.Fprintf(env.stdout, "This was the one-shot test evaluation of %s (variant %s): test score %.2f. It is journaled; a second run needs --force.\n",
			name, res.Variant, res.ScoreMean)
	} else {
		fmt.Fprintf(env.stdout, "This was a forced repeat: the test split of %s has now been evaluated %d times (all journaled), so test score %.2f of variant %s is no longer an unbiased estimate.\n",
			name, res.Previous+1, res.ScoreMean, res.Variant)
	}
	return nil
}

// finalPlanLine tells the operator what the one look will evaluate and
// what it is expected to call, before it starts.
func finalPlanLine(name string, p loop.FinalPlan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "fapo final: %s variant %s on the test split: %d cases", name, p.Variant, p.Cases)
	if p.Repeats > 1 {
		fmt.Fprintf(&b, " × %d repeats", p.Repeats)
	}
	if len(p.Models) > 1 || p.Models[0] != "" {
		fmt.Fprintf(&b, " × %d task model(s) (%s)", len(p.Models), strings.Join(p.Models, ", "))
	}
	fmt.Fprintf(&b, " = %d evaluations", p.Evaluations)
	if p.MeasuredOn == "" {
		fmt.Fprintf(&b, ", each making the model calls the pipeline makes for one case (no run of %s in the session to measure them)", p.Variant)
		return b.String()
	}
	fmt.Fprintf(&b, "; expected about %d model calls", p.ModelCalls)
	if p.USD > 0 {
		fmt.Fprintf(&b, " and $%.4f at list price", p.USD)
	}
	fmt.Fprintf(&b, " (%.1f calls per evaluation in %s)", p.CallsPerEvaluation, p.MeasuredOn)
	return b.String()
}
