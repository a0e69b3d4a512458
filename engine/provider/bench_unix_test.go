//go:build unix

package provider

import (
	"context"
	"io"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/fapo-dev/fapo/engine/provider/fakellm"
)

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkStackCall measures a model call through the full Stack (timeout,
// retry, rate limit, sealed cache miss + grouped write, ledger) against fakellm over
// loopback HTTP. cpu-ns/call is the process CPU per call; it includes the
// fake server's share, so it is an upper bound on the engine's.
//
//	go test ./engine/provider -run '^$' -bench Stack -benchtime 2000x
func BenchmarkStackCall(b *testing.B) {
	fake := fakellm.New()
	defer fake.Close()
	cache := openTestCache(b)
	c, err := Stack(Spec{Provider: "openai_compatible", Name: "bench", BaseURL: fake.URL(), MaxRetries: 2,
		TimeoutSeconds: 10, RequestsPerMinute: 1 << 30, TokensPerMinute: 1 << 40},
		StackOptions{Cache: cache, Prices: map[string]Price{"bench": {InputPerMTok: 1, OutputPerMTok: 1}}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := trainCtx
	for _, conc := range []int{1, 32} {
		b.Run("concurrency="+strconv.Itoa(conc), func(b *testing.B) {
			b.SetParallelism(conc) // goroutines = conc × GOMAXPROCS, an upper bound
			cpu0, wall0 := cpuTime(), time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := benchSeq.Add(1)
					req := Request{Messages: []Message{
						{Role: "system", Content: "Answer from the paragraphs."},
						{Role: "user", Content: "question number " + strconv.FormatInt(n, 10) + " about a long paragraph of context"},
					}}
					if _, err := c.Complete(ctx, req); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/call")
			b.ReportMetric(float64(time.Since(wall0))/float64(b.N), "ns/call")
		})
	}
}

// BenchmarkFakeLLMBaseline is the floor under BenchmarkStackCall: the same
// requests as bare HTTP posts (no go-openai, no wrappers, no cache), so
// StackCall's cpu-ns/call minus this one is what the engine adds per call.
func BenchmarkFakeLLMBaseline(b *testing.B) {
	fake := fakellm.New()
	defer fake.Close()
	hc := defaultHTTP()
	url := fake.URL() + "/chat/completions"
	b.SetParallelism(32)
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := benchSeq.Add(1)
			body := `{"model":"bench","messages":[{"role":"system","content":"Answer from the paragraphs."},` +
				`{"role":"user","content":"question number ` + strconv.FormatInt(n, 10) + ` about a long paragraph of context"}]}`
			resp, err := hc.Post(url, "application/json", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
	})
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/call")
}

// BenchmarkWrappersCall isolates the wrappers' own cost: the same Stack
// layers around an in-memory model, so no HTTP and no fake server.
func BenchmarkWrappersCall(b *testing.B) {
	cache := openTestCache(b)
	raw := ClientFunc(func(ctx context.Context, req Request) (Response, error) {
		return Response{Content: "ok", FinishReason: "stop", Usage: Usage{PromptTokens: 20, CompletionTokens: 2}}, nil
	})
	ledger := NewLedger(nil)
	c := WithUsage(WithCache(WithRateLimit(WithRetry(WithTimeout(raw, 10*time.Second), RetryPolicy{MaxRetries: 2}),
		1<<30, 1<<40), cache, CacheNamespace{Provider: "bench"}, false), ledger, "bench")
	ctx := trainCtx
	b.SetParallelism(16)
	cpu0 := cpuTime()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := benchSeq.Add(1)
			req := Request{Model: "bench", Messages: []Message{{Role: "user", Content: "q " + strconv.FormatInt(n, 10)}}}
			if _, err := c.Complete(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/call")
}

// benchSeq makes every benchmark request unique across runs, so each call is
// a cache miss.
var benchSeq atomic.Int64
