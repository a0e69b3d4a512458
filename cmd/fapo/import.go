package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/fapo-dev/fapo/engine/dataset/importers"
	"github.com/fapo-dev/fapo/engine/tenant"
)

const importUsage = `
Usage: fapo import hotpotqa|hover|ifeval|banking77|gsm8k SOURCE --tenant tenants/NAME [--force] [--home DIR]

Convert a public benchmark from its official file format into cases and seal
them into the tenant, exactly as fapo seal does with a JSONL of cases.

Official formats:
  hotpotqa   JSON array: _id, question, answer, context [[title, [sentences]]],
             supporting_facts [[title, sent_id]]  (hotpot_dev_distractor_v1.json)
  hover      JSON array: uid, claim, supporting_facts [[title, sent_id]], label
             (hover_dev_release_v1.1.json)
  ifeval     JSONL: key, prompt, instruction_id_list, kwargs  (input_data.jsonl)
  banking77  CSV with header text,category  (test.csv, train.csv)
  gsm8k      JSONL: question, answer ending in "#### N"  (test.jsonl)

The converted cases go to a temporary file outside the workspace, are split
and sealed following [data] in the tenant's tenant.toml, and the temporary
file is removed. metadata.source of every case records SOURCE.
`

func importCommand() command {
	return command{
		name:    "import",
		summary: "convert a public benchmark (hotpotqa, hover, ifeval, banking77, gsm8k) into cases and seal them",
		run:     runImport,
	}
}

func runImport(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "import", importUsage)
	tenantDir := fs.String("tenant", "", "the tenant directory to seal into, e.g. tenants/hotpotqa (required)")
	force := fs.Bool("force", false, "re-seal even though the tenant has runs (they become incomparable with new ones)")
	home := fs.String("home", "", "the sealed store directory (default: $FAPO_HOME, else the user data directory)")
	// Flags may follow the positional arguments, which flag alone does not allow.
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if args = fs.Args(); len(args) == 0 {
			break
		}
		pos, args = append(pos, args[0]), args[1:]
	}
	if len(pos) != 2 {
		return usagef("want a benchmark and a source file, got %d arguments %q: fapo import hotpotqa dev.json --tenant tenants/hotpotqa", len(pos), pos)
	}
	benchmark, source := pos[0], pos[1]
	if !slices.Contains(importers.Benchmarks, benchmark) {
		return usagef("unknown benchmark %q; use one of %s", benchmark, strings.Join(importers.Benchmarks, ", "))
	}
	if *tenantDir == "" {
		return usagef("--tenant is required: the tenant directory to seal into, e.g. --tenant tenants/%s", benchmark)
	}
	t, err := tenant.Load(*tenantDir)
	if err != nil {
		return err
	}
	if want := importers.TaskTypes[benchmark]; t.Config.TaskType != want {
		return fmt.Errorf("%s cases have task_type %q but tenant %s has task_type %q; import into a %s tenant or change task_type in %s",
			benchmark, want, t.Config.Name, t.Config.TaskType, want, tenant.ConfigFile)
	}
	f, err := os.Open(source)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("source %s does not exist; download the benchmark's official file first (see fapo import --help)", source)
	}
	if err != nil {
		return err
	}
	cases, err := importers.Import(benchmark, f, source)
	f.Close()
	if err != nil {
		return err
	}
	if len(cases) == 0 {
		return fmt.Errorf("%s holds no %s records", source, benchmark)
	}
	// The converted file holds held-out cases until sealed, so it is
	// written outside the workspace, readable only by this user.
	tmp, err := os.CreateTemp("", "fapo-import-*.jsonl")
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := importers.WriteJSONL(tmp, cases); err != nil {
		tmp.Close()
		return fmt.Errorf("import: write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("import: %w", err)
	}
	store, err := openStore(env, *home)
	if err != nil {
		return err
	}
	if *force {
		if err := recordSealForce(env, store, t.Dir, append([]string{"import"}, args...)); err != nil {
			return err
		}
	}
	// The split follows the tenant.toml bytes that are pinned, which may
	// differ from the ones checked above only if they changed meanwhile:
	// then the task type is checked again by the seal.
	t, m, err := tenant.Seal(ctx, store, t.Dir, tmp.Name(), *force)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "imported %d %s cases from %s\n", len(cases), benchmark, source)
	printSealSummary(env, t, store, m)
	return nil
}
