package main

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/engine/run"
)

// opFixture is a sealed capitals workspace and the arguments that point the
// operator commands at it.
type opFixture struct {
	*looptest.Fixture
	env map[string]string
}

func newOpFixture(t *testing.T, edit func(string) string) opFixture {
	t.Helper()
	f := looptest.New(t, edit)
	return opFixture{Fixture: f, env: map[string]string{"FAPO_HOME": f.Home}}
}

// run runs fapo with --workspace appended after the subcommand's arguments.
func (f opFixture) run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return cliRun(t, f.env, append(args, "--workspace", f.Dir)...)
}

func (f opFixture) trainCases(t *testing.T) int {
	t.Helper()
	n := 0
	require.NoError(t, dataset.ReadFile(filepath.Join(f.TenantDir(), "data", "train.jsonl"), func(int, dataset.Case) error { n++; return nil }))
	return n
}

// runIDOf reads the run id from the summary table.
func runIDOf(t *testing.T, stdout string) string {
	t.Helper()
	for _, line := range strings.Split(stdout, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "run" {
			return f[1]
		}
	}
	t.Fatalf("no run id in output:\n%s", stdout)
	return ""
}

func readCaseLog(t *testing.T, dir string) []run.CaseResult {
	t.Helper()
	fh, err := os.Open(filepath.Join(dir, "cases.jsonl"))
	require.NoError(t, err)
	defer fh.Close()
	var out []run.CaseResult
	sc := bufio.NewScanner(fh)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var cr run.CaseResult
		require.NoError(t, json.Unmarshal(sc.Bytes(), &cr))
		out = append(out, cr)
	}
	require.NoError(t, sc.Err())
	return out
}

func TestEvalTrainPrintsSummaryAndWritesRun(t *testing.T) {
	f := newOpFixture(t, nil)
	n := f.trainCases(t)
	code, out, errOut := f.run(t, "eval", "--tenant", "tenants/capitals", "--split", "train")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "capitals", fieldOf(out, "tenant"))
	require.Equal(t, "v0000", fieldOf(out, "variant"))
	require.Equal(t, "train", fieldOf(out, "split"))
	require.Equal(t, itoa(n), fieldOf(out, "cases"))
	require.Equal(t, "0.00", fieldOf(out, "score mean"), "the baseline answers in sentences")
	require.Equal(t, "0.00", fieldOf(out, "  exact_match"))
	require.Regexp(t, `(?m)^\s+step\s+kind\s+runs\s+errors\s+skipped\s+calls\s+cache hits\s+prompt tok\s+compl tok\s+p50 ms\s+p95 ms$`, out)
	require.Regexp(t, `(?m)^\s+answer\s+llm\s+`+itoa(n)+`\s+0\s+0\s+`+itoa(n)+`\s+0\s`, out)
	require.Regexp(t, `(?m)^\s+gpt-4o-mini\s+`+itoa(n)+`\s+0\s`, out)
	id := runIDOf(t, out)
	dir := filepath.Join(f.TenantDir(), "runs", id)
	require.FileExists(t, filepath.Join(dir, "summary.json"))
	require.Len(t, readCaseLog(t, dir), n)
	require.Equal(t, n, f.LLM.Count(), "one model call per case")
	// Not a terminal: plain progress lines, the last at 100%.
	require.Contains(t, errOut, "capitals train: ")
	require.Contains(t, errOut, itoa(n)+"/"+itoa(n)+" cases (100%)")

	// The same variant again is answered from the response cache.
	code, out, errOut = f.run(t, "eval", "--tenant", "capitals", "--split", "train")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "("+itoa(n)+" cache hits)")
	require.Equal(t, n, f.LLM.Count())
	require.NotEqual(t, id, runIDOf(t, out), "run ids are never reused")
}

func TestEvalValidationForTheOperator(t *testing.T) {
	f := newOpFixture(t, nil)
	code, out, errOut := f.run(t, "eval", "--tenant", "capitals", "--split", "validation")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "validation", fieldOf(out, "split"))
	require.Contains(t, out, "sealed store")
	require.NoDirExists(t, filepath.Join(f.TenantDir(), "runs", runIDOf(t, out)), "held-out runs stay out of the workspace")
	require.Empty(t, f.LeakedMarkers(out+errOut), "the summary shows aggregates, never held-out content")
}

