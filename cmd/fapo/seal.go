package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/scoring"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/tenant"
)

const sealUsage = `
Usage: fapo seal tenants/NAME --source FILE [--force] [--home DIR]

Split a dataset into train, validation and test, and seal the held-out part.

The source is a JSONL file, one case per line:
  {"case_id": "...", "task_type": "...", "context": {...}, "expected": {...}, "metadata": {...}}
It is read twice and never modified. The split follows [data] in the tenant's
tenant.toml: the ratios (train, validation, test), the seed, and optionally a
stratify path such as expected.label whose values keep their proportions in
every split. Cases sharing metadata.group always land in the same split, and
so do near-duplicates under different ids (the contamination check): inputs
identical after normalization, or whose word 5-grams overlap with Jaccard
similarity >= 0.5 (strings a tenth of the cases repeat, such as a label list,
do not count). The same source and [data] always give the same split.

The summary ends with the validation split's power: the smallest true gain a
paired comparison on it detects 80% of the time (two-sided alpha 0.05, normal
approximation), from the spread of the baseline's train run when the server
recorded one, else a worst-case bound; and a warning when the target gain
(target.gain, or target.min minus the baseline's train mean) is below it.

Writes:
  tenants/NAME/data/train.jsonl           the only split the agent may read
  $FAPO_HOME/tenants/NAME/validation.jsonl.enc, test.jsonl.enc
                                          encrypted (AES-GCM) with the key in
                                          $FAPO_HOME/keys/NAME.key (mode 0600)
  $FAPO_HOME/tenants/NAME/manifest.json   counts, seed, ratios, source sha256,
                                          and the pins: the sha256 of each
                                          frozen file (see fapo pin --help)

$FAPO_HOME defaults to $XDG_DATA_HOME/fapo, else ~/.local/share/fapo
(~/Library/Application Support/fapo on macOS). Keep it outside the workspace.

The seal pins the tenant's frozen files: tenant.toml, the scorer's and the
declared tools' files, corpus/ and data/train.jsonl. The server acts on
exactly those; after a change it refuses until the operator runs fapo pin.
It also records each model block's endpoint as this environment makes it
(base_url_env, name_env applied): validation and test runs are refused
while the server's environment points a model elsewhere. Seal in the
environment the server runs in.

A tenant that already has runs is not re-sealed without --force: its runs and
validation results were measured on the old split. A forced seal is
journaled with the OS user who ran it.
`

func sealCommand() command {
	return command{
		name:    "seal",
		summary: "split a dataset into train/validation/test and seal the held-out splits",
		run:     runSeal,
	}
}

func runSeal(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "seal", sealUsage)
	source := fs.String("source", "", "the JSONL dataset to split (required; it is only read)")
	force := fs.Bool("force", false, "re-seal even though the tenant has runs (they become incomparable with new ones)")
	home := fs.String("home", "", "the sealed store directory (default: $FAPO_HOME, else the user data directory)")
	dir, err := parseTenantArgs(fs, args)
	if err != nil {
		return err
	}
	if *source == "" {
		return usagef("--source is required: the JSONL file of cases to split")
	}
	store, err := openStore(env, *home)
	if err != nil {
		return err
	}
	if *force {
		if err := recordSealForce(env, store, dir, append([]string{"seal"}, args...)); err != nil {
			return err
		}
	}
	t, m, err := sealWithProgress(ctx, env, store, dir, "seal", dataset.SealRequest{Source: *source, Force: *force})
	if err != nil {
		return err
	}
	printSealSummary(ctx, env, t, store, m)
	warnStaleGuards(env, t, m.Source.Path)
	return nil
}

// printSealPower says how small a gain the new validation split can detect.
// The workspace's run index may hold a train run of the baseline (a
// re-seal); otherwise the figure is the worst-case bound.
func printSealPower(ctx context.Context, env *cliEnv, store *dataset.Store, t *tenant.Tenant, m *dataset.Manifest) {
	ws, err := defaultWorkspace(t.Dir)
	var pv *loop.PowerView
	if err == nil {
		var w *loop.Workspace
		if w, err = loop.Open(ws, loop.Options{Home: store.Home(), Getenv: env.getenv}); err == nil {
			pv, err = w.Power(ctx, tenantName(t))
			closeAndLog(w)
		}
	}
	if err != nil {
		// The figure is advice; a workspace that cannot be opened here
		// still gets the bound, which needs nothing but the count.
		n := m.Counts.Validation
		fmt.Fprintf(env.stdout, "\npower: with %d validation cases a paired comparison detects a true gain of about %.1f points 80%% of the time (worst-case bound; %v)\n",
			n, session.MinDetectableEffect(session.MaxPairedSD(scoring.MaxScore), n, session.Alpha, session.PlannedPower), err)
		return
	}
	fmt.Fprintf(env.stdout, "\npower: %s\n", pv.Summary)
	if pv.Warning != "" {
		fmt.Fprintf(env.stdout, "warning: %s\n", pv.Warning)
	}
}

