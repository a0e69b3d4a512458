package runbench

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/scoring"
	"github.com/fapo-dev/fapo/engine/statedb"
)

// The acceptance figures of the engine issue:
//
//	go test ./engine/run/runbench -run '^$' -bench . -benchtime 1x
const (
	benchCases       = 2000
	benchSteps       = 3
	benchLatency     = 30 * time.Millisecond
	benchConcurrency = 32
	rssCases         = 100_000
)

// chainFiles is a three-step llm chain, each step reading the previous
// step's output, so a change to the first step would invalidate everything
// after it and a change to the last step only that step. lastPrompt is the
// last step's template, the one a variant changes.
func chainFiles(lastPrompt string) map[string]string {
	return map[string]string{
		"chain.toml": `
output = "answer"

[[steps]]
id = "extract"
kind = "llm"
prompt = "prompts/extract.md"
[steps.params]
temperature = 0.0
max_tokens = 64

[[steps]]
id = "reason"
kind = "llm"
prompt = "prompts/reason.md"
[steps.params]
temperature = 0.0
max_tokens = 64

[[steps]]
id = "answer"
kind = "llm"
prompt = "prompts/answer.md"
[steps.params]
temperature = 0.0
max_tokens = 16
`,
		"prompts/extract.md": "Extract the entities of this question.\nQuestion: {{.context.question}}",
		"prompts/reason.md":  "Reason about the entities, then state the answer.\nEntities: {{.steps.extract.output}}",
		"prompts/answer.md":  lastPrompt,
	}
}

const (
	baselineLast = "Give only the final answer.\n{{.steps.reason.output}}"
	variantLast  = "Give only the final answer, in at most three words.\n{{.steps.reason.output}}"
)

func loadChain(b *testing.B, lastPrompt string) *chain.Chain {
	b.Helper()
	return writeChain(b, b.TempDir(), chainFiles(lastPrompt))
}