// TestEvalRepeats: an operator's evaluation of validation follows the
// tenant's [acceptance] repeats, as compare's does; train runs once; and
// --repeats N overrides either.
func TestEvalRepeats(t *testing.T) {
	f := newOpFixture(t, func(s string) string {
		return strings.Replace(s, "[acceptance]\n", "[acceptance]\nrepeats = 3\n", 1)
	})
	m, err := dataset.OpenStore(f.Home).Manifest("capitals")
	require.NoError(t, err)
	val, train := m.Counts.Of(dataset.Validation), f.trainCases(t)
	for _, tc := range []struct {
		name    string
		args    []string
		repeats int
		asked   int // new model requests
	}{
		{"validation follows tenant.toml", []string{"--split", "validation"}, 3, 3 * val},
		{"validation once when asked", []string{"--split", "validation", "--repeats", "1"}, 1, 0},
		{"train once", []string{"--split", "train"}, 1, train},
		{"train repeated when asked", []string{"--split", "train", "--repeats", "2"}, 2, train},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := f.LLM.Count()
			code, out, errOut := f.run(t, append([]string{"eval", "--tenant", "capitals"}, tc.args...)...)
			require.Equal(t, 0, code, errOut)
			n := val
			if tc.args[1] == "train" {
				n = train
			}
			require.Equal(t, itoa(tc.repeats*n), fieldOf(out, "cases"))
			if tc.repeats > 1 {
				require.Contains(t, out, "each case evaluated "+itoa(tc.repeats)+" times")
			} else {
				require.NotContains(t, out, "each case evaluated")
			}
			require.Equal(t, tc.asked, f.LLM.Count()-before, "each repeat its own request; the first repeat is the request of a run without repeats")
		})
	}
}

func TestEvalLimit(t *testing.T) {
	f := newOpFixture(t, nil)
	code, out, errOut := f.run(t, "eval", "--tenant", "capitals", "--split", "train", "--limit", "5")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "5", fieldOf(out, "cases"))
	require.Equal(t, 5, f.LLM.Count())
	require.Contains(t, errOut, "5/5 cases (100%)")
}

func TestEvalErrors(t *testing.T) {
	f := newOpFixture(t, nil)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"test split", []string{"--tenant", "capitals", "--split", "test"}, 2, "fapo final"},
		{"no split", []string{"--tenant", "capitals"}, 2, "--split is required"},
		{"bad split", []string{"--tenant", "capitals", "--split", "dev"}, 2, `--split "dev": use train or validation`},
		{"no tenant", []string{"--split", "train"}, 2, "--tenant is required"},
		{"tenant outside", []string{"--tenant", "../x", "--split", "train"}, 2, "not a tenant of workspace"},
		{"unknown tenant", []string{"--tenant", "nosuch", "--split", "train"}, 1, `tenant "nosuch" does not exist`},
		{"negative limit", []string{"--tenant", "capitals", "--split", "train", "--limit", "-1"}, 2, "--limit -1"},
		{"negative repeats", []string{"--tenant", "capitals", "--split", "validation", "--repeats", "-2"}, 2, "--repeats -2: evaluate each case at least once"},
		{"bad resume id", []string{"--tenant", "capitals", "--split", "train", "--resume", "../../etc"}, 2, "is not a run id"},
		{"unknown resume", []string{"--tenant", "capitals", "--split", "train", "--resume", "r20200101T000000Z-abcdef"}, 1, "cannot resume run r20200101T000000Z-abcdef"},
		{"unknown variant", []string{"--tenant", "capitals", "--split", "train", "--variant", "v0042"}, 1, "v0042"},
		{"positional", []string{"capitals", "--split", "train"}, 2, "name the tenant with --tenant"},
		{"unknown flag", []string{"--tenant", "capitals", "--split", "train", "--fast"}, 2, "flag provided but not defined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := cliRun(t, f.env, append([]string{"eval", "--workspace", f.Dir}, tc.args...)...)
			require.Equal(t, tc.code, code, errOut)
			require.Contains(t, errOut, tc.want)
		})
	}
	require.Zero(t, f.LLM.Count(), "no refused evaluation calls the model")
}

func TestEvalNoSealedStore(t *testing.T) {
	f := newOpFixture(t, nil)
	home := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(home, nil, 0o600))
	code, _, errOut := f.run(t, "eval", "--tenant", "capitals", "--split", "train", "--home", home)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "is a file, not a directory")
}

func TestEvalHelp(t *testing.T) {
	code, out, _ := cliRun(t, nil, "eval", "--help")
	require.Equal(t, 0, code)
	require.Contains(t, out, "Usage: fapo eval --tenant NAME --split train|validation")
	require.Contains(t, out, "-resume")
	require.Contains(t, out, "fapo final")
	require.Contains(t, out, "[--repeats N]")
	require.Contains(t, out, "as many\ntimes as [acceptance] repeats in tenant.toml says")
}

