package attribution

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/variant"
)

// testSteps is a four-step chain whose retrieve step is deliberately not
// named "retrieve" and whose llm step is: classes come from kinds.
func testSteps() []chain.StepInfo {
	return []chain.StepInfo{
		{ID: "fetch", Kind: "retrieve", K: 2},
		{ID: "retrieve", Kind: "llm", Reads: []string{"fetch"}},
		{ID: "answer", Kind: "llm", Reads: []string{"retrieve"}},
		{ID: "final", Kind: "parse", Reads: []string{"answer"}},
	}
}

// goodTrace is a case that ran cleanly with both gold passages retrieved
// and answered "Austin".
func goodTrace(id string) run.CaseResult {
	return run.CaseResult{
		CaseID: id, Score: 100,
		Expected: map[string]any{"answer": "Austin", "supporting_facts": []any{
			map[string]any{"title": "Tinted Windows", "sent_id": 1.0}, map[string]any{"title": "Austin", "sent_id": 0.0}}},
		Trace: chain.Trace{CaseID: id, Final: "Austin", Steps: []chain.StepTrace{
			{StepID: "fetch", Kind: "retrieve", Output: "[Tinted Windows] ...", Retrieved: []chain.RetrievedDoc{
				{ID: "0", Title: "Tinted Windows", Text: "Their first show was in Austin, Texas."}, {ID: "1", Title: "Austin", Text: "Austin is in Texas."}}},
			{StepID: "retrieve", Kind: "llm", Output: "Their first show was in Austin.", FinishReason: "stop", Calls: 1},
			{StepID: "answer", Kind: "llm", Output: "Answer: Austin", FinishReason: "stop", Calls: 1,
				Messages: []provider.Message{{Role: "user", Content: "Facts: Their first show was in Austin."}}},
			{StepID: "final", Kind: "parse", Output: "Austin", Parsed: "Austin"},
		}},
	}
}

func edit(r run.CaseResult, f func(r *run.CaseResult)) run.CaseResult {
	r.Trace.Steps = append([]chain.StepTrace(nil), r.Trace.Steps...)
	f(&r)
	return r
}

func step(r *run.CaseResult, id string) *chain.StepTrace { return r.Trace.Step(id) }

func failWith(final string, score float64) func(r *run.CaseResult) {
	return func(r *run.CaseResult) {
		r.Score = score
		r.Trace.Final = final
		step(r, "final").Output = final
		step(r, "answer").Output = "Answer: " + final
	}
}