// writeChain writes files (path → text) into dir and loads the chain there.
func writeChain(tb testing.TB, dir string, files map[string]string) *chain.Chain {
	tb.Helper()
	for p, text := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(text), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	ch, err := chain.Load(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return ch
}

// oneModel is a tenant with a single [model] block.
type oneModel struct{ c provider.Client }

func (m oneModel) Client(string) (provider.Client, string, error) { return m.c, "bench-model", nil }

func synthCase(i int) dataset.Case {
	return dataset.Case{CaseID: fmt.Sprintf("case-%06d", i), TaskType: "qa",
		Context:  map[string]any{"question": fmt.Sprintf("Which city hosts landmark number %d?", i)},
		Expected: map[string]any{"answer": fmt.Sprintf("city %d", i)}}
}

// synthSource streams n synthetic cases without holding them.
func synthSource(n int) run.Source {
	return func(ctx context.Context, fn func(dataset.Case) error) error {
		for i := range n {
			if err := fn(synthCase(i)); err != nil {
				return err
			}
		}
		return nil
	}
}

func exactMatch(b testing.TB) scoring.Scorer {
	sc, err := scoring.New(scoring.Spec{Kind: "exact_match"}, scoring.Env{})
	if err != nil {
		b.Fatal(err)
	}
	return sc
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkEval2000x3 runs 2,000 cases through a three-step llm chain
// against the test double answering in 30 ms, 32 cases in flight, through
// the full provider stack with the response cache (sealed entries in the
// SQLite state database, grouped commits), as fapo eval does. Then it runs
// a variant that changes only the last step's prompt, with the same cache.
//
// Reported: wall/ideal of the full run (ideal = cases × steps × latency ÷
// concurrency; target ≤ 1.10); cpu-us/call, the process CPU time of the
// full run divided by its model calls (the test double serves in-process,
// so its HTTP and JSON work is included: an upper bound on the engine's;
// target ≤ 150 µs); variant-calls/full-calls (calls that reached the model;
// target ≤ 1/3), variant-wall/full-wall, and commits/call, the cache's
// durable commits over both runs divided by the calls that stored an entry
// (target ≤ 1/50).
func BenchmarkEval2000x3(b *testing.B) {
	for b.Loop() {
		fake := fakellm.New(fakellm.WithLatency(benchLatency))
		db, err := statedb.Open(filepath.Join(b.TempDir(), "home"))
		if err != nil {
			b.Fatal(err)
		}
		key := make([]byte, 32)
		_, _ = rand.Read(key)
		cache, err := provider.OpenCache(db, "bench", key)
		if err != nil {
			b.Fatal(err)
		}
		client, err := provider.Stack(provider.Spec{Provider: "openai_compatible", Name: "bench-model", BaseURL: fake.URL(),
			TimeoutSeconds: 30, MaxRetries: 2}, provider.StackOptions{Cache: cache})
		if err != nil {
			b.Fatal(err)
		}
		store := run.NewStore(b.TempDir(), false)
		evaluate := func(variant, lastPrompt string) (time.Duration, time.Duration, int, *run.Summary) {
			r := &run.Runner{Store: store, Pipeline: loadChain(b, lastPrompt), Models: oneModel{client}, Scorer: exactMatch(b)}
			calls0, cpu0, wall0 := fake.Count(), cpuTime(), time.Now()
			// A train run, as loop marks it: its entries are hits for the variant.
			ctx := provider.WithScope(context.Background(), provider.ScopeTrain)
			sum, err := r.Execute(ctx, synthSource(benchCases), run.Options{Tenant: "bench", Variant: variant,
				Split: dataset.Train, Concurrency: benchConcurrency, Total: benchCases})
			wall, cpu := time.Since(wall0), cpuTime()-cpu0
			if err != nil {
				b.Fatal(err)
			}
			if sum.Cases != benchCases || sum.ExecErrors != 0 {
				b.Fatalf("%s: %d cases, %d execution errors", variant, sum.Cases, sum.ExecErrors)
			}
			return wall, cpu, fake.Count() - calls0, sum
		}
		fullWall, fullCPU, fullCalls, _ := evaluate("v0000", baselineLast)
		varWall, _, varCalls, varSum := evaluate("v0001", variantLast)
		if err := cache.Close(); err != nil {
			b.Fatal(err)
		}
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
		fake.Close()
		stats := cache.Stats()
		if stats.WriteErrors != 0 {
			b.Fatalf("%d responses not stored", stats.WriteErrors)
		}

		ideal := time.Duration(benchCases*benchSteps) * benchLatency / benchConcurrency
		b.ReportMetric(fullWall.Seconds(), "full-wall-s")
		b.ReportMetric(ideal.Seconds(), "ideal-s")
		b.ReportMetric(float64(fullWall)/float64(ideal), "wall/ideal")
		b.ReportMetric(float64(fullCalls), "full-calls")
		b.ReportMetric(float64(fullCPU.Microseconds())/float64(fullCalls), "cpu-us/call")
		b.ReportMetric(float64(varCalls), "variant-calls")
		b.ReportMetric(float64(varCalls)/float64(fullCalls), "variant-calls/full-calls")
		b.ReportMetric(float64(varSum.Usage.CacheHits), "variant-cache-hits")
		b.ReportMetric(varWall.Seconds(), "variant-wall-s")
		b.ReportMetric(float64(varWall)/float64(fullWall), "variant-wall/full-wall")
		// Every call that reached the model stored one entry; Close
		// committed the last group.
		b.ReportMetric(float64(stats.Commits), "cache-commits")
		b.ReportMetric(float64(stats.Commits)/float64(fullCalls+varCalls), "commits/call")
	}
}

// BenchmarkPeakRSS100k runs a 100,000-case JSONL dataset through the runner
// and the same three-step chain with a model that answers instantly, in a
// child process so that the peak resident set (the kernel's high-water
// mark, VmHWM) is the run's alone. Target ≤ 200 MB. It also reports the
// child's CPU per model call: the engine alone (chain, runner, scoring, case
// log), no HTTP.
func BenchmarkPeakRSS100k(b *testing.B) {
	data := filepath.Join(b.TempDir(), "cases.jsonl")
	writeDataset(b, data, rssCases)
	for b.Loop() {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPeakRSSChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "FAPO_RUNBENCH_CHILD_DATA="+data, "FAPO_RUNBENCH_CHILD_RUNS="+b.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("child: %v\n%s", err, out)
		}
		var res childResult
		for _, line := range strings.Split(string(out), "\n") {
			if rest, ok := strings.CutPrefix(line, "RESULT "); ok {
				if err := json.Unmarshal([]byte(rest), &res); err != nil {
					b.Fatal(err)
				}
			}
		}
		if res.Cases != rssCases {
			b.Fatalf("child ran %d cases, want %d:\n%s", res.Cases, rssCases, out)
		}
		b.ReportMetric(float64(res.PeakRSSKiB)/1024, "peak-rss-MB")
		b.ReportMetric(res.WallSeconds, "wall-s")
		b.ReportMetric(res.CPUMicros/float64(res.Calls), "engine-cpu-us/call")
	}
}

type childResult struct {
	Cases       int     `json:"cases"`
	Calls       int     `json:"calls"`
	WallSeconds float64 `json:"wall_s"`
	CPUMicros   float64 `json:"cpu_us"`
	PeakRSSKiB  int64   `json:"peak_rss_kib"`
}

// peakRSS is this process's resident high-water mark in KiB, VmHWM of
// /proc/self/status. Not the rusage maxrss the parent sees: Linux carries
// into a child's maxrss the high-water mark of the address space it was
// forked from, so after the other benchmark it reported the parent's RSS.
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
				var kib int64
				if _, err := fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kib); err == nil {
					return kib
				}
			}
		}
	}
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Maxrss
}

