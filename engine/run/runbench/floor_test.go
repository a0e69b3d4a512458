package runbench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/statedb"
)

// The benchmarks of this file compare fapo with its FLOOR: a minimal Go
// client (net/http, encoding/json, a fixed pool of goroutines) making the
// same calls at the same concurrency against the same test double, in the
// same benchmark run. Every side runs in a process of its own, the test
// double in a third, so that each one's CPU time (getrusage of the
// process) and peak resident set (VmHWM) are its own:
//
//	go test ./engine/run/runbench -run '^$' -bench Floor -benchtime 1x
//
// fapo's side is `fapo eval` minus flag parsing: the runner, a one-step
// llm chain, the exact-match scorer, the case log and summary, and the
// full provider stack (timeout, answer check, retries, the sealed response
// cache in the SQLite state database with grouped commits, usage).

// oneStepPrompt is the one-step chain's template; the floor sends the same
// rendered text.
const oneStepPrompt = "Answer the question in a few words.\nQuestion: {{.context.question}}"

func oneStepFiles() map[string]string {
	return map[string]string{
		"chain.toml": `
output = "answer"

[[steps]]
id = "answer"
kind = "llm"
prompt = "prompts/answer.md"
[steps.params]
temperature = 0.0
max_tokens = 16
`,
		"prompts/answer.md": oneStepPrompt,
	}
}

func floorPrompt(c dataset.Case) string {
	return "Answer the question in a few words.\nQuestion: " + c.Context["question"].(string)
}

// sideResult is what a child process measured of itself.
type sideResult struct {
	Cases      int     `json:"cases"`
	Calls      int     `json:"calls"`
	Errors     int     `json:"errors"`
	WallS      float64 `json:"wall_s"`
	CPUMicros  float64 `json:"cpu_us"`
	PeakRSSKiB int64   `json:"peak_rss_kib"`
	Commits    int64   `json:"commits"`
}

func (r sideResult) cpuPerCall() float64 { return r.CPUMicros / float64(max(r.Calls, 1)) }

// fakeServer is the test double in a child process of its own.
type fakeServer struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	url   string
}

func startFakeServer(b *testing.B, latency time.Duration) *fakeServer {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFakeServerChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "FAPO_RUNBENCH_SERVER_LATENCY="+latency.String())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "URL "); ok {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return &fakeServer{cmd: cmd, stdin: stdin, url: rest}
		}
	}
	_ = cmd.Process.Kill()
	b.Fatal("the test double's process printed no URL")
	return nil
}

func (f *fakeServer) close() {
	_ = f.stdin.Close() // the child exits when its stdin closes
	_ = f.cmd.Wait()
}

// TestFakeServerChild is the test double's process of the floor
// benchmarks; it does nothing unless started by them.
func TestFakeServerChild(t *testing.T) {
	lat := os.Getenv("FAPO_RUNBENCH_SERVER_LATENCY")
	if lat == "" {
		t.Skip("run by the floor benchmarks only")
	}
	d, err := time.ParseDuration(lat)
	if err != nil {
		t.Fatal(err)
	}
	fake := fakellm.New(fakellm.WithLatency(d), fakellm.WithoutRecording(),
		fakellm.WithDefault(func(fakellm.Request) fakellm.Reply { return fakellm.Reply{Content: "city 7"} }))
	fmt.Println("URL " + fake.URL())
	_, _ = io.Copy(io.Discard, os.Stdin)
	fake.Close()
}

// runSide runs one side ("fapo" or "floor") in a child process.
func runSide(b *testing.B, side, url string, cases, concurrency int) sideResult {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSideChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "FAPO_RUNBENCH_SIDE="+side, "FAPO_RUNBENCH_URL="+url,
		"FAPO_RUNBENCH_CASES="+strconv.Itoa(cases), "FAPO_RUNBENCH_CONCURRENCY="+strconv.Itoa(concurrency),
		"FAPO_RUNBENCH_DIR="+b.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("%s child: %v\n%s", side, err, out)
	}
	var res sideResult
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "RESULT "); ok {
			if err := json.Unmarshal([]byte(rest), &res); err != nil {
				b.Fatal(err)
			}
		}
	}
	if res.Cases != cases || res.Errors != 0 {
		b.Fatalf("%s child: %d cases (%d errors), want %d:\n%s", side, res.Cases, res.Errors, cases, out)
	}
	return res
}