func TestAttributeClasses(t *testing.T) {
	tests := []struct {
		name     string
		result   run.CaseResult
		class    string
		root     string
		level    variant.Level
		evidence []string
		lowConf  bool
	}{
		{name: "provider error", class: ClassInfrastructure, root: "answer", level: "",
			result: edit(goodTrace("c"), func(r *run.CaseResult) {
				r.Score, r.Trace.Final = 0, ""
				r.ExecError = `step "answer": openai_compatible m: 429 Too Many Requests: rate limited`
				step(r, "answer").Error = "openai_compatible m: 429 Too Many Requests: rate limited"
				*step(r, "final") = chain.StepTrace{StepID: "final", Kind: "parse", Skipped: true, Error: "not run: step answer failed"}
			}),
			evidence: []string{"step answer failed calling the model", "429"}},
		{name: "call timeout", class: ClassInfrastructure, root: "retrieve", level: "",
			result: edit(goodTrace("c"), func(r *run.CaseResult) {
				r.Score = 0
				step(r, "retrieve").Error = "provider call timed out: context deadline exceeded"
			}),
			evidence: []string{"timed out"}},
		{name: "provider error without the step's trace", class: ClassInfrastructure, root: "answer", level: "",
			result:   run.CaseResult{CaseID: "c", ExecError: `step "answer": openai m: 502 Bad Gateway`},
			evidence: []string{"the pipeline failed calling a model", "502"}},
		{name: "provider error naming no step", class: ClassInfrastructure, root: PipelineStep, level: "",
			result:   run.CaseResult{CaseID: "c", ExecError: "context deadline exceeded"},
			evidence: []string{"deadline exceeded"}},
		{name: "scorer's judge unreachable", class: ClassInfrastructure, root: ScorerStep, level: "",
			result:   edit(goodTrace("c"), func(r *run.CaseResult) { r.Score, r.ScoreError = 0, "llm_judge: 503 Service Unavailable" }),
			evidence: []string{"the scorer failed calling its model", "503"}},
		{name: "truncated at max_tokens", class: ClassTruncation, root: "retrieve", level: "parameter",
			result: edit(goodTrace("c"), func(r *run.CaseResult) {
				failWith("Dallas", 0)(r)
				step(r, "retrieve").FinishReason = "length"
				step(r, "retrieve").CompletionTokens = 200
			}),
			evidence: []string{"step retrieve stopped at max_tokens", "200 completion tokens"}},
		{name: "empty intermediate output consumed downstream", class: ClassCascade, root: "retrieve", level: "structural",
			result: edit(goodTrace("c"), func(r *run.CaseResult) {
				failWith("unknown", 0)(r)
				step(r, "retrieve").Output = "  "
			}),
			evidence: []string{"step retrieve came out empty and step answer reads it"}},
		{name: "failed intermediate step", class: ClassCascade, root: "retrieve", level: "structural",
			result: edit(goodTrace("c"), func(r *run.CaseResult) {
				r.Score, r.Trace.Final = 0, ""
				step(r, "retrieve").Error = `render prompt: template: x:1: map has no entry for key "facts"`
				step(r, "answer").Skipped, step(r, "answer").Error = true, "not run: step retrieve failed"
				step(r, "final").Skipped = true
			}),
			evidence: []string{"step retrieve failed (render prompt", "step answer reads it"}},
		{name: "gold title missed", class: ClassRetrieval, root: "fetch", level: "structural",
			result: edit(goodTrace("c"), func(r *run.CaseResult) {
				failWith("Dallas", 0)(r)
				step(r, "fetch").Retrieved = []chain.RetrievedDoc{{Title: "Tinted Windows", Text: "A band."}, {Title: "Dallas", Text: "A city."}}
			}),
			evidence: []string{`retrieve step fetch missed gold evidence "Austin" (1 of 2 gold titles retrieved)`}},
		{name: "nothing retrieved", class: ClassRetrieval, root: "fetch", level: "structural",
			result: edit(goodTrace("c"), func(r *run.CaseResult) {
				failWith("Dallas", 0)(r)
				step(r, "fetch").Retrieved = nil
			}),
			evidence: []string{"retrieve step fetch returned no passages"}},
		{name: "no gold: answer words absent from passages", class: ClassRetrieval, root: "fetch", level: "structural", lowConf: true,
			result: edit(goodTrace("c"), func(r *run.CaseResult) {
				failWith("Dallas", 0)(r)
				r.Expected = map[string]any{"answer": "Austin, Texas"}
				step(r, "fetch").Retrieved = []chain.RetrievedDoc{{Title: "Dallas", Text: "A city in the south."}}
			}),
			evidence: []string{"no gold evidence in the case", `0% of the words of the expected answer "Austin, Texas"`}},
		{name: "answer present but extra words", class: ClassFormat, root: "final", level: "prompt",
			result:   edit(goodTrace("c"), failWith("The answer is Austin.", 40)),
			evidence: []string{`the final output "The answer is Austin." contains the expected answer "Austin" but scored 40`}},
		{name: "parse fell back to raw", class: ClassFormat, root: "final", level: "prompt",
			result: edit(goodTrace("c"), func(r *run.CaseResult) {
				failWith("I think it is Dallas", 0)(r)
				step(r, "final").ParseError = `regex "Answer:\\s*(.+)" does not match the input`
			}),
			evidence: []string{"parse step final could not extract a value", "does not match"}},
		{name: "parse failed at the end", class: ClassFormat, root: "final", level: "prompt",
			result: edit(goodTrace("c"), func(r *run.CaseResult) {
				r.Score, r.Trace.Final = 0, ""
				step(r, "final").Error = "regex does not match the input"
				step(r, "final").Output = ""
			}),
			evidence: []string{"parse step final failed"}},
		// A model that answered off its json_schema is the variant's format,
		// even when the validator's message names a field "timeout" and even
		// though later steps never ran.
		{name: "llm output off its json_schema", class: ClassFormat, root: "retrieve", level: "prompt",
			result: edit(goodTrace("c"), func(r *run.CaseResult) {
				r.Score, r.Trace.Final = 0, ""
				msg := "at '': missing property 'timeout'"
				r.ExecError = `step "retrieve": output is not the JSON the schema asks for: ` + msg
				step(r, "retrieve").Error = "output is not the JSON the schema asks for: " + msg
				step(r, "retrieve").ParseError = msg
				step(r, "answer").Skipped, step(r, "answer").Error = true, "not run: step retrieve failed"
				step(r, "final").Skipped = true
			}),
			evidence: []string{"step retrieve answered outside its json_schema", "missing property 'timeout'"}},
		{name: "scorer cannot read the output", class: ClassFormat, root: "final", level: "prompt",
			result:   edit(goodTrace("c"), func(r *run.CaseResult) { r.Score, r.ScoreError = 0, "json_field: the output is not JSON" }),
			evidence: []string{"the scorer could not read the final output: json_field"}},
		{name: "wrong answer from good evidence", class: ClassReasoning, root: "answer", level: "prompt",
			result:   edit(goodTrace("c"), failWith("Dallas", 0)),
			evidence: []string{`step answer answered "Dallas" where "Austin" was expected (score 0)`}},
		{name: "yes/no answers are not looked up in passages", class: ClassReasoning, root: "answer", level: "prompt",
			result: edit(goodTrace("c"), func(r *run.CaseResult) {
				failWith("no", 0)(r)
				r.Expected = map[string]any{"answer": "yes"}
			}),
			evidence: []string{`answered "no" where "yes" was expected`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := Attribute([]run.CaseResult{goodTrace("ok"), tt.result}, testSteps(), Options{OutputStep: "final"})
			require.Equal(t, 2, rep.Cases)
			require.Len(t, rep.Failures, 1, "the passing case is not a failure")
			f := rep.Failures[0]
			require.Equal(t, "c", f.CaseID)
			require.Equal(t, tt.class, f.Class, f.Evidence)
			require.Equal(t, tt.root, f.RootStep)
			require.Equal(t, tt.level, f.Level)
			require.Equal(t, tt.lowConf, f.LowConfidence)
			require.LessOrEqual(t, len(f.Evidence), maxEvidence)
			for _, e := range tt.evidence {
				require.Contains(t, f.Evidence, e)
			}
			require.Equal(t, 1, rep.ClassCounts()[tt.class])
		})
	}
}

