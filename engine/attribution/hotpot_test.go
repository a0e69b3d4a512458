package attribution

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset/datasettest"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/scoring"
	"github.com/fapo-dev/fapo/engine/variant"
)

func readCases(t testing.TB, path string, n int) []dataset.Case {
	t.Helper()
	cases, err := dataset.ReadAll(path)
	require.NoError(t, err)
	return cases[:min(n, len(cases))]
}

func writeChain(t testing.TB, files map[string]string) *chain.Chain {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(c), 0o644))
	}
	ch, err := chain.Load(dir)
	require.NoError(t, err)
	return ch
}

// hotpotFixture is a two-step HotpotQA chain (retrieve k=2, answer) over the
// HTTP test double, where the retriever's query is deliberately off for a
// known subset of cases and the scripted model answers correctly exactly
// when it is shown both gold paragraphs (and a second known subset always
// answers wrong, a reasoning failure attribution must not call retrieval).
type hotpotFixture struct {
	chain     *chain.Chain
	models    chain.Models
	scorer    scoring.Scorer
	cases     []dataset.Case
	offQuery  []string // case ids whose query misses the gold
	wrongRsn  []string // case ids the model always gets wrong
	server    *fakellm.Server
	modelName string
}

func newHotpotFixture(t *testing.T, n int) *hotpotFixture {
	cases := readCases(t, datasettest.SharedFile(t, "hotpotqa.jsonl"), n)
	require.Len(t, cases, n)
	return newHotpotFixtureFrom(t, cases)
}

// syntheticHotpotCases are HotpotQA-shaped cases made up here (two gold
// paragraphs and two distractors each, supporting facts by title), so that
// oracle replay is tested also where the shared benchmark data is absent.
func syntheticHotpotCases(n int) []dataset.Case {
	var out []dataset.Case
	words := []string{"amber", "basalt", "cobalt", "dune", "ember", "fjord", "garnet", "heath", "indigo", "juniper"}
	for i := range n {
		w := func(j int) string { return words[(i+j)%len(words)] + fmt.Sprint(i) }
		para := func(title string, sentences ...string) any {
			ss := make([]any, len(sentences))
			for k, x := range sentences {
				ss[k] = x
			}
			return map[string]any{"title": title, "sentences": ss}
		}
		gold1, gold2 := "Guild of "+w(0), "Harbour of "+w(1)
		out = append(out, dataset.Case{
			CaseID: fmt.Sprintf("synthetic-%02d", i), TaskType: "qa",
			Context: map[string]any{
				"question": fmt.Sprintf("Which harbour did the founder of the %s guild sail from (case %d)?", w(0), i),
				"paragraphs": []any{
					para("Market of "+w(2), "The market of "+w(2)+" sells "+w(3)+" cloth.", " It opens at dawn."),
					para(gold1, "The guild of "+w(0)+" was founded by captain "+w(4)+".", " Its hall stands by the river."),
					para("Tower of "+w(5), "The tower of "+w(5)+" is made of "+w(6)+" stone."),
					para(gold2, "Captain "+w(4)+" sailed from the harbour of "+w(1)+".", " The harbour is deep."),
				},
			},
			Expected: map[string]any{"answer": "Harbour of " + w(1), "supporting_facts": []any{
				map[string]any{"title": gold1, "sent_id": float64(0)}, map[string]any{"title": gold2, "sent_id": float64(0)}}},
		})
	}
	return out
}

