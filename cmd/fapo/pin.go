package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/tenant"
)

const pinUsage = `
Usage: fapo pin tenants/NAME [--yes] [--workspace DIR] [--home DIR]

Show how a tenant's frozen files differ from the ones pinned in the sealed
store, then pin them: record their sha256 (and a copy) in the sealed
manifest, so that the server acts on the tenant again.

Frozen files are what the server trusts about a tenant:
  tenant.toml          every key; a change is shown key by key, old → new
  scorer files         a command scorer's program and the files its command
                       names, rubric files, everything under scorer/
  tool files           a [tools.NAME] retrieval corpus, the files an MCP
                       tool server's command names
  corpus files         everything under corpus/ (what retrieve steps search)
  data/train.jsonl     the train split written by fapo seal

The pin also records each model block's endpoint as this environment makes
it (base_url and name after base_url_env / name_env): a validation or test
run is refused while the server's environment points a model elsewhere.
Run fapo pin in the environment the server runs in.

fapo seal, fapo import and fapo init --example pin them. After any change the
server refuses every operation on the tenant (evaluate, compare, final, fapo
eval...), says what changed, and journals the refusal, until you pin. The
agent is told that only the operator can pin.

Review the change before you pin it: a command scorer receives every
validation and test case with its expected answer, and [model] base_url
receives every prompt, held-out ones included. An agent that edits the
workspace can make such changes; pinning is how you accept them.

What is pinned is exactly what was shown: the files are read once. On a
terminal fapo pin asks before it records; otherwise (a script, an agent's
shell) it records only with --yes. Every pin is journaled in the tenant's
journal with the OS user, whether it ran from a terminal, and what changed.

Exit status: 0 when pinned or when nothing changed, 1 when refused or
declined.
`

func pinCommand() command {
	return command{
		name:    "pin",
		summary: "review a change of a tenant's frozen files (tenant.toml, scorer, tools, train) and accept it",
		run:     runPin,
	}
}

func runPin(_ context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "pin", pinUsage)
	yes := fs.Bool("yes", false, "pin without asking (required when stdin is not a terminal)")
	workspace := fs.String("workspace", "", "the workspace: the directory that holds tenants/ (default: the one containing the tenant)")
	home := fs.String("home", "", "the sealed store directory (default: $FAPO_HOME, else the user data directory)")
	arg, err := parseTenantArgs(fs, args)
	if err != nil {
		return err
	}
	ws := *workspace
	if ws == "" {
		if ws, err = defaultWorkspace(arg); err != nil {
			return err
		}
	}
	dir, err := tenant.ResolveDir(ws, arg)
	if err != nil {
		return usagef("%v", err)
	}
	name := filepath.Base(dir)
	store, err := openStore(env, *home)
	if err != nil {
		return err
	}
	w, err := loop.Open(ws, loop.Options{Home: store.Home(), Getenv: env.getenv})
	if err != nil {
		return err
	}
	defer closeAndLog(w)
	op := operatorOf(env, "pin", args)
	if err := recordOperator(env, w, name, "pin", args); err != nil {
		return err
	}
	plan, err := w.PlanPin(name)
	if err != nil {
		return err
	}
	out := env.stdout
	if plan.Empty() {
		fmt.Fprintf(out, "tenant %s: the %d frozen files match the pinned ones; nothing to pin.\n", name, len(plan.Files))
		return nil
	}
	printPinPlan(env, plan)
	if !*yes {
		if !op.Terminal {
			return errors.New("not pinned: stdin is not a terminal, so nobody can confirm; check the changes above, then run again with --yes")
		}
		fmt.Fprintf(out, "\nPin these files of %s, so the server acts on them? [y/N] ", name)
		line, _ := bufio.NewReader(env.stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(line)); a != "y" && a != "yes" {
			return errors.New("not pinned: declined; the server keeps refusing the tenant until its files match the pinned ones or you pin")
		}
	}
	m, err := w.Pin(plan, op)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\npinned %d frozen files of %s in %s (journaled as pinned by %s, %s)\n",
		len(m.Pinned), name, store.ManifestPath(name), op.User, terminalWord(op.Terminal))
	return nil
}

func terminalWord(t bool) string {
	if t {
		return "from a terminal"
	}
	return "not from a terminal"
}

// printPinPlan shows what changed: files, tenant.toml keys with their old
// and new values, and line diffs of the other changed text files.
func printPinPlan(env *cliEnv, plan *loop.PinPlan) {
	out := env.stdout
	if len(plan.Endpoints) > 0 {
		fmt.Fprintf(out, "tenant %s: model endpoints that differ from the pinned ones (validation and test prompts go there):\n", plan.Tenant)
		for _, c := range plan.Endpoints {
			fmt.Fprintf(out, "  [%s] %s\n", c.Block, c)
		}
		if len(plan.Changes) == 0 {
			return
		}
	}
	if plan.Unpinned {
		fmt.Fprintf(out, "tenant %s was sealed before fapo pinned frozen files; nothing vouches for them yet. These files will be pinned:\n", plan.Tenant)
		for _, p := range plan.Files {
			fmt.Fprintf(out, "  %s\n", p)
		}
		return
	}
	fmt.Fprintf(out, "tenant %s: frozen files that differ from the pinned ones:\n", plan.Tenant)
	for _, c := range plan.Changes {
		fmt.Fprintf(out, "  %s\n", c)
		if c.Path == tenant.ConfigFile {
			for _, k := range plan.Keys {
				fmt.Fprintf(out, "      %s: %s → %s\n", k.Key, tomlValue(k.Old), tomlValue(k.New))
			}
		}
	}
	for _, c := range plan.Changes {
		if d := plan.Diffs[c.Path]; d != "" && c.Path != tenant.ConfigFile {
			fmt.Fprintf(out, "\n%s", d)
			if !strings.HasSuffix(d, "\n") {
				fmt.Fprintln(out)
			}
		}
	}
}

// tomlValue renders a decoded TOML value for the change list.
func tomlValue(v any) string {
	if v == nil {
		return "(absent)"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