func TestAttributeEvidenceIsShort(t *testing.T) {
	long := strings.Repeat("very long output ", 100)
	r := edit(goodTrace("c"), failWith(long, 0))
	r.Expected["answer"] = strings.Repeat("gold ", 100)
	rep := Attribute([]run.CaseResult{r}, testSteps(), Options{})
	require.Len(t, rep.Failures, 1)
	require.LessOrEqual(t, len(rep.Failures[0].Evidence), maxEvidence)
	require.Contains(t, rep.Failures[0].Evidence, "…")
}

func TestAttributeThreshold(t *testing.T) {
	scores := []float64{100, 99.5, 60, 50, 49.9, 0}
	var results []run.CaseResult
	for i, s := range scores {
		results = append(results, edit(goodTrace(fmt.Sprintf("c%d", i)), func(r *run.CaseResult) { r.Score = s }))
	}
	broken := edit(goodTrace("broken"), func(r *run.CaseResult) {
		r.Score, r.ExecError = 100, "step \"answer\": 500 Internal Server Error"
		step(r, "answer").Error = "500 Internal Server Error"
	})
	results = append(results, broken)
	ids := func(rep *Report) []string {
		var out []string
		for _, f := range rep.Failures {
			out = append(out, f.CaseID)
		}
		return out
	}
	tests := []struct {
		failBelow float64
		want      []string
	}{
		{0, []string{"c1", "c2", "c3", "c4", "c5", "broken"}},
		{50, []string{"c4", "c5", "broken"}},
		{99.5, []string{"c2", "c3", "c4", "c5", "broken"}},
	}
	for _, tt := range tests {
		rep := Attribute(results, testSteps(), Options{FailBelow: tt.failBelow})
		require.Equal(t, tt.want, ids(rep), "fail_below %v", tt.failBelow)
		require.Equal(t, len(tt.want), rep.Attributed)
		if tt.failBelow == 0 {
			require.Equal(t, 100.0, rep.FailBelow, "the default threshold is the scorer's maximum")
		}
	}
}