func writeDataset(b *testing.B, path string, n int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	enc := json.NewEncoder(w)
	for i := range n {
		if err := enc.Encode(synthCase(i)); err != nil {
			b.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}

// TestPeakRSSChild is the child process of BenchmarkPeakRSS100k; it does
// nothing unless started by it.
func TestPeakRSSChild(t *testing.T) {
	data := os.Getenv("FAPO_RUNBENCH_CHILD_DATA")
	if data == "" {
		t.Skip("run by BenchmarkPeakRSS100k only")
	}
	dir := filepath.Join(t.TempDir(), "chain")
	for p, text := range chainFiles(baselineLast) {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ch, err := chain.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	instant := provider.ClientFunc(func(_ context.Context, req provider.Request) (provider.Response, error) {
		return provider.Response{Content: "city 7", FinishReason: "stop", Usage: provider.Usage{PromptTokens: 30, CompletionTokens: 2}}, nil
	})
	r := &run.Runner{Store: run.NewStore(os.Getenv("FAPO_RUNBENCH_CHILD_RUNS"), false), Pipeline: ch, Models: oneModel{instant}, Scorer: exactMatch(t)}
	src := func(ctx context.Context, fn func(dataset.Case) error) error {
		return dataset.ReadFile(data, func(_ int, c dataset.Case) error { return fn(c) })
	}
	cpu0, wall0 := cpuTime(), time.Now()
	sum, err := r.Execute(context.Background(), src, run.Options{Tenant: "bench", Variant: "v0000", Split: dataset.Train,
		Concurrency: benchConcurrency, Total: rssCases})
	if err != nil {
		t.Fatal(err)
	}
	res := childResult{Cases: sum.Cases, Calls: sum.Usage.Calls, WallSeconds: time.Since(wall0).Seconds(),
		CPUMicros: float64((cpuTime() - cpu0).Microseconds()), PeakRSSKiB: peakRSS()}
	b, _ := json.Marshal(res)
	fmt.Println("RESULT " + string(b))
}
