package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/pipeline"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/tenant"
	"github.com/fapo-dev/fapo/engine/toolset"
)

const doctorUsage = `
Usage: fapo doctor tenants/NAME [--offline] [--workspace DIR] [--home DIR]

Check that a tenant is ready for an optimization session, one line per check:
  tenant        tenant.toml loads and validates
  train split   data/train.jsonl reads as a dataset
  chain         chain.toml loads and its templates render on train cases
  model         every model block has its key, its server answers, and one
                tiny real call (a few tokens) succeeds; the provider's own
                error text is shown. --offline skips it.
  sealed store  the tenant is sealed and its train split is the sealed one;
                how many near-duplicate groups the seal kept together
  pins          tenant.toml, the scorer's and tools' files and the train
                split are the ones pinned (by fapo seal or fapo pin); a
                change here is what makes the server refuse the tenant
  leak scan     no file in the workspace contains held-out (validation or
                test) case content

The leak scan reads every file under the workspace (except .git, binaries
and files over 50 MB) and compares normalized word sequences with the
held-out cases' fingerprints; it reports each leaking file with the number
of held-out cases it contains, never their text. The workspace defaults to
the directory that contains tenants/, else the current directory.

Exit status 0 when no check fails (a skipped check is not a failure), 1
when any fails.
`

func doctorCommand() command {
	return command{
		name:    "doctor",
		summary: "check a tenant and scan the workspace for held-out data leaks",
		run:     runDoctor,
	}
}

// doctorState is what the checks share; a check that needs what an earlier
// one failed to produce reports errSkipped.
type doctorState struct {
	env       *cliEnv
	dir       string
	homeFlag  string
	workspace string
	offline   bool

	tenant     *tenant.Tenant
	store      *dataset.Store
	manifest   *dataset.Manifest
	trainCases int
	trainSHA   string
}

// doctorCheck is one line of doctor output. run returns what it found (on
// success), or an error that says what is wrong and what to do; detail lines
// (e.g. leaking files) follow the error's first line.
type doctorCheck struct {
	name string
	run  func(ctx context.Context, st *doctorState) (string, error)
}

var errSkipped = errors.New("skipped")

// doctorChecks run in order; add a check by appending to this list.
func doctorChecks() []doctorCheck {
	return []doctorCheck{
		{"tenant", checkTenant},
		{"train split", checkTrain},
		{"chain", checkChain},
		{"model", checkModel},
		{"sealed store", checkSealed},
		{"pins", checkPins},
		{"leak scan", checkLeaks},
	}
}

