package loop_test

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/engine/run"
)

var (
	countryRe = regexp.MustCompile(`What is the capital of ([^?]+)\?`)
	cityRe    = regexp.MustCompile(`^The capital of .+ is (.+)\.$`)
)

func allText(r fakellm.Request) string {
	var b strings.Builder
	for _, m := range r.Messages {
		b.WriteString(m.Content + "\n")
	}
	return b.String()
}

// isCandidate tells the better prompt's requests from the baseline's.
func isCandidate(r fakellm.Request) bool {
	return strings.Contains(strings.ToLower(allText(r)), looptest.BarePhrase)
}

// proposeBetter starts a session and proposes and reviews the bare-answer
// prompt, which scores near 100 where the baseline scores near 0.
func proposeBetter(t *testing.T, w *loop.Workspace) string {
	t.Helper()
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "bare answers",
		Prompts: map[string]string{"answer": betterPrompt}})
	require.NoError(t, err)
	rev, err := w.Review(ctx, tenantName, prop.Variant)
	require.NoError(t, err)
	require.True(t, rev.Verdict.Pass, "%+v", rev.Verdict.Findings)
	return prop.Variant
}

// priced sets input tokens at $1 per million and output tokens free, so a
// case's cost is its prompt tokens, which the model double reports: 100
// for the baseline's requests, 200 for the candidate's.
func priced(bound string) func(string) string {
	return func(s string) string {
		s = strings.Replace(s, "input_per_mtok = 0.15", "input_per_mtok = 1.0", 1)
		s = strings.Replace(s, "output_per_mtok = 0.60", "output_per_mtok = 0.0", 1)
		return s + bound
	}
}

func twiceAsDear(r fakellm.Request, rep fakellm.Reply) fakellm.Reply {
	rep.PromptTokens = 100
	if isCandidate(r) {
		rep.PromptTokens = 200
	}
	return rep
}

// TestCostBound: a candidate that scores far better but costs exactly
// twice as much per case is refused under max_cost_ratio = 1.5, with the
// bound and the overshoot named, and accepted without the bound.
func TestCostBound(t *testing.T) {
	for _, tc := range []struct {
		name   string
		bound  string
		accept bool
	}{
		{"bounded", "max_cost_ratio = 1.5\n", false},
		{"unbounded", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := looptest.New(t, priced(tc.bound), fakellm.WithAfter(twiceAsDear))
			w := open(t, f)
			cand := proposeBetter(t, w)
			cmp, err := w.Compare(context.Background(), tenantName, cand, nil)
			require.NoError(t, err)
			require.Greater(t, cmp.Decision.Delta, 50.0, "the scores alone accept")
			require.Len(t, cmp.PerModel, 1)
			pm := cmp.PerModel[0]
			require.InDelta(t, 100e-6, pm.Incumbent.USDPerCase, 1e-12)
			require.InDelta(t, 200e-6, pm.Candidate.USDPerCase, 1e-12)
			require.InDelta(t, 2.0, pm.CostRatio, 1e-9)
			require.Greater(t, pm.Candidate.TokensPerCase, 200.0)
			require.Greater(t, pm.Candidate.LatencyP95MS, 0.0)
			require.GreaterOrEqual(t, pm.Candidate.LatencyP95MS, pm.Candidate.LatencyP50MS)
			require.Equal(t, tc.accept, cmp.Decision.Accept, cmp.Decision.Reason)
			if tc.accept {
				require.Empty(t, cmp.Decision.BoundsBroken)
				require.Equal(t, cand, cmp.NewIncumbent)
				return
			}
			require.Len(t, cmp.Decision.BoundsBroken, 1)
			b := cmp.Decision.BoundsBroken[0]
			require.Equal(t, "max_cost_ratio", b.Bound)
			require.InDelta(t, 2.0, b.Ratio, 1e-9)
			require.Contains(t, cmp.Decision.Reason, "$ per case is 2.00× the incumbent's")
			require.Contains(t, cmp.Decision.Reason, "above max_cost_ratio = 1.5 by 33%")
			require.Equal(t, "v0000", cmp.NewIncumbent, "the incumbent stands")
		})
	}
}