func newHotpotFixtureFrom(t *testing.T, cases []dataset.Case) *hotpotFixture {
	fx := &hotpotFixture{cases: cases, modelName: "fake-reader"}

	type truth struct {
		answer string
		gold   []string
		wrong  bool
	}
	byQuestion := map[string]truth{}
	ev := GoldEvidence{}
	for i := range cases {
		c := &cases[i]
		gold := ev.Titles(*c)
		require.Len(t, gold, 2, c.CaseID)
		paras, err := chain.PassagesFromValue(c.Context["paragraphs"])
		require.NoError(t, err)
		// The query is the text of the gold paragraphs for most cases and of
		// two distractors for every third: BM25 then ranks exactly those
		// two first, so which cases miss their gold is known in advance.
		var pick []string
		off := i%3 == 1
		for _, p := range paras {
			if slices.Contains(gold, p.Title) != off && len(pick) < 2 {
				pick = append(pick, p.Title+" "+p.Text)
			}
		}
		c.Context["query"] = strings.Join(pick, " ")
		tr := truth{answer: c.Expected["answer"].(string), gold: gold, wrong: i%5 == 0 && !off}
		if off {
			fx.offQuery = append(fx.offQuery, c.CaseID)
		}
		if tr.wrong {
			fx.wrongRsn = append(fx.wrongRsn, c.CaseID)
		}
		q := c.Context["question"].(string)
		byQuestion[q] = tr
	}

	fx.server = fakellm.New(fakellm.WithDefault(func(req fakellm.Request) fakellm.Reply {
		user := req.LastUser()
		q, _, _ := strings.Cut(strings.TrimPrefix(user, "Question: "), "\n")
		tr, ok := byQuestion[q]
		if !ok {
			return fakellm.Reply{Content: "no such question"}
		}
		for _, g := range tr.gold {
			if !strings.Contains(user, "["+g+"]") {
				return fakellm.Reply{Content: "I cannot tell from these passages."}
			}
		}
		if tr.wrong {
			return fakellm.Reply{Content: "Springfield"}
		}
		return fakellm.Reply{Content: tr.answer}
	}))
	t.Cleanup(fx.server.Close)
	client, err := provider.New(provider.Spec{Provider: provider.ProviderOpenAICompatible, Name: fx.modelName, BaseURL: fx.server.URL(), APIKeyEnv: "FAKE_KEY"},
		provider.Options{Getenv: func(string) string { return "test-key" }})
	require.NoError(t, err)
	fx.models = staticModels{client: client, model: fx.modelName}

	// The retrieve step is named "search", not "retrieve": kinds decide.
	fx.chain = writeChain(t, map[string]string{
		"chain.toml": `
[[steps]]
id = "search"
kind = "retrieve"
query = "{{.context.query}}"
source = "context.paragraphs"
k = 2

[[steps]]
id = "reader"
kind = "llm"
prompt = "prompts/reader.md"
[steps.params]
temperature = 0.0
max_tokens = 32
`,
		"prompts/reader.md": "Question: {{.context.question}}\nPassages:\n{{.steps.search.output}}\nAnswer with a short phrase.",
	})
	fx.scorer, err = scoring.New(scoring.Spec{Kind: "exact_match"}, scoring.Env{})
	require.NoError(t, err)
	return fx
}

type staticModels struct {
	client provider.Client
	model  string
}

func (s staticModels) Client(string) (provider.Client, string, error) { return s.client, s.model, nil }

// results runs the chain and scores it the way a train run records it.
func (fx *hotpotFixture) results(t *testing.T) []run.CaseResult {
	var out []run.CaseResult
	for _, c := range fx.cases {
		tr := fx.chain.Run(context.Background(), c, fx.models)
		r := run.CaseResult{CaseID: c.CaseID, ExecError: tr.Error, Trace: *tr, Expected: c.Expected, Context: c.Context}
		if tr.Error == "" {
			res, err := fx.scorer.Score(context.Background(), c, scoring.Output{Final: tr.Final, Trace: tr})
			require.NoError(t, err)
			r.Score = res.Composite
		}
		out = append(out, r)
	}
	return out
}

func TestHotpotQARetrievalSubset(t *testing.T) {
	fx := newHotpotFixture(t, 30)
	results := fx.results(t)
	rep := Attribute(results, fx.chain.Steps(), Options{OutputStep: fx.chain.Output()})

	var retrieval, reasoning []string
	for _, f := range rep.Failures {
		switch f.Class {
		case ClassRetrieval:
			retrieval = append(retrieval, f.CaseID)
			require.Equal(t, "search", f.RootStep)
			require.Equal(t, variant.Level("structural"), f.Level)
			require.False(t, f.LowConfidence, "the cases carry supporting facts")
			require.Contains(t, f.Evidence, "retrieve step search missed gold evidence")
		case ClassReasoning:
			reasoning = append(reasoning, f.CaseID)
			require.Equal(t, "reader", f.RootStep)
		default:
			t.Fatalf("case %s: unexpected class %s: %s", f.CaseID, f.Class, f.Evidence)
		}
	}
	require.Equal(t, fx.offQuery, retrieval, "exactly the cases whose query misses the gold are retrieval failures")
	require.Equal(t, fx.wrongRsn, reasoning)
	require.Equal(t, len(fx.offQuery)+len(fx.wrongRsn), rep.Attributed)
	require.Equal(t, "retrieval@search", rep.Dominant.Name())
	require.Equal(t, variant.Level("structural"), rep.RecommendedLevel)
	require.Equal(t, []string{"search"}, rep.OracleSteps)
}

