package chain

import (
	"context"
	"github.com/fapo-dev/fapo/engine/dataset/datasettest"
	"testing"

	"github.com/fapo-dev/fapo/engine/provider"
)

// BenchmarkRunThreeSteps measures the executor's own cost per case (template
// rendering, per-case BM25, parsing, tracing) with a model that answers
// instantly: the overhead every model call of an evaluation pays on top of
// the model's latency.
func BenchmarkRunThreeSteps(b *testing.B) {
	c, err := Load(writeDir(b, threeStepFiles()))
	if err != nil {
		b.Fatal(err)
	}
	instant := provider.ClientFunc(func(context.Context, provider.Request) (provider.Response, error) {
		return provider.Response{Content: "Answer: Austin", FinishReason: "stop"}, nil
	})
	m := models{"": instant}
	cs := hotpotCase()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if tr := c.Run(ctx, cs, m); tr.Error != "" {
			b.Fatal(tr.Error)
		}
	}
}

// BenchmarkRunHotpotQA is the same on real HotpotQA cases (ten paragraphs
// each) with two llm steps.
func BenchmarkRunHotpotQA(b *testing.B) {
	cases := readCases(b, datasettest.SharedFile(b, "hotpotqa.jsonl"), 20)
	c, err := Load(hotpotChainDir(b))
	if err != nil {
		b.Fatal(err)
	}
	instant := provider.ClientFunc(func(context.Context, provider.Request) (provider.Response, error) {
		return provider.Response{Content: "Austin", FinishReason: "stop"}, nil
	})
	m := models{"": instant}
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if tr := c.Run(ctx, cases[i%len(cases)], m); tr.Error != "" {
			b.Fatal(tr.Error)
		}
		i++
	}
}