// TestLatencyBound: a candidate far slower per call is refused under
// max_latency_ratio = 2. The gap (1 ms against 300 ms) is wide so that a
// loaded machine's scheduling delay cannot close it.
func TestLatencyBound(t *testing.T) {
	slow := func(r fakellm.Request, rep fakellm.Reply) fakellm.Reply {
		rep.Latency = time.Millisecond
		if isCandidate(r) {
			rep.Latency = 300 * time.Millisecond
		}
		return rep
	}
	f := looptest.New(t, func(s string) string { return s + "max_latency_ratio = 2.0\n" }, fakellm.WithAfter(slow))
	w := open(t, f)
	cmp, err := w.Compare(context.Background(), tenantName, proposeBetter(t, w), nil)
	require.NoError(t, err)
	t.Logf("per model: %+v", cmp.PerModel)
	require.False(t, cmp.Decision.Accept, cmp.Decision.Reason)
	require.Len(t, cmp.Decision.BoundsBroken, 1)
	require.Equal(t, "max_latency_ratio", cmp.Decision.BoundsBroken[0].Bound)
	require.Greater(t, cmp.PerModel[0].LatencyRatio, 2.0)
	require.Contains(t, cmp.Decision.Reason, "median latency per case")
}

// twoModels declares two task models on the double: on "strong" the
// candidate answers every case and the baseline none (+100 a case); on
// "cheap" the baseline answers every case and the candidate only those of
// countries with an odd number of letters (a regression on the rest). So
// every model does not improve, but the mean over them does.
func twoModels(rule string) func(string) string {
	return func(s string) string {
		s = strings.Replace(s, "[acceptance]\n", fmt.Sprintf("[acceptance]\ntask_models = [\"cheap\", \"strong\"]\nmodels_rule = %q\n", rule), 1)
		return withModels(s)
	}
}

// withModels declares [models.cheap] and [models.strong] on the double,
// as cheap-model and strong-model.
func withModels(s string) string {
	m := regexp.MustCompile(`base_url = "[^"]+"`).FindString(s)
	for _, name := range []string{"cheap", "strong"} {
		s += fmt.Sprintf("\n[models.%s]\nprovider = \"openai_compatible\"\n%s\nname = \"%s-model\"\napi_key_env = \"\"\n", name, m, name)
	}
	return s
}

func perModel(r fakellm.Request, rep fakellm.Reply) fakellm.Reply {
	if r.Model != "cheap-model" {
		return rep
	}
	if m := cityRe.FindStringSubmatch(rep.Content); m != nil {
		return fakellm.Reply{Content: m[1]} // the verbose baseline is bare on cheap
	}
	if c := countryRe.FindStringSubmatch(allText(r)); c != nil && isCandidate(r) && len(strings.TrimSpace(c[1]))%2 == 0 {
		return fakellm.Reply{Content: "I do not know."}
	}
	return rep
}

// TestTaskModels: the same compare under each models rule.
func TestTaskModels(t *testing.T) {
	for _, tc := range []struct {
		rule   string
		accept bool
	}{
		{"every", false},
		{"mean", true},
	} {
		t.Run(tc.rule, func(t *testing.T) {
			f := looptest.New(t, twoModels(tc.rule), fakellm.WithAfter(perModel))
			w := open(t, f)
			cand := proposeBetter(t, w)
			calls := map[string]int{}
			cmp, err := w.Compare(context.Background(), tenantName, cand, nil)
			require.NoError(t, err)
			for _, r := range f.LLM.Requests() {
				calls[r.Chat.Model]++
			}
			require.Equal(t, 0, calls["gpt-4o-mini"], "validation runs on the task models, not [model]")
			require.Equal(t, calls["cheap-model"], calls["strong-model"])
			require.Equal(t, 2, cmp.Budget.ValidationEvals, "four results (two variants on two models) charged of six")

			d := cmp.Decision
			require.Equal(t, tc.rule, d.ModelsRule)
			require.Len(t, d.PerModel, 2)
			byModel := map[string]float64{}
			for _, pm := range d.PerModel {
				byModel[pm.Model] = pm.Delta
			}
			require.Less(t, byModel["cheap"], -10.0, "cheap regresses")
			require.InDelta(t, 100.0, byModel["strong"], 1e-9, "strong improves on every case")
			require.InDelta(t, (byModel["cheap"]+byModel["strong"])/2, d.Delta, 1e-9, "the decision is over per-case means across models")
			require.Greater(t, d.Delta, 0.0)
			require.Equal(t, tc.accept, d.Accept, d.Reason)
			require.Contains(t, d.Reason, "cheap rejects")
			require.Contains(t, d.Reason, "strong accepts")
			require.Len(t, cmp.PerModel, 2)
			require.Equal(t, "cheap", cmp.PerModel[0].Model)
			require.InDelta(t, 100.0, cmp.PerModel[0].IncumbentScore, 1e-9)
			require.InDelta(t, 100.0, cmp.PerModel[1].CandidateScore, 1e-9)

			// fapo final reports per model.
			fin, err := w.Final(context.Background(), loop.FinalRequest{Tenant: tenantName})
			require.NoError(t, err)
			require.Len(t, fin.PerModel, 2)
			require.Equal(t, "cheap", fin.PerModel[0].Model)
			require.Equal(t, "strong", fin.PerModel[1].Model)
			require.InDelta(t, (fin.PerModel[0].Summary.ScoreMean+fin.PerModel[1].Summary.ScoreMean)/2, fin.ScoreMean, 1e-9)
		})
	}
}