func TestOracleReplayHeadroom(t *testing.T) {
	t.Run("HotpotQA", func(t *testing.T) { testOracleReplayHeadroom(t, newHotpotFixture(t, 30)) })
	t.Run("synthetic", func(t *testing.T) { testOracleReplayHeadroom(t, newHotpotFixtureFrom(t, syntheticHotpotCases(30))) })
}

func testOracleReplayHeadroom(t *testing.T, fx *hotpotFixture) {
	res, err := Replay(context.Background(), ReplayRequest{Chain: fx.chain, Models: fx.models, Scorer: fx.scorer,
		Cases: fx.cases, Step: "search", Concurrency: 2,
		Prices: map[string]provider.Price{fx.modelName: {InputPerMTok: 1, OutputPerMTok: 2}}})
	require.NoError(t, err)
	require.Equal(t, 30, res.Sample)
	require.Zero(t, res.Skipped)
	// With gold passages the off-query cases are answered; the always-wrong
	// ones stay wrong; nothing gets worse.
	require.Equal(t, len(fx.offQuery), res.Improved)
	require.Equal(t, res.Improved, res.Changed)
	require.Zero(t, res.Worsened)
	n := float64(len(fx.cases))
	require.InDelta(t, 100*float64(len(fx.cases)-len(fx.offQuery)-len(fx.wrongRsn))/n, res.ScoreWithout, 1e-9)
	require.InDelta(t, 100*float64(len(fx.cases)-len(fx.wrongRsn))/n, res.ScoreWith, 1e-9)
	require.InDelta(t, 100*float64(res.Changed)/n, res.Headroom, 1e-9, "headroom is the changed cases' gain")
	var improved []string
	for _, c := range res.Cases {
		if c.With > c.Without {
			improved = append(improved, c.CaseID)
		}
		require.Empty(t, c.Error)
	}
	require.Equal(t, fx.offQuery, improved)
	require.Equal(t, 60, res.Usage.Calls, "each case ran with and without gold")
	require.Positive(t, res.Usage.USD)
	require.Equal(t, fx.modelName, res.Usage.Models[0].Model)

	// The gold the model saw is the gold paragraphs formatted as the step
	// formats passages.
	off := fx.cases[slices.IndexFunc(fx.cases, func(c dataset.Case) bool { return c.CaseID == fx.offQuery[0] })]
	paras, err := chain.PassagesFromValue(off.Context["paragraphs"])
	require.NoError(t, err)
	var want []string
	for _, title := range (GoldEvidence{}).Titles(off) {
		p := paras[slices.IndexFunc(paras, func(d chain.RetrievedDoc) bool { return d.Title == title })]
		want = append(want, "["+p.Title+"] "+p.Text)
	}
	seen := false
	for _, r := range fx.server.Requests() {
		seen = seen || strings.Contains(r.Chat.LastUser(), "Passages:\n"+strings.Join(want, "\n\n")+"\nAnswer")
	}
	require.True(t, seen, "the replay showed the model exactly the gold paragraphs")
}

func TestReplayErrors(t *testing.T) {
	fx := newHotpotFixture(t, 3)
	base := ReplayRequest{Chain: fx.chain, Models: fx.models, Scorer: fx.scorer, Cases: fx.cases}
	tests := []struct {
		name string
		mod  func(r *ReplayRequest)
		want string
	}{
		{"unknown step", func(r *ReplayRequest) { r.Step = "serch" }, `the chain has no step "serch"; did you mean "search"? (steps: search, reader)`},
		{"step without gold", func(r *ReplayRequest) { r.Step = "reader" },
			`step reader (kind llm) has no gold output in the dataset, so it cannot be replayed with an oracle; steps with gold: search. Map a field of the cases in tenant.toml, e.g. [oracle] reader = "expected.<field>"`},
		{"oracle mapping outside expected", func(r *ReplayRequest) {
			r.Step, r.Oracle = "reader", map[string]string{"reader": "context.question"}
		}, `oracle.reader = "context.question" in tenant.toml: the gold output must be a field of the case's expected values`},
		{"no case carries gold", func(r *ReplayRequest) {
			r.Step, r.Oracle = "reader", map[string]string{"reader": "expected.nothing"}
		}, "none of the 3 sampled cases carries gold for step reader (looked for expected.nothing)"},
		{"no passages for the titles", func(r *ReplayRequest) {
			r.Step, r.Evidence = "search", GoldEvidence{PassagesPath: "context.docs"}
		}, "none of the 3 sampled cases carries gold for step search (looked for expected.supporting_facts titles among context.docs)"},
		{"custom gold for an unknown step", func(r *ReplayRequest) {
			r.Step, r.Gold = "nope", func(dataset.Case) (chain.StepOverride, bool) { return chain.StepOverride{}, true }
		}, `the chain has no step "nope"`},
		{"empty sample", func(r *ReplayRequest) { r.Step, r.Cases = "search", nil }, "the sample is empty"},
		{"no scorer", func(r *ReplayRequest) { r.Step, r.Scorer = "search", nil }, "needs a chain and a scorer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := base
			tt.mod(&req)
			_, err := Replay(context.Background(), req)
			require.ErrorContains(t, err, tt.want)
		})
	}
	require.Empty(t, fx.server.Requests(), "every error is found before a model call")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := base
	req.Step = "search"
	_, err := Replay(ctx, req)
	require.ErrorContains(t, err, "oracle replay of step search stopped")
}