func TestClusters(t *testing.T) {
	var results []run.CaseResult
	add := func(n int, prefix string, f func(r *run.CaseResult)) {
		for i := range n {
			results = append(results, edit(goodTrace(fmt.Sprintf("%s%d", prefix, i)), f))
		}
	}
	missGold := func(r *run.CaseResult) {
		failWith("Dallas", 0)(r)
		step(r, "fetch").Retrieved = []chain.RetrievedDoc{{Title: "Dallas", Text: "x"}}
	}
	add(3, "fmt", failWith("The answer is Austin", 50))
	add(7, "ret", missGold)
	add(3, "rea", failWith("Dallas", 0))
	add(2, "ok", func(*run.CaseResult) {})

	rep := Attribute(results, testSteps(), Options{})
	require.Equal(t, 15, rep.Cases)
	require.Equal(t, 13, rep.Attributed)
	require.Len(t, rep.Clusters, 3)
	d := rep.Clusters[0]
	require.Equal(t, &d, rep.Dominant)
	require.Equal(t, Cluster{Class: ClassRetrieval, RootStep: "fetch", Level: "structural", Count: 7, Share: 7.0 / 13,
		Examples: []string{"ret0", "ret1", "ret2", "ret3", "ret4"}}, d)
	require.Equal(t, "retrieval@fetch", d.Name())
	require.Equal(t, variant.Level("structural"), rep.RecommendedLevel)
	// Equal counts: the format cluster (prompt at final) and the reasoning
	// cluster (prompt at answer) tie on level, so step order decides.
	require.Equal(t, "reasoning@answer", rep.Clusters[1].Name())
	require.Equal(t, "format@final", rep.Clusters[2].Name())
	require.Equal(t, map[string]int{ClassInfrastructure: 0, ClassTruncation: 0, ClassCascade: 0, ClassRetrieval: 7, ClassFormat: 3, ClassReasoning: 3}, rep.ClassCounts())
	require.Equal(t, []string{"fetch"}, rep.OracleSteps)
	sum := 0.0
	for _, c := range rep.Clusters {
		sum += c.Share
	}
	require.InDelta(t, 1, sum, 1e-9)
}

func TestDominantTieBreaks(t *testing.T) {
	truncated := func(r *run.CaseResult) {
		failWith("Dallas", 0)(r)
		step(r, "answer").FinishReason = "length"
	}
	results := []run.CaseResult{
		edit(goodTrace("t1"), truncated), edit(goodTrace("t2"), truncated),
		edit(goodTrace("r1"), failWith("Dallas", 0)), edit(goodTrace("r2"), failWith("Dallas", 0)),
	}
	rep := Attribute(results, testSteps(), Options{})
	require.Equal(t, "reasoning@answer", rep.Dominant.Name(), "prompt is cheaper than parameter")
	require.Equal(t, variant.Level("prompt"), rep.RecommendedLevel)

	infra := func(r *run.CaseResult) {
		r.Score = 0
		step(r, "answer").Error = "dial tcp: connection refused"
	}
	results = []run.CaseResult{edit(goodTrace("i1"), infra), edit(goodTrace("i2"), infra), edit(goodTrace("i3"), infra), edit(goodTrace("r1"), failWith("Dallas", 0))}
	rep = Attribute(results, testSteps(), Options{})
	require.Equal(t, "infrastructure@answer", rep.Dominant.Name())
	require.Empty(t, rep.RecommendedLevel, "no level of change fixes a model server")
	require.Contains(t, rep.Note, "provider errors at step answer")

	rep = Attribute([]run.CaseResult{goodTrace("ok")}, testSteps(), Options{})
	require.Nil(t, rep.Dominant)
	require.Empty(t, rep.Failures)
	require.NotNil(t, rep.Clusters)
	require.Empty(t, rep.RecommendedLevel)
}