// TestRepeats: with repeats = 3 each validation case reaches the model
// three times (the same request, told apart in the cache by the repeat
// index) on the first run, and not at all when the same repeats run again.
func TestRepeats(t *testing.T) {
	f := looptest.New(t, func(s string) string {
		return strings.Replace(s, "[acceptance]\n", "[acceptance]\nrepeats = 3\npass_k = 2\n", 1)
	})
	w := open(t, f)
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	ev, err := w.EvaluateValidation(context.Background(), loop.RunRequest{Tenant: tenantName})
	require.NoError(t, err)
	require.Equal(t, 3, ev.Repeats)
	require.Positive(t, ev.Cases)
	perPrompt := map[string]int{}
	for _, r := range f.LLM.Requests() {
		perPrompt[allText(r.Chat)]++
	}
	require.Len(t, perPrompt, ev.Cases)
	for p, n := range perPrompt {
		require.Equal(t, 3, n, "each case asked three times: %.40q", p)
	}
	first := f.LLM.Count()
	require.Equal(t, 3*ev.Cases, first)

	sum, err := w.EvaluateForOperator(context.Background(), loop.RunRequest{Tenant: tenantName, Split: dataset.Validation, Repeats: 3})
	require.NoError(t, err)
	require.Equal(t, 3*ev.Cases, sum.Cases)
	require.Equal(t, first, f.LLM.Count(), "a rerun of the same repeats is answered from the cache")
	require.Equal(t, 3*ev.Cases, sum.Usage.CacheHits)
}

// TestPassK: a model that answers each case right on the first c of its
// repeats, c known per case, against the estimate computed by hand.
func TestPassK(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}                                           // per country and prompt: calls so far
	rightFirst := func(country string) int { return len(country) % 4 } // 0..3 of 3 repeats
	flaky := func(r fakellm.Request, rep fakellm.Reply) fakellm.Reply {
		c := countryRe.FindStringSubmatch(allText(r))
		if c == nil || !isCandidate(r) {
			return rep
		}
		country := strings.TrimSpace(c[1])
		mu.Lock()
		defer mu.Unlock()
		n := seen[country]
		seen[country]++
		if n < rightFirst(country) {
			return rep // the bare city
		}
		return fakellm.Reply{Content: "I do not know."}
	}
	f := looptest.New(t, func(s string) string {
		return strings.Replace(s, "[acceptance]\n", "[acceptance]\nrepeats = 3\npass_k = 2\n", 1)
	}, fakellm.WithAfter(flaky))
	w := open(t, f)
	cmp, err := w.Compare(context.Background(), tenantName, proposeBetter(t, w), nil)
	require.NoError(t, err)

	// By hand: pass^2 of a case right c times in 3 is C(c,2)/C(3,2):
	// 0, 0, 1/3 and 1 for c = 0..3.
	byC := []float64{0, 0, 1.0 / 3, 1}
	var want, score float64
	require.NotEmpty(t, seen)
	for country, n := range seen {
		require.Equal(t, 3, n, "three repeats of %s", country)
		c := min(rightFirst(country), 3)
		want += byC[c]
		score += float64(c) / 3 * 100
	}
	want /= float64(len(seen))
	score /= float64(len(seen))
	pm := cmp.PerModel[0]
	require.Equal(t, 2, pm.PassK)
	require.InDelta(t, want, pm.CandidatePassK, 1e-12)
	require.InDelta(t, 0, pm.IncumbentPassK, 1e-12, "the verbose baseline never passes")
	require.InDelta(t, score, pm.CandidateScore, 1e-9, "the score is the mean of per-case means")
	require.Equal(t, len(seen), cmp.Decision.N, "paired on cases, not on repeats")
	require.False(t, math.IsNaN(want))
}

// twoSteps makes the fixture's chain a lookup step whose output the answer
// step reads: a candidate that changes only the answer step has its lookup
// calls answered from the cache of the incumbent's validation run.
func twoSteps(t *testing.T, f *looptest.Fixture) {
	t.Helper()
	dir := f.TenantDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "chain.toml"), []byte(`output = "answer"

[[steps]]
id = "lookup"
kind = "llm"
prompt = "prompts/lookup.md"

[[steps]]
id = "answer"
kind = "llm"
prompt = "prompts/answer.md"
`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prompts", "lookup.md"), []byte("{{.context.question}}\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prompts", "answer.md"), []byte(answerWithNotes("")), 0o644))
}