// TestReplayMappedField substitutes an llm step's output from an expected
// field (tenant.toml [oracle] reader = "expected.answer"): every case then
// scores full marks, and the skipped cases are counted.
func TestReplayMappedField(t *testing.T) {
	fx := newHotpotFixture(t, 6)
	cases := slices.Clone(fx.cases)
	cases[0].Expected = map[string]any{} // no gold: skipped, not scored
	res, err := Replay(context.Background(), ReplayRequest{Chain: fx.chain, Models: fx.models, Scorer: fx.scorer,
		Cases: cases, Step: "reader", Oracle: map[string]string{"reader": "expected.answer"}})
	require.NoError(t, err)
	require.Equal(t, 5, res.Sample)
	require.Equal(t, 1, res.Skipped)
	require.Equal(t, 100.0, res.ScoreWith)
	require.InDelta(t, res.ScoreWith-res.ScoreWithout, res.Headroom, 1e-9)
	require.Equal(t, 5, res.Usage.Calls, "the replaced step calls no model; only the plain runs do")
}

func TestBuiltinGold(t *testing.T) {
	steps := []chain.StepInfo{{ID: "fetch", Kind: "retrieve"}, {ID: "extract", Kind: "llm"}, {ID: "answer", Kind: "llm"}}
	c := dataset.Case{CaseID: "c",
		Context: map[string]any{"paragraphs": []any{
			map[string]any{"title": "Other", "sentences": []any{"Noise."}},
			map[string]any{"title": "Second", "sentences": []any{"Two", " parts."}},
			map[string]any{"title": "First", "text": "One."},
		}},
		Expected: map[string]any{"answer": "x", "facts": map[string]any{"who": "Ann"},
			"supporting_facts": []any{map[string]any{"title": "First"}, map[string]any{"title": "Second"}, map[string]any{"title": "First"}}}}

	g, err := BuiltinGold(steps, "fetch", GoldEvidence{}, nil)
	require.NoError(t, err)
	ov, ok := g(c)
	require.True(t, ok)
	require.Equal(t, []chain.RetrievedDoc{{ID: "2", Title: "First", Text: "One."}, {ID: "1", Title: "Second", Text: "Two parts."}}, ov.Retrieved,
		"gold passages in gold order, each once")

	g, err = BuiltinGold(steps, "extract", GoldEvidence{}, map[string]string{"extract": "expected.facts"})
	require.NoError(t, err)
	ov, ok = g(c)
	require.True(t, ok)
	require.JSONEq(t, `{"who":"Ann"}`, ov.Output)
	require.Equal(t, map[string]any{"who": "Ann"}, ov.Parsed)

	_, err = BuiltinGold(steps, "answer", GoldEvidence{}, map[string]string{"extract": "expected.facts"})
	require.ErrorContains(t, err, "steps with gold: fetch, extract")
	_, err = BuiltinGold([]chain.StepInfo{{ID: "answer", Kind: "llm"}}, "answer", GoldEvidence{}, nil)
	require.ErrorContains(t, err, "steps with gold: none")

	_, ok = g(dataset.Case{Expected: map[string]any{}})
	require.False(t, ok)
	g, _ = BuiltinGold(steps, "fetch", GoldEvidence{}, nil)
	_, ok = g(dataset.Case{Expected: c.Expected, Context: map[string]any{"paragraphs": "not a list"}})
	require.False(t, ok, "unreadable passages are no gold")
	_, ok = g(dataset.Case{Expected: map[string]any{"supporting_facts": []any{"Absent"}}, Context: c.Context})
	require.False(t, ok, "gold titles with no passage are no gold")
}