func runDoctor(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "doctor", doctorUsage)
	workspace := fs.String("workspace", "", "the directory the agent works in, scanned for leaks (default: the directory containing tenants/, else the current directory)")
	home := fs.String("home", "", "the sealed store directory (default: $FAPO_HOME, else the user data directory)")
	offline := fs.Bool("offline", false, "do not call the model (skips the model check)")
	dir, err := parseTenantArgs(fs, args)
	if err != nil {
		return err
	}
	st := &doctorState{env: env, dir: dir, homeFlag: *home, workspace: *workspace, offline: *offline}
	if st.workspace == "" {
		if st.workspace, err = defaultWorkspace(dir); err != nil {
			return err
		}
	}
	failed, skipped := 0, 0
	checks := doctorChecks()
	for _, c := range checks {
		detail, err := c.run(ctx, st)
		switch {
		case errors.Is(err, errSkipped):
			skipped++
			fmt.Fprintf(env.stdout, "%-8s %-13s %s\n", "skipped", c.name, detail)
		case err != nil:
			failed++
			first, rest, _ := strings.Cut(errorText(err), "\n")
			fmt.Fprintf(env.stdout, "%-8s %-13s %s\n", "problem", c.name, first)
			if rest != "" {
				fmt.Fprintln(env.stdout, rest)
			}
		default:
			fmt.Fprintf(env.stdout, "%-8s %-13s %s\n", "ok", c.name, detail)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if failed > 0 {
		msg := fmt.Sprintf("%d of %d checks failed", failed, len(checks))
		if skipped > 0 {
			msg += fmt.Sprintf(", %d skipped", skipped)
		}
		return errors.New(msg)
	}
	return nil
}

// defaultWorkspace is the directory holding tenants/ when the tenant sits in
// one, else the current directory.
func defaultWorkspace(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if parent := filepath.Dir(abs); filepath.Base(parent) == "tenants" {
		return filepath.Dir(parent), nil
	}
	return os.Getwd()
}

func checkTenant(_ context.Context, st *doctorState) (string, error) {
	t, err := tenant.Load(st.dir)
	if err != nil {
		return "", fmt.Errorf("%v; fix tenant.toml (fapo init scaffolds a valid one)", err)
	}
	st.tenant = t
	return fmt.Sprintf("%s loads (task_type %q)", tenantName(t), t.Config.TaskType), nil
}

func checkTrain(_ context.Context, st *doctorState) (string, error) {
	if st.tenant == nil {
		return "the tenant did not load", errSkipped
	}
	path := filepath.Join(st.tenant.Dir, "data", "train.jsonl")
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%s is missing: run fapo seal %s --source CASES.jsonl", path, st.dir)
	}
	if err != nil {
		return "", err
	}
	h := sha256.New()
	_, err = io.Copy(h, f)
	_ = f.Close()
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	n := 0
	if err := dataset.ReadFile(path, func(int, dataset.Case) error { n++; return nil }); err != nil {
		return "", fmt.Errorf("%v; restore the file by sealing again with the same source (fapo seal %s --source CASES.jsonl)", err, st.dir)
	}
	st.trainCases, st.trainSHA = n, hex.EncodeToString(h.Sum(nil))
	return fmt.Sprintf("%d cases in %s", n, path), nil
}

// checkChain loads the baseline chain and renders every template on the
// first train cases, with no model call, so a broken template is found
// before an evaluation spends money on it.
func checkChain(_ context.Context, st *doctorState) (string, error) {
	if st.tenant == nil {
		return "the tenant did not load", errSkipped
	}
	set, err := toolset.FromConfig(st.tenant.Dir, nil, st.tenant.Config.Tools)
	if err != nil {
		return "", fmt.Errorf("[tools]: %v", err)
	}
	defer closeAndLog(set)
	opts := []chain.Option{chain.CorpusDir(st.tenant.Dir), chain.WithTools(set.Tools())}
	if spec := st.tenant.Config.Pipeline; spec != nil {
		p, err := pipeline.New(*spec, pipeline.Options{Dir: st.tenant.Dir})
		if err != nil {
			return "", err
		}
		defer closeAndLog(p)
		opts = append(opts, chain.External(p.ChainSpec()))
	}
	ch, err := chain.Load(st.tenant.Dir, opts...)
	if err != nil {
		return "", fmt.Errorf("%v; fix chain.toml or the prompt files it names", err)
	}
	if ch.IsExternal() {
		return checkExternal(ch, st)
	}
	tried := 0
	err = dataset.ReadFile(st.tenant.TrainPath(), func(_ int, c dataset.Case) error {
		if tried == 3 {
			return errStopReading
		}
		tried++
		if err := ch.DryRun(c); err != nil {
			return fmt.Errorf("case %s: %w", c.CaseID, err)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopReading) {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Sprintf("%s (no train cases yet to render templates on)", plural(len(ch.Steps()), "step")), nil
		}
		return "", fmt.Errorf("templates do not render: %v", err)
	}
	return fmt.Sprintf("%s, rendered on %s", plural(len(ch.Steps()), "step"), plural(tried, "train case")), nil
}

var errStopReading = errors.New("enough cases read")

// checkExternal runs the tenant's program on the first train case with a
// stand-in model (no model is called, nothing is spent): it must start,
// answer within the protocol and report its steps.
func checkExternal(ch *chain.Chain, st *doctorState) (string, error) {
	var first *dataset.Case
	err := dataset.ReadFile(st.tenant.TrainPath(), func(_ int, c dataset.Case) error {
		first = &c
		return errStopReading
	})
	if err != nil && !errors.Is(err, errStopReading) {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Sprintf("external program, %s declared (no train cases yet to run it on)", plural(len(ch.Steps()), "step")), nil
		}
		return "", err
	}
	if first == nil {
		return fmt.Sprintf("external program, %s declared (no train cases yet to run it on)", plural(len(ch.Steps()), "step")), nil
	}
	tr := ch.Run(context.Background(), *first, standInModels{})
	if tr.Cause != "" {
		return "", fmt.Errorf("the program failed on train case %s: %s", first.CaseID, tr.Error)
	}
	if tr.Error != "" {
		// Within the protocol: a case the variant fails (a stand-in answer
		// may not parse) is scored, not a broken program.
		return fmt.Sprintf("external program answered train case %s within the protocol, reporting %q (stand-in model, no call made)", first.CaseID, tr.Error), nil
	}
	return fmt.Sprintf("external program answered train case %s with %s (stand-in model, no call made)", first.CaseID, plural(len(tr.Steps), "step")), nil
}