func answerWithNotes(instruction string) string {
	return instruction + "{{.context.question}}\nNotes: {{.steps.lookup.output}}\n"
}

// TestCachedStepsCountAsCalls: every call takes 150 ms and 100 prompt
// tokens, whichever variant asks. A candidate that changes only the last of
// two steps has its first step answered from the cache, yet costs and takes
// what the incumbent does (ratios ≈ 1); once it is the incumbent, a
// candidate that changes both steps (no hit) is not twice as dear or as
// slow as it, so max_cost_ratio = 1.5 and max_latency_ratio = 1.5 refuse
// neither. Timed from the hits as they were, both would be refused.
func TestCachedStepsCountAsCalls(t *testing.T) {
	const call = 150 * time.Millisecond // long enough that a loaded machine's scheduling noise stays small beside it
	f := looptest.New(t, priced("max_cost_ratio = 1.5\nmax_latency_ratio = 1.5\n"),
		fakellm.WithAfter(func(r fakellm.Request, rep fakellm.Reply) fakellm.Reply {
			rep.PromptTokens, rep.Latency = 100, call
			return rep
		}))
	twoSteps(t, f)
	w := open(t, f)
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	propose := func(prompts map[string]string) string {
		prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "bare answers", Prompts: prompts})
		require.NoError(t, err)
		rev, err := w.Review(ctx, tenantName, prop.Variant)
		require.NoError(t, err)
		require.True(t, rev.Verdict.Pass, "%+v", rev.Verdict.Findings)
		return prop.Variant
	}
	near := func(pm loop.ModelComparison) {
		t.Helper()
		require.InDelta(t, 200e-6, pm.Incumbent.USDPerCase, 1e-12, "two calls of 100 tokens")
		require.InDelta(t, 1.0, pm.CostRatio, 1e-9, "cache hits are priced like calls")
		require.InDelta(t, 1.0, pm.LatencyRatio, 0.25, "cache hits take what their calls took: incumbent %.1f ms, candidate %.1f ms",
			pm.Incumbent.LatencyP50MS, pm.Candidate.LatencyP50MS)
		require.GreaterOrEqual(t, pm.Candidate.LatencyP50MS, float64(2*call/time.Millisecond))
	}

	onlyAnswer := propose(map[string]string{"answer": answerWithNotes("Answer with " + looptest.BarePhrase + ", nothing else.\n\n")})
	before := f.LLM.Count()
	cmp, err := w.Compare(ctx, tenantName, onlyAnswer, nil)
	require.NoError(t, err)
	require.Equal(t, 3*cmp.Decision.N, f.LLM.Count()-before, "the candidate's lookups were all cache hits")
	near(cmp.PerModel[0])
	require.True(t, cmp.Decision.Accept, cmp.Decision.Reason)
	require.Empty(t, cmp.Decision.BoundsBroken)

	both := propose(map[string]string{"lookup": "Question: {{.context.question}}\n",
		"answer": answerWithNotes("Reply with " + looptest.BarePhrase + ".\n\n")})
	before = f.LLM.Count()
	cmp, err = w.Compare(ctx, tenantName, both, nil)
	require.NoError(t, err)
	require.Equal(t, 2*cmp.Decision.N, f.LLM.Count()-before, "no hit for the new candidate, the incumbent's result reused")
	near(cmp.PerModel[0])
	require.Empty(t, cmp.Decision.BoundsBroken, cmp.Decision.Reason)
}

// testRuns are the summaries of the tenant's test runs, oldest first, and
// the number of test runs that never finished.
func testRuns(t *testing.T, f *looptest.Fixture) (sums []*run.Summary, unfinished int) {
	t.Helper()
	store := run.NewStore(filepath.Join(f.Home, "tenants", tenantName, "runs"), true)
	entries, err := os.ReadDir(store.Dir())
	require.NoError(t, err)
	for _, e := range entries {
		m, err := store.Meta(e.Name())
		if err != nil || m.Split != string(dataset.Test) {
			continue
		}
		if sum, err := store.Summary(e.Name()); err == nil {
			sums = append(sums, sum)
		} else {
			unfinished++
		}
	}
	return sums, unfinished
}