// TestEvalResumeRepeatsNoCase interrupts a run after a few cases (through the
// loop, whose progress callback can cancel), then finishes it with
// fapo eval --resume: every case is in the log exactly once, and no case was
// run twice, not even as a cache hit.
func TestEvalResumeRepeatsNoCase(t *testing.T) {
	f := newOpFixture(t, func(s string) string { return strings.Replace(s, "concurrency = 8", "concurrency = 1", 1) })
	n := f.trainCases(t)
	w, err := loop.Open(f.Dir, loop.Options{Home: f.Home})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var runID string
	_, err = w.EvaluateForOperator(ctx, loop.RunRequest{Tenant: "capitals", Split: dataset.Train, Progress: func(p run.Progress) {
		runID = p.RunID
		if p.Done == 5 {
			cancel()
		}
	}})
	require.ErrorContains(t, err, "run "+runID+" interrupted after")
	require.NoError(t, w.Close())
	dir := filepath.Join(f.TenantDir(), "runs", runID)
	require.Len(t, readCaseLog(t, dir), 5)
	calls := f.LLM.Count()

	code, out, errOut := f.run(t, "eval", "--tenant", "capitals", "--split", "train", "--resume", runID)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, runID, runIDOf(t, out))
	require.Contains(t, out, "resumed")
	require.Equal(t, itoa(n), fieldOf(out, "cases"))
	require.Contains(t, out, "(0 cache hits)", "a repeated case would have been a cache hit")
	require.Equal(t, n-5, f.LLM.Count()-calls)
	seen := map[string]bool{}
	for _, cr := range readCaseLog(t, dir) {
		require.False(t, seen[cr.CaseID], "case %s ran twice", cr.CaseID)
		seen[cr.CaseID] = true
	}
	require.Len(t, seen, n)
}

// TestEvalInterruptedNamesTheResumeCommand cancels the CLI's own context
// mid-run, as Ctrl-C does.
func TestEvalInterruptedNamesTheResumeCommand(t *testing.T) {
	f := newOpFixture(t, func(s string) string { return strings.Replace(s, "concurrency = 8", "concurrency = 1", 1) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for f.LLM.Count() < 3 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	var out, errb strings.Builder
	code := runCLI(ctx, &cliEnv{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return f.env[k] }},
		[]string{"eval", "--tenant", "capitals", "--split", "train", "--limit", "40", "--workspace", f.Dir})
	if code == 0 {
		t.Skip("the run finished before the cancellation landed; nothing to check")
	}
	require.Equal(t, 1, code)
	require.Contains(t, errb.String(), "interrupted after")
	require.Contains(t, errb.String(), "to continue: fapo eval --tenant capitals --split train --limit 40 --workspace "+f.Dir+" --resume r")
}

func TestProgressReporterPlainLines(t *testing.T) {
	var b strings.Builder
	p := newProgressReporter(&b, "t train")
	for i := 1; i <= 100; i++ {
		p.update(run.Progress{RunID: "r1", Done: i, Total: 100, ScoreMean: 50})
	}
	p.update(run.Progress{RunID: "r1", Done: 50, Total: 100}) // late, out of order: ignored
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	require.Len(t, lines, 21, "the first case, then one line per 5%")
	require.Equal(t, "t train: 100/100 cases (100%), 0 failed, 0 errored, mean 50.00 (run r1)", lines[20])
	require.Equal(t, "r1", p.runID())

	// Unknown total: a line every 10 seconds.
	b.Reset()
	now := time.Unix(0, 0)
	p = newProgressReporter(&b, "u")
	p.now = func() time.Time { return now }
	p.lastLine = now
	for i := 1; i <= 30; i++ {
		now = now.Add(time.Second)
		p.update(run.Progress{RunID: "r2", Done: i})
	}
	require.Equal(t, 3, strings.Count(b.String(), "\n"))
	require.Contains(t, b.String(), "u: 10 cases, 0 failed")
}

func itoa(n int) string { return strconv.Itoa(n) }

// fieldOf returns the value of a key in the run summary table.
func fieldOf(out, key string) string {
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(key) + `  +(.*)$`).FindStringSubmatch(out)
	if m == nil {
		return "(no " + key + " in output)"
	}
	return strings.TrimSpace(m[1])
}

// TestEvalValidationBatched: with [model] batch = true, fapo eval sends a
// validation run through the batch API (here the test double's), says on
// stderr that it waits for the batch, and prints the scores of the same
// run made call by call.
func TestEvalValidationBatched(t *testing.T) {
	batched := looptest.New(t, func(s string) string {
		return strings.Replace(s, "[model]\n", "[model]\nbatch = true\n", 1)
	}, fakellm.WithBatchPolls(2))
	live := newOpFixture(t, nil)
	runIt := func(f *looptest.Fixture) (string, string) {
		code, out, errOut := cliRun(t, map[string]string{"FAPO_HOME": f.Home}, "eval", "--tenant", "capitals",
			"--split", "validation", "--workspace", f.Dir)
		require.Equal(t, 0, code, errOut)
		return out, errOut
	}
	out, errOut := runIt(batched)
	require.Zero(t, batched.LLM.Count(), "no live call")
	require.Equal(t, 1, batched.LLM.Batches())
	require.Contains(t, errOut, "waiting for batch batch-"+fakellm.Fingerprint)
	require.NotContains(t, errOut, "requests answered", "a held-out batch's request counts follow its content")
	liveOut, _ := runIt(live.Fixture)
	require.Positive(t, live.LLM.Count())
	for _, field := range []string{"cases", "scored", "score mean", "  exact_match"} {
		require.Equal(t, fieldOf(liveOut, field), fieldOf(out, field), field)
	}
}