// TestSideChild is one side of a floor benchmark; it does nothing unless
// started by one.
func TestSideChild(t *testing.T) {
	side := os.Getenv("FAPO_RUNBENCH_SIDE")
	if side == "" {
		t.Skip("run by the floor benchmarks only")
	}
	url := os.Getenv("FAPO_RUNBENCH_URL")
	cases, _ := strconv.Atoi(os.Getenv("FAPO_RUNBENCH_CASES"))
	conc, _ := strconv.Atoi(os.Getenv("FAPO_RUNBENCH_CONCURRENCY"))
	dir := os.Getenv("FAPO_RUNBENCH_DIR")
	// FAPO_RUNBENCH_CPUPROFILE profiles a side (FAPO_RUNBENCH_PROFILE_SIDE,
	// fapo unless set), to see where its CPU goes.
	if path := os.Getenv("FAPO_RUNBENCH_CPUPROFILE"); path != "" && side == cmp.Or(os.Getenv("FAPO_RUNBENCH_PROFILE_SIDE"), "fapo") {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	if path := os.Getenv("FAPO_RUNBENCH_MEMPROFILE"); path != "" && side == "fapo" {
		runtime.MemProfileRate = 4096
		defer func() {
			f, err := os.Create(path)
			if err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				_ = f.Close()
			}
		}()
	}
	var res sideResult
	switch side {
	case "fapo":
		res = fapoSide(t, url, dir, cases, conc)
	case "floor":
		res = floorSide(t, url, cases, conc)
	default:
		t.Fatalf("unknown side %q", side)
	}
	res.PeakRSSKiB = peakRSS()
	out, _ := json.Marshal(res)
	fmt.Println("RESULT " + string(out))
}

func fapoSide(t *testing.T, url, dir string, cases, conc int) sideResult {
	ch := writeChain(t, filepath.Join(dir, "chain"), oneStepFiles())
	run.SetGCPercent(os.Getenv) // as cmd/fapo's main does
	cpu0, wall0 := cpuTime(), time.Now()
	db, err := statedb.Open(filepath.Join(dir, "home"))
	if err != nil {
		t.Fatal(err)
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	cache, err := provider.OpenCache(db, "bench", key)
	if err != nil {
		t.Fatal(err)
	}
	client, err := provider.Stack(provider.Spec{Provider: "openai_compatible", Name: "bench-model", BaseURL: url,
		TimeoutSeconds: 30, MaxRetries: 2}, provider.StackOptions{Cache: cache})
	if err != nil {
		t.Fatal(err)
	}
	r := &run.Runner{Store: run.NewStore(filepath.Join(dir, "runs"), false), Pipeline: ch, Models: oneModel{client}, Scorer: exactMatch(t)}
	ctx := provider.WithScope(context.Background(), provider.ScopeTrain)
	sum, err := r.Execute(ctx, synthSource(cases), run.Options{Tenant: "bench", Variant: "v0000", Split: dataset.Train,
		Concurrency: conc, Total: cases})
	if err != nil {
		t.Fatal(err)
	}
	if err := cache.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return sideResult{Cases: sum.Cases, Calls: sum.Usage.Calls - sum.Usage.CacheHits, Errors: sum.Errored + sum.ExecErrors,
		WallS: time.Since(wall0).Seconds(), CPUMicros: float64((cpuTime() - cpu0).Microseconds()), Commits: cache.Stats().Commits}
}

// floorSide is the floor: what any client must do to make these calls.
func floorSide(t *testing.T, url string, cases, conc int) sideResult {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 256, 128
	hc := &http.Client{Transport: tr}
	type msg struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	type request struct {
		Model       string  `json:"model"`
		Messages    []msg   `json:"messages"`
		MaxTokens   int     `json:"max_tokens"`
		Temperature float32 `json:"temperature"`
	}
	type response struct {
		Choices []struct {
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
		} `json:"choices"`
	}
	cpu0, wall0 := cpuTime(), time.Now()
	next := make(chan int)
	var mu sync.Mutex
	done, errs := 0, 0
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				body, _ := json.Marshal(request{Model: "bench-model", MaxTokens: 16, Temperature: math.SmallestNonzeroFloat32,
					Messages: []msg{{Role: "user", Content: floorPrompt(synthCase(i))}}})
				ok := false
				resp, err := hc.Post(url+"/chat/completions", "application/json", bytes.NewReader(body))
				if err == nil {
					var out response
					ok = json.NewDecoder(resp.Body).Decode(&out) == nil && resp.StatusCode == 200 && len(out.Choices) == 1
					_ = resp.Body.Close()
				}
				mu.Lock()
				done++
				if !ok {
					errs++
				}
				mu.Unlock()
			}
		}()
	}
	for i := range cases {
		next <- i
	}
	close(next)
	wg.Wait()
	return sideResult{Cases: done, Calls: done, Errors: errs, WallS: time.Since(wall0).Seconds(),
		CPUMicros: float64((cpuTime() - cpu0).Microseconds())}
}

