//go:build unix

package pipeline_test

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/pipeline"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/scoring"
)

// echoModel answers in-process, so the built-in chain's figure is fapo's
// own work (render, trace, run log) and nothing else.
type echoModel struct{}

func (echoModel) Client(string) (provider.Client, string, error) {
	return provider.ClientFunc(func(_ context.Context, r provider.Request) (provider.Response, error) {
		return provider.Response{Content: r.Messages[len(r.Messages)-1].Content, FinishReason: "stop"}, nil
	}), "echo", nil
}

// selfCPU is the CPU time of this process alone: a child program's work
// is in RUSAGE_CHILDREN, not here, so the external figure is fapo's side.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

const benchCases = 2000

// BenchmarkFapoCPUPerCase compares fapo's own CPU per case on the same
// 2,000 cases: the built-in chain (one llm step, in-process model) against
// the external protocol (testdata/echo.py, which does no work; its CPU is
// the child's and not counted). Reported as cpu-us/case.
func BenchmarkFapoCPUPerCase(b *testing.B) {
	echo, err := filepath.Abs("testdata/echo.py")
	require.NoError(b, err)
	builtin, err := chain.LoadFiles(map[string][]byte{"chain.toml": []byte("[[steps]]\nid = \"answer\"\nkind = \"llm\"\nprompt = \"p.md\"\n"), "p.md": []byte("{{.context.q}}")})
	require.NoError(b, err)
	for _, tc := range []struct {
		name string
		ch   func(b *testing.B) *chain.Chain
	}{
		{"builtin", func(*testing.B) *chain.Chain { return builtin }},
		{"external", func(b *testing.B) *chain.Chain {
			p, err := pipeline.New(pipeline.Spec{Command: []string{"python3", echo}, Concurrency: 8, Switches: []string{"reflect"}}, pipeline.Options{Dir: b.TempDir()})
			require.NoError(b, err)
			b.Cleanup(func() { p.Close() })
			ch, err := chain.LoadFiles(map[string][]byte{"chain.toml": []byte(testChain), "prompts/answer.md": []byte("x")}, chain.External(p.ChainSpec()))
			require.NoError(b, err)
			return ch
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			ch := tc.ch(b)
			sc, err := scoring.New(scoring.Spec{Kind: "exact_match"}, scoring.Env{})
			require.NoError(b, err)
			src := func(ctx context.Context, fn func(dataset.Case) error) error {
				for i := range benchCases {
					q := fmt.Sprintf("question %d", i)
					if err := fn(dataset.Case{CaseID: fmt.Sprint(i), TaskType: "qa", Context: map[string]any{"q": q, "mode": "ok"}, Expected: map[string]any{"answer": q}}); err != nil {
						return err
					}
				}
				return nil
			}
			var cpu time.Duration
			for range b.N {
				r := &run.Runner{Store: run.NewStore(b.TempDir(), false), Pipeline: ch, Models: echoModel{}, Scorer: sc}
				start := selfCPU()
				sum, err := r.Execute(context.Background(), src, run.Options{Tenant: "t", Variant: "v0000", Split: dataset.Train, Concurrency: 8})
				cpu += selfCPU() - start
				require.NoError(b, err)
				require.Equal(b, benchCases, sum.Cases)
				require.Zero(b, sum.Errored)
			}
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*benchCases), "cpu-us/case")
		})
	}
}