func TestMultiHopRetrieval(t *testing.T) {
	steps := []chain.StepInfo{
		{ID: "hop1", Kind: "retrieve"},
		{ID: "bridge", Kind: "llm", Reads: []string{"hop1"}},
		{ID: "hop2", Kind: "retrieve", Reads: []string{"bridge"}},
		{ID: "answer", Kind: "llm", Reads: []string{"hop1", "hop2"}},
	}
	mk := func(hop1, hop2 []string) run.CaseResult {
		docs := func(ts []string) []chain.RetrievedDoc {
			var out []chain.RetrievedDoc
			for _, t := range ts {
				out = append(out, chain.RetrievedDoc{Title: t, Text: t})
			}
			return out
		}
		return run.CaseResult{CaseID: "m", Score: 0,
			Expected: map[string]any{"answer": "x", "supporting_facts": []any{[]any{"A", 0.0}, []any{"B", 1.0}, []any{"A", 2.0}}},
			Trace: chain.Trace{Final: "y", Steps: []chain.StepTrace{
				{StepID: "hop1", Kind: "retrieve", Retrieved: docs(hop1)}, {StepID: "bridge", Kind: "llm", Output: "b"},
				{StepID: "hop2", Kind: "retrieve", Retrieved: docs(hop2)}, {StepID: "answer", Kind: "llm", Output: "y"}}}}
	}
	rep := Attribute([]run.CaseResult{mk([]string{"A"}, []string{"C"})}, steps, Options{})
	require.Equal(t, "hop2", rep.Failures[0].RootStep, "hop2 found no gold title")
	require.Equal(t, ClassRetrieval, rep.Failures[0].Class)
	require.Contains(t, rep.Failures[0].Evidence, `missed gold evidence "B" (1 of 2`)

	rep = Attribute([]run.CaseResult{mk([]string{"A"}, []string{"B"})}, steps, Options{})
	require.Equal(t, ClassReasoning, rep.Failures[0].Class, "both hops together found the gold")
	require.Equal(t, "answer", rep.Failures[0].RootStep)
}

func TestGoldEvidenceConfigurable(t *testing.T) {
	r := edit(goodTrace("c"), failWith("Dallas", 0))
	r.Expected = map[string]any{"answer": "Austin", "evidence": []any{map[string]any{"doc": "Missing Doc"}}}
	ev := GoldEvidence{TitlesPath: "expected.evidence", TitleKey: "doc"}
	rep := Attribute([]run.CaseResult{r}, testSteps(), Options{Gold: ev})
	require.Equal(t, ClassRetrieval, rep.Failures[0].Class)
	require.Contains(t, rep.Failures[0].Evidence, `"Missing Doc"`)
	require.Equal(t, []string{"Missing Doc"}, ev.Titles(r.Case()))
	require.Empty(t, GoldEvidence{}.Titles(r.Case()), "default path absent")

	// Passages without titles cannot be checked against gold titles: the
	// lexical fallback decides, and Austin is in the passages.
	r2 := edit(goodTrace("c"), failWith("Dallas", 0))
	for i := range step(&r2, "fetch").Retrieved {
		step(&r2, "fetch").Retrieved[i].Title = ""
	}
	rep = Attribute([]run.CaseResult{r2}, testSteps(), Options{})
	require.Equal(t, ClassReasoning, rep.Failures[0].Class)
}

// BenchmarkAttribute measures attribution of a 1000-case train run with a
// mix of failure classes.
func BenchmarkAttribute(b *testing.B) {
	var results []run.CaseResult
	for i := range 1000 {
		r := goodTrace(fmt.Sprintf("c%d", i))
		switch i % 4 {
		case 1:
			r = edit(r, failWith("Dallas", 0))
		case 2:
			r = edit(r, failWith("The answer is Austin", 50))
		case 3:
			r = edit(r, func(r *run.CaseResult) {
				failWith("Dallas", 0)(r)
				step(r, "fetch").Retrieved = []chain.RetrievedDoc{{Title: "Dallas", Text: "x"}}
			})
		}
		results = append(results, r)
	}
	steps := testSteps()
	b.ReportAllocs()
	for b.Loop() {
		if rep := Attribute(results, steps, Options{}); rep.Attributed != 750 {
			b.Fatalf("failed = %d", rep.Attributed)
		}
	}
}