// standInModels answers every model call of the doctor's trial run with a
// fixed text, so the protocol is checked without spending anything.
type standInModels struct{}

func (standInModels) Client(string) (provider.Client, string, error) {
	return provider.ClientFunc(func(context.Context, provider.Request) (provider.Response, error) {
		return provider.Response{Content: "stand-in answer", FinishReason: "stop"}, nil
	}), "stand-in", nil
}

func checkSealed(_ context.Context, st *doctorState) (string, error) {
	if st.tenant == nil {
		return "the tenant did not load", errSkipped
	}
	store, err := openStore(st.env, st.homeFlag)
	if err != nil {
		return "", err
	}
	st.store = store
	m, err := store.Manifest(tenantName(st.tenant))
	if err != nil {
		return "", err
	}
	st.manifest = m
	if st.trainSHA != "" && m.TrainSHA256 != st.trainSHA {
		return "", fmt.Errorf("data/train.jsonl is not the train split sealed on %s (%d cases now, %d sealed): seal again with the same source to restore it",
			m.CreatedAt.Format("2006-01-02"), st.trainCases, m.Counts.Train)
	}
	return fmt.Sprintf("sealed %s in %s: train %d, validation %d, test %d; contamination check: %s",
		m.CreatedAt.Format("2006-01-02 15:04 MST"), store.Home(), m.Counts.Train, m.Counts.Validation, m.Counts.Test, duplicatesLine(m.Duplicates)), nil
}

// checkPins reports a change of the frozen files with the message the
// server refuses operations with.
func checkPins(_ context.Context, st *doctorState) (string, error) {
	if st.manifest == nil {
		return "the tenant is not sealed", errSkipped
	}
	fz, err := tenant.ReadFrozen(st.tenant.Dir, st.manifest.PinnedPaths())
	if err != nil {
		return "", err
	}
	name := st.manifest.Tenant
	if perr := fz.Verify(st.manifest, func() ([]byte, error) { return st.store.PinnedFile(name, tenant.ConfigFile) }); perr != nil {
		return "", perr
	}
	return fmt.Sprintf("%d frozen files match the ones pinned %s", len(st.manifest.Pinned), st.manifest.PinnedAt.Format("2006-01-02 15:04 MST")), nil
}

func checkLeaks(ctx context.Context, st *doctorState) (string, error) {
	if st.manifest == nil {
		return "the tenant is not sealed", errSkipped
	}
	fp, err := st.store.Fingerprints(ctx, st.manifest.Tenant)
	if err != nil {
		return "", err
	}
	leaks, err := dataset.ScanWorkspace(ctx, st.workspace, fp)
	if err != nil {
		return "", err
	}
	if len(leaks) == 0 {
		return fmt.Sprintf("no held-out content in %s (%d held-out cases checked)", st.workspace, fp.Cases()), nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "held-out cases found in %s under %s; the agent can read them: delete them or move them out of the workspace", plural(len(leaks), "file"), st.workspace)
	for _, l := range leaks {
		fmt.Fprintf(&b, "\n         %s: %s", l.Path, plural(l.Cases, "held-out case"))
	}
	return "", errors.New(b.String())
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