// duplicatesLine describes what the contamination check grouped at a seal.
func duplicatesLine(d *dataset.DuplicateGroups) string {
	if d == nil {
		return "not run (sealed by an older fapo): re-seal with --force to group near-duplicate cases"
	}
	crit := fmt.Sprintf("identical inputs, or word %d-gram Jaccard >= %g", d.ShingleWords, d.Jaccard)
	if d.Groups == 0 {
		return fmt.Sprintf("no near-duplicate cases under different ids (%s)", crit)
	}
	return fmt.Sprintf("%s of near-duplicate cases merged, %s in all (exact copies: %d), each kept in one split (%s)",
		plural(d.Groups, "group"), plural(d.Cases, "case"), d.Exact, crit)
}

// sealWithProgress seals req into the tenant in dir, following the [data]
// block of its pinned tenant.toml, with the progress bar every long command
// shows on a terminal. command ("seal", "import", "init --example") is
// what the sealed store's database records as having sealed the tenant,
// before the seal: a journal later found in the workspace is then known
// not to be an earlier fapo's.
func sealWithProgress(ctx context.Context, env *cliEnv, store *dataset.Store, dir, command string, req dataset.SealRequest) (*tenant.Tenant, *dataset.Manifest, error) {
	if err := markSealed(env, store, dir, command); err != nil {
		return nil, nil, err
	}
	p := newProgress(env.stderr, "seal "+filepath.Base(dir), "cases", false)
	req.Progress = func(done, total int) { p.set(done, total, "", "") }
	t, m, err := tenant.Seal(ctx, store, dir, req, env.getenv)
	p.finish()
	return t, m, err
}

// printSealSummary is what every seal (seal, init, import) reports: the
// counts, the contamination check and the validation split's power.
func printSealSummary(ctx context.Context, env *cliEnv, t *tenant.Tenant, store *dataset.Store, m *dataset.Manifest) {
	w := env.stdout
	fmt.Fprintf(w, "sealed tenant %s: %d cases from %s (sha256 %.12s…, seed %d)\n\n", m.Tenant, m.Source.Cases, m.Source.Path, m.Source.SHA256, m.Seed)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "split\tcases\tratio\t")
	ratios := []float64{m.Ratios.Train, m.Ratios.Validation, m.Ratios.Test}
	for i, sp := range []dataset.Split{dataset.Train, dataset.Validation, dataset.Test} {
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t\n", sp, m.Counts.Of(sp), ratios[i])
	}
	tw.Flush()
	if m.Stratify != "" {
		fmt.Fprintf(w, "\nstrata of %s:\n", m.Stratify)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "value\ttrain\tvalidation\ttest\t")
		for _, k := range m.StrataNames() {
			c := m.Strata[k]
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t\n", k, c.Train, c.Validation, c.Test)
		}
		tw.Flush()
	}
	if m.Groups > 0 {
		fmt.Fprintf(w, "\n%d metadata.group values kept their cases together\n", m.Groups)
	}
	fmt.Fprintf(w, "\ncontamination check: %s\n", duplicatesLine(m.Duplicates))
	fmt.Fprintf(w, "\ntrain:    %s\nmanifest: %s\n", filepath.Join(t.Dir, "data", "train.jsonl"), store.ManifestPath(m.Tenant))
	printSealPower(ctx, env, store, t, m)
}

// parseTenantArgs parses flags that may come before or after the one
// positional argument (the tenant directory), which the flag package alone
// does not allow.
func parseTenantArgs(fs *flag.FlagSet, args []string) (string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return "", err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	switch len(pos) {
	case 0:
		return "", usagef("missing the tenant directory, e.g. tenants/NAME")
	case 1:
		return pos[0], nil
	}
	return "", usagef("want one tenant directory, got %d arguments: %q", len(pos), pos)
}

// tenantName is the name the sealed store files a tenant under: its
// configured name, else its directory's name.
func tenantName(t *tenant.Tenant) string {
	if t.Config.Name != "" {
		return t.Config.Name
	}
	return filepath.Base(t.Dir)
}

func openStore(env *cliEnv, home string) (*dataset.Store, error) {
	if home == "" {
		var err error
		if home, err = dataset.DefaultHome(env.getenv); err != nil {
			return nil, err
		}
	}
	if info, err := os.Stat(home); err == nil && !info.IsDir() {
		return nil, fmt.Errorf("sealed store %s is a file, not a directory; point --home or FAPO_HOME at a directory", home)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("sealed store: %w", err)
	}
	return dataset.OpenStore(home), nil
}

// warnStaleGuards says when a client's guard that register --write wrote
// before this seal does not deny the source just sealed: the guard lists
// the sources sealed when it was written, and this one holds the held-out
// cases in plain text where the agent's tools may read.
func warnStaleGuards(env *cliEnv, t *tenant.Tenant, source string) {
	if source == "" || !filepath.IsAbs(source) {
		return
	}
	guards := map[string]string{filepath.Join(filepath.Dir(filepath.Dir(t.Dir)), ".claude", "settings.json"): "claude"}
	if p, err := (&registration{Client: "codex"}).configPath(env); err == nil {
		guards[p] = "codex"
	}
	for path, client := range guards {
		b, err := os.ReadFile(path)
		if err != nil || !strings.Contains(string(b), "fapo") || strings.Contains(string(b), source) {
			continue // no guard of fapo's there, or it names the source
		}
		fmt.Fprintf(env.stderr, "warning: %s (written by fapo register %s --write) does not deny %s, which holds the held-out cases in plain text: run fapo register %s --write again, or move the source out of the agent's reach\n",
			path, client, source, client)
	}
}