// pairs is how many times each floor benchmark runs fapo and the floor,
// one after the other: this machine's speed drifts by tens of percent
// within minutes, so single runs would compare a fast minute with a slow
// one. Each figure reported is the median over the pairs, and the ratios
// are medians of each pair's own ratio.
const pairs = 3

// sidePairs runs fapo then the floor, pairs times, against srv.
func sidePairs(b *testing.B, srv *fakeServer, cases, concurrency int) (fapo, floor []sideResult) {
	for range pairs {
		fapo = append(fapo, runSide(b, "fapo", srv.url, cases, concurrency))
		floor = append(floor, runSide(b, "floor", srv.url, cases, concurrency))
	}
	return fapo, floor
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// medianOf is the median of f over rs.
func medianOf(rs []sideResult, f func(sideResult) float64) float64 {
	xs := make([]float64, len(rs))
	for i, r := range rs {
		xs[i] = f(r)
	}
	return median(xs)
}

// ratioOf is the median over pairs of f(fapo) / f(floor).
func ratioOf(fapo, floor []sideResult, f func(sideResult) float64) float64 {
	xs := make([]float64, len(fapo))
	for i := range fapo {
		xs[i] = f(fapo[i]) / f(floor[i])
	}
	return median(xs)
}

func wallOf(r sideResult) float64 { return r.WallS }
func rssMB(r sideResult) float64  { return float64(r.PeakRSSKiB) / 1024 }

// reportSides reports both sides' figures under a common prefix.
func reportSides(b *testing.B, prefix string, fapo, floor []sideResult) {
	b.ReportMetric(medianOf(fapo, sideResult.cpuPerCall), prefix+"cpu-us/call")
	b.ReportMetric(medianOf(floor, sideResult.cpuPerCall), prefix+"floor-cpu-us/call")
	b.ReportMetric(ratioOf(fapo, floor, sideResult.cpuPerCall), prefix+"cpu/floor")
	b.ReportMetric(medianOf(fapo, wallOf), prefix+"wall-s")
	b.ReportMetric(medianOf(floor, wallOf), prefix+"floor-wall-s")
	b.ReportMetric(ratioOf(fapo, floor, wallOf), prefix+"wall/floor")
	b.ReportMetric(medianOf(fapo, rssMB), prefix+"peak-rss-MB")
	b.ReportMetric(medianOf(floor, rssMB), prefix+"floor-peak-rss-MB")
}

// BenchmarkFloor2000x1 is 2,000 cases × one llm step, the test double
// answering in 30 ms, 32 cases in flight. Targets: cpu-us/call ≤ 120 (the
// whole fapo process's CPU over its model calls) and commits/call ≤ 1/50
// (the response cache's durable commits, counted by the cache).
func BenchmarkFloor2000x1(b *testing.B) {
	for b.Loop() {
		srv := startFakeServer(b, 30*time.Millisecond)
		fapo, floor := sidePairs(b, srv, 2000, 32)
		srv.close()
		reportSides(b, "", fapo, floor)
		b.ReportMetric(medianOf(fapo, func(r sideResult) float64 { return float64(r.Commits) }), "cache-commits")
		b.ReportMetric(medianOf(fapo, func(r sideResult) float64 { return float64(r.Commits) / float64(r.Calls) }), "commits/call")
	}
}

// BenchmarkFloor50k is 50,000 cases × one llm step at 1 ms latency, 64 in
// flight, where CPU rather than the model sets the wall. Target:
// wall/floor ≤ 1.6.
func BenchmarkFloor50k(b *testing.B) {
	for b.Loop() {
		srv := startFakeServer(b, time.Millisecond)
		fapo, floor := sidePairs(b, srv, 50_000, 64)
		srv.close()
		reportSides(b, "", fapo, floor)
	}
}

// BenchmarkFloorScale runs 10,000 and 100,000 cases (one step, 1 ms, 64 in
// flight). Targets: CPU per call flat (cpu-100k/cpu-10k near 1) and peak
// RSS ≤ 100 MB at 100,000 cases.
func BenchmarkFloorScale(b *testing.B) {
	for b.Loop() {
		srv := startFakeServer(b, time.Millisecond)
		small := runSide(b, "fapo", srv.url, 10_000, 64)
		large := runSide(b, "fapo", srv.url, 100_000, 64)
		floor := runSide(b, "floor", srv.url, 100_000, 64)
		srv.close()
		b.ReportMetric(small.cpuPerCall(), "10k-cpu-us/call")
		b.ReportMetric(float64(small.PeakRSSKiB)/1024, "10k-peak-rss-MB")
		reportSides(b, "100k-", []sideResult{large}, []sideResult{floor})
		b.ReportMetric(large.cpuPerCall()/small.cpuPerCall(), "cpu-100k/cpu-10k")
	}
}
