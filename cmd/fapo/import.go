package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/dataset/importers"
	"github.com/fapo-dev/fapo/engine/tenant"
)

const importUsage = `
Usage: fapo import hotpotqa|hover|ifeval|banking77|gsm8k SOURCE --tenant NAME [--force] [--home DIR]

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

--tenant NAME means tenants/NAME, as in fapo init; the tenant's task_type
must be the benchmark's: hotpotqa qa, hover claim, ifeval instruction,
banking77 classification, gsm8k math. A file already in fapo's case format
needs no import: seal it with fapo seal.

The converted cases go to a temporary file outside the workspace, are split
and sealed following [data] in the tenant's tenant.toml, and the temporary
file is removed. metadata.source of every case records SOURCE, and the seal's
manifest the path and sha256 of SOURCE itself.
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
	want := importers.TaskTypes[benchmark]
	if *tenantDir == "" {
		return usagef("--tenant is required: the tenant to seal into, e.g. --tenant %s (tenants/%s, created with fapo init tenants/%s --task-type %s)", benchmark, benchmark, benchmark, want)
	}
	dir := *tenantDir
	if !strings.ContainsAny(dir, `/\`) {
		dir = filepath.Join(tenant.TenantsDir, dir) // as fapo init maps NAME
	}
	if _, err := os.Stat(filepath.Join(dir, tenant.ConfigFile)); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s is not a tenant yet (no %s): create it with `fapo init %s --task-type %s`, then run this import again", dir, tenant.ConfigFile, dir, want)
	}
	t, err := tenant.Load(dir)
	if err != nil {
		return err
	}
	if t.Config.TaskType != want {
		return fmt.Errorf("%s cases have task_type %q but tenant %s has task_type %q; import into a %s tenant (fapo init tenants/NAME --task-type %s) or change task_type in %s",
			benchmark, want, t.Config.Name, t.Config.TaskType, want, want, filepath.Join(dir, tenant.ConfigFile))
	}
	data, err := os.ReadFile(source)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("source %s does not exist; download the benchmark's official file first (see fapo import --help)", source)
	}
	if err != nil {
		return err
	}
	cases, err := importers.Import(benchmark, bytes.NewReader(data), source)
	if errors.Is(err, importers.ErrCaseFormat) {
		return fmt.Errorf("%w: seal it directly with fapo seal %s --source %s", err, dir, source)
	}
	if err != nil {
		return err
	}
	if len(cases) == 0 {
		return fmt.Errorf("%s holds no %s records", source, benchmark)
	}
	// The converted file holds held-out cases until sealed, so it is
	// written outside the workspace, readable only by this user.
	tmp, err := writePrivateTemp("fapo-import-*.jsonl", func(w io.Writer) error { return importers.WriteJSONL(w, cases) })
	if err != nil {
		return fmt.Errorf("import: write the converted cases: %w", err)
	}
	defer func() { _ = os.Remove(tmp) }()
	store, err := openStore(env, *home)
	if err != nil {
		return err
	}
	if *force {
		if err := recordSealForce(env, store, t.Dir, append([]string{"import"}, args...)); err != nil {
			return err
		}
	}
	// The manifest names the benchmark's file, which outlives the
	// temporary conversion.
	origin := source
	if abs, err := filepath.Abs(source); err == nil {
		origin = abs
	}
	sum := sha256.Sum256(data)
	// The split follows the tenant.toml bytes that are pinned, which may
	// differ from the ones checked above only if they changed meanwhile:
	// then the task type is checked again by the seal.
	t, m, err := sealWithProgress(ctx, env, store, t.Dir, "import", dataset.SealRequest{Source: tmp, Force: *force,
		Origin: &dataset.Origin{Path: origin, SHA256: hex.EncodeToString(sum[:]), Format: benchmark}})
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "imported %d %s cases from %s\n", len(cases), benchmark, source)
	printSealSummary(ctx, env, t, store, m)
	return nil
}