// TestHeldOutRunResumesOnlyAsItStarted: a held-out run stopped midway is
// continued by the next attempt only on the same task model and with the
// same repeats; after the operator pins another task model or another
// number of repeats, the next fapo final runs every case afresh instead of
// finishing the old run as the new one.
func TestHeldOutRunResumesOnlyAsItStarted(t *testing.T) {
	for _, tc := range []struct {
		name         string
		before, then string // [acceptance] lines
		repeats      int
		model        string // of the second run's requests
	}{
		{"task model", "task_models = [\"cheap\"]\n", "task_models = [\"strong\"]\n", 1, "strong-model"},
		{"repeats", "", "repeats = 2\n", 2, "gpt-4o-mini"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := looptest.New(t, func(s string) string {
				return withModels(strings.Replace(s, "[acceptance]\n", "[acceptance]\n"+tc.before, 1))
			})
			w := open(t, f)
			ctx, cancel := context.WithCancel(context.Background())
			_, err := w.Final(ctx, loop.FinalRequest{Tenant: tenantName, Progress: func(p run.Progress) {
				if p.Done == 3 {
					cancel()
				}
			}})
			cancel()
			require.ErrorContains(t, err, "did not finish, so the one shot is not used")
			sums, unfinished := testRuns(t, f)
			require.Empty(t, sums)
			require.Equal(t, 1, unfinished)

			editFile(t, filepath.Join(f.TenantDir(), "tenant.toml"), func(s string) string {
				return strings.Replace(s, "[acceptance]\n"+tc.before, "[acceptance]\n"+tc.then, 1)
			})
			pin(t, w)
			before := len(f.LLM.Requests())
			res, err := w.Final(context.Background(), loop.FinalRequest{Tenant: tenantName})
			require.NoError(t, err)
			sum := res.Summary
			require.False(t, sum.Resumed, "a run of another model or repeats is not continued")
			cases := sum.Cases / tc.repeats
			require.Equal(t, tc.repeats, max(sum.Repeats, 1))
			asked := map[string]int{}
			for _, r := range f.LLM.Requests()[before:] {
				asked[r.Chat.Model]++
			}
			require.Len(t, asked, 1, "on the new settings alone: %v", asked)
			// The first repeat of a case the stopped run finished is the
			// same request, answered from the cache; the case still runs.
			require.Equal(t, tc.repeats*cases, asked[tc.model]+sum.Usage.CacheHits, "every case evaluated afresh")
			sums, unfinished = testRuns(t, f)
			require.Len(t, sums, 1)
			require.Equal(t, 1, unfinished, "the old run is left as it was")
		})
	}
}

// TestSessionStatusShowsTheContract: session_status shows the bounds, task
// models and rule, repeats and pass_k the session's contract fixed at its
// start, not what tenant.toml says later.
func TestSessionStatusShowsTheContract(t *testing.T) {
	full := func(s string) string {
		s = twoModels("mean")(s)
		return strings.Replace(s, "[acceptance]\n", "[acceptance]\nmax_cost_ratio = 1.5\nmax_latency_ratio = 2.0\nrepeats = 3\npass_k = 2\n", 1)
	}
	for _, tc := range []struct {
		name string
		edit func(string) string
		want loop.AcceptanceView
	}{
		{"defaults", nil, loop.AcceptanceView{Repeats: 1, Summary: "no cost or latency bound; validation runs once per case on [model]"}},
		{"every key", full, loop.AcceptanceView{MaxCostRatio: 1.5, MaxLatencyRatio: 2, TaskModels: []string{"cheap", "strong"},
			ModelsRule: "mean", Repeats: 3, PassK: 2,
			Summary: "a candidate above 1.5× the incumbent's $ per case is refused; " +
				"a candidate above 2× the incumbent's median latency per case is refused; " +
				"validation runs on task models cheap, strong, and the comparison of per-case means across them decides; " +
				"each validation case is evaluated 3 times and compared by its mean; compare reports pass^2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := looptest.New(t, tc.edit)
			w := open(t, f)
			_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
			require.NoError(t, err)
			st, err := w.SessionStatus(tenantName)
			require.NoError(t, err)
			require.Equal(t, tc.want, st.Acceptance)

			editFile(t, filepath.Join(f.TenantDir(), "tenant.toml"), func(s string) string {
				if strings.Contains(s, "repeats = 3\n") {
					return strings.Replace(s, "repeats = 3\n", "repeats = 5\n", 1)
				}
				return strings.Replace(s, "[acceptance]\n", "[acceptance]\nrepeats = 5\n", 1)
			})
			pin(t, w)
			st, err = w.SessionStatus(tenantName)
			require.NoError(t, err)
			require.Equal(t, tc.want, st.Acceptance, "the contract, not the tenant.toml of now")
		})
	}
}
