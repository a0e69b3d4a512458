package loop_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/internal/keys"
	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/variant"
)

const tenantName = looptest.Tenant

func open(t *testing.T, f *looptest.Fixture) *loop.Workspace {
	t.Helper()
	w, err := loop.Open(f.Dir, loop.Options{Home: f.Home, Getenv: func(string) string { return "" }})
	require.NoError(t, err)
	t.Cleanup(func() { w.Close() })
	return w
}

// countKind counts the tenant's journal entries of kind, as the sealed
// store's database holds them.
func countKind(t *testing.T, w *loop.Workspace, kind session.Kind) int {
	t.Helper()
	entries, err := w.Journal(tenantName, 0)
	require.NoError(t, err)
	n := 0
	for _, e := range entries {
		if e.Kind == kind {
			n++
		}
	}
	return n
}

const betterPrompt = "Answer with " + looptest.BarePhrase + ", nothing else.\n\n{{.context.question}}\n"

// TestOptimizationCycle runs one whole cycle: evaluate train, inspect the
// failures, propose a prompt fix, review it, compare on validation; the
// incumbent moves.
func TestOptimizationCycle(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	ctx := context.Background()

	st, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	require.Equal(t, "v0000", st.Incumbent)
	require.Equal(t, []variant.Level{variant.LevelPrompt}, st.OpenLevels)

	te, err := w.EvaluateTrain(ctx, loop.RunRequest{Tenant: tenantName})
	require.NoError(t, err)
	sum := te.Summary
	require.Equal(t, "train", sum.Split)
	require.NotNil(t, te.Attribution.Dominant)
	require.Equal(t, "format", te.Attribution.Dominant.Class, "the answer is in the output but not scored: format")
	require.Equal(t, variant.Level("prompt"), te.Attribution.RecommendedLevel)

	att, err := w.Attribute(ctx, tenantName, sum.RunID, false)
	require.NoError(t, err)
	require.Equal(t, sum.Cases, att.Failed)
	require.LessOrEqual(t, att.FailuresShown, 40)
	_, err = w.Attribute(ctx, tenantName, sum.RunID, true)
	require.ErrorContains(t, err, "no attribution.analysis_model")
	require.Less(t, sum.ScoreMean, 10.0, "the verbose baseline fails exact match")

	page, err := w.InspectCases(context.Background(), loop.InspectRequest{Tenant: tenantName, Run: sum.RunID, Failed: true, Limit: 3})
	require.NoError(t, err)
	require.Len(t, page.Cases, 3)
	require.Contains(t, page.Cases[0].Final, "The capital of")
	require.NotEmpty(t, page.Cases[0].Steps[0].Prompt)

	prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt",
		Rationale: "answers are full sentences; exact match needs the bare city", TargetCluster: "format @ answer",
		Prompts: map[string]string{"answer": betterPrompt}})
	require.NoError(t, err)
	require.Equal(t, "v0001", prop.Variant)
	require.Contains(t, prop.Diff, "+Answer with only the city name")

	rev, err := w.Review(ctx, tenantName, prop.Variant)
	require.NoError(t, err)
	require.True(t, rev.Verdict.Pass, "%+v", rev.Verdict.Findings)

	cmp, err := w.Compare(ctx, tenantName, prop.Variant, nil)
	require.NoError(t, err)
	require.True(t, cmp.Decision.Accept, cmp.Decision.Reason)
	require.Equal(t, "v0001", cmp.NewIncumbent)
	require.Greater(t, cmp.CandidateScore, 90.0)
	require.Equal(t, 1, cmp.Decision.Comparisons)
	require.Equal(t, 4, cmp.Budget.ValidationEvals, "two validation runs charged of six")
	t.Logf("train %d cases score %.1f; validation %.1f vs %.1f, delta %+.1f, CI [%.1f, %.1f], sign-test p %.2g",
		sum.Cases, sum.ScoreMean, cmp.CandidateScore, cmp.IncumbentScore, cmp.Decision.Delta, cmp.Decision.CILow, cmp.Decision.CIHigh, cmp.Decision.SignTestP)

	st, err = w.SessionStatus(tenantName)
	require.NoError(t, err)
	require.Equal(t, "v0001", st.Incumbent)
	require.True(t, st.TargetMet)

	// The journal shows the accepted variant.
	require.Equal(t, 1, countKind(t, w, session.KindAccepted))
}

func TestValidationRefusedBeforeReview(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "bare answers",
		Prompts: map[string]string{"answer": betterPrompt}})
	require.NoError(t, err)

	_, err = w.EvaluateValidation(ctx, loop.RunRequest{Tenant: tenantName, Variant: prop.Variant})
	require.ErrorContains(t, err, "pending review")
	_, err = w.Compare(ctx, tenantName, prop.Variant, nil)
	require.ErrorContains(t, err, "has not passed review")
	calls := f.LLM.Count()
	require.Zero(t, calls, "nothing ran on validation")
}

func TestFrozenFilesAndLevelRefusedAtPropose(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)

	_, err = w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "x",
		Files: map[string]string{"tenant.toml": "name = 'capitals'"}})
	require.ErrorContains(t, err, `file "tenant.toml" is not part of a variant: a variant holds only chain.toml and prompts/**`)

	// Declaring prompt while changing a parameter is the escalation bypass.
	_, err = w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "longer answers",
		Params: map[string]map[string]any{"answer": {"max_tokens": 64}}})
	require.ErrorContains(t, err, "changes are parameter-level")

	_, err = w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "parameter", Rationale: "longer answers",
		Params: map[string]map[string]any{"answer": {"max_tokens": 64}}})
	require.ErrorContains(t, err, "parameter is locked")
}

// TestPromptFrozenByTheScopeRefusedAtPropose: a session's scope contract
// may freeze a file a variant can hold (here one imported from an earlier
// fapo that froze prompts/answer.md); propose refuses a change to it, by
// the frozen-file check and not by the variant's path rule.
func TestPromptFrozenByTheScopeRefusedAtPropose(t *testing.T) {
	f := looptest.New(t, nil)
	f.BackdateSeal(t, 24*time.Hour) // sealed by the earlier fapo, before the state database
	scope := `{"id":"s0001","tenant":"capitals","target":{"metric":"composite_score","min":95},` +
		`"budget":{"max_variants":10,"max_validation_evals":6,"max_usd":0},"allowed_levels":["prompt"],` +
		`"frozen_files":["tenant.toml","prompts/answer.md"],"patience":3,"acceptance":{"rule":"improves","bootstrap":2000,"seed":7},` +
		`"created":"2025-05-01T10:00:00Z"}`
	journal := `{"seq":1,"time":"2025-05-01T10:00:00Z","kind":"session_started","session":"s0001","data":` + scope + "}\n"
	require.NoError(t, os.MkdirAll(filepath.Join(f.TenantDir(), "sessions", "s0001"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(f.TenantDir(), "sessions", "s0001", "scope.json"), []byte(scope), 0o444))
	require.NoError(t, os.WriteFile(filepath.Join(f.TenantDir(), "journal.jsonl"), []byte(journal), 0o644))
	w := open(t, f)

	_, err := w.Propose(context.Background(), loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "shorter answers",
		Prompts: map[string]string{"answer": "Answer with " + looptest.BarePhrase + ".\n{{.context.question}}\n"}})
	require.EqualError(t, err, "prompts/answer.md is frozen by the session's scope contract ([tenant.toml prompts/answer.md]): a proposal may not change it")
}

func TestStartSessionCannotRaiseBudgetOrRestart(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName, MaxValidationEvals: 500})
	require.ErrorContains(t, err, "exceeds the 6 that tenant.toml grants")

	st, err := w.StartSession(loop.StartRequest{Tenant: tenantName, MaxValidationEvals: 2})
	require.NoError(t, err)
	require.Equal(t, 2, st.Budget.ValidationEvals)
	again, err := w.StartSession(loop.StartRequest{Tenant: tenantName, MaxValidationEvals: 6})
	require.NoError(t, err)
	require.True(t, again.Resumed)
	require.Equal(t, st.Session, again.Session)
	require.Equal(t, 2, again.Budget.ValidationEvals, "a second start_session does not reset the budget")
}

func TestBudgetExhaustionSaysWhatIsLeft(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName, MaxValidationEvals: 1})
	require.NoError(t, err)
	v, err := w.EvaluateValidation(ctx, loop.RunRequest{Tenant: tenantName})
	require.NoError(t, err)
	require.False(t, v.Cached)
	again, err := w.EvaluateValidation(ctx, loop.RunRequest{Tenant: tenantName})
	require.NoError(t, err)
	require.True(t, again.Cached, "repeating costs nothing")

	prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "bare answers",
		Prompts: map[string]string{"answer": betterPrompt}})
	require.NoError(t, err)
	rev, err := w.Review(ctx, tenantName, prop.Variant)
	require.NoError(t, err)
	require.True(t, rev.Verdict.Pass)
	_, err = w.Compare(ctx, tenantName, prop.Variant, nil)
	require.ErrorContains(t, err, "validation budget spent: 1 of 1 evaluations used")
	require.ErrorContains(t, err, "variants")
}

func TestTamperedVariantRefused(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "bare answers",
		Prompts: map[string]string{"answer": betterPrompt}})
	require.NoError(t, err)

	p := filepath.Join(f.TenantDir(), "variants", prop.Variant, "prompts", "answer.md")
	require.NoError(t, os.Chmod(filepath.Dir(p), 0o755))
	require.NoError(t, os.Chmod(p, 0o644))
	require.NoError(t, os.WriteFile(p, []byte("Answer with only the city name. Paris."), 0o644))

	_, err = w.Review(ctx, tenantName, prop.Variant)
	require.ErrorContains(t, err, "immutable")
	require.Equal(t, 1, countKind(t, w, session.KindTampered))
}

func TestFinalOnceUnlessForced(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	ctx := context.Background()
	res, err := w.Final(ctx, loop.FinalRequest{Tenant: tenantName})
	require.NoError(t, err)
	require.Equal(t, "test", res.Summary.Split)
	_, err = w.Final(ctx, loop.FinalRequest{Tenant: tenantName})
	require.ErrorContains(t, err, "already evaluated")
	res, err = w.Final(ctx, loop.FinalRequest{Tenant: tenantName, Force: true})
	require.NoError(t, err)
	require.Equal(t, 1, res.Previous)

	require.Equal(t, 3, countKind(t, w, session.KindFinalRun), "runs and the refusal are journaled")

	_, err = w.EvaluateForOperator(ctx, loop.RunRequest{Tenant: tenantName, Split: dataset.Test})
	r, ok := refusal.Of(err)
	require.True(t, ok, "%v", err)
	require.Equal(t, refusal.RunFinal, r.Next)
}

func TestHeldOutRunsLeaveNoContentAnywhere(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	v, err := w.EvaluateValidation(ctx, loop.RunRequest{Tenant: tenantName})
	require.NoError(t, err)
	b, _ := json.Marshal(v)
	require.Empty(t, f.LeakedMarkers(string(b)))

	// Nothing in the workspace (journal, runs, variants) holds held-out text.
	require.NoError(t, filepath.Walk(f.Dir, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		require.Empty(t, f.LeakedMarkers(string(b)), p)
		return nil
	}))
	// Nor does the sealed store hold it in plaintext.
	require.NoError(t, filepath.Walk(f.Home, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		for _, m := range f.HeldOutMarkers {
			if strings.HasPrefix(m, "MARK-") || strings.HasPrefix(m, "NOTE-") {
				require.NotContains(t, string(b), m, p)
			}
		}
		return nil
	}))
	// Nor does a held-out case log once decrypted with the server's own
	// key: held-out runs are redacted as they are written, so the sealing
	// is not all that keeps their texts.
	key, err := keys.Get(filepath.Join(f.Home, "keys"), tenantName+".runs.key", false)
	require.NoError(t, err)
	sealed, err := run.NewSealedStore(filepath.Join(f.Home, "tenants", tenantName, "runs"), key)
	require.NoError(t, err)
	held := f.HeldOutRuns(t)
	require.NotEmpty(t, held)
	for _, id := range held {
		n := 0
		require.NoError(t, sealed.Cases(id, func(cr run.CaseResult) error {
			n++
			b, err := json.Marshal(cr)
			require.NoError(t, err)
			require.NotContains(t, string(b), "MARK-"+cr.CaseID, id)
			require.NotContains(t, string(b), "NOTE-"+cr.CaseID, id)
			for _, q := range f.HeldOutQuestions {
				require.NotContains(t, string(b), q, id)
			}
			return nil
		}))
		require.Positive(t, n, "run %s has case lines to check", id)
	}
}

// TestEscalationRefusedThenUnlocked: parameter is locked until a prompt
// variant has failed to improve (patience 1 here); then it opens.
func TestEscalationRefusedThenUnlocked(t *testing.T) {
	f := looptest.New(t, func(toml string) string { return strings.Replace(toml, "patience = 3", "patience = 1", 1) })
	w := open(t, f)
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	longer := loop.ProposeRequest{Tenant: tenantName, Level: "parameter", Rationale: "answers may be cut",
		Params: map[string]map[string]any{"answer": {"max_tokens": 64}}}
	_, err = w.Propose(ctx, longer)
	require.ErrorContains(t, err, "parameter is locked")

	// A prompt variant that does not help: still full sentences.
	prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "be polite",
		Prompts: map[string]string{"answer": "Please answer politely.\n\n{{.context.question}}\n"}})
	require.NoError(t, err)
	rev, err := w.Review(ctx, tenantName, prop.Variant)
	require.NoError(t, err)
	require.True(t, rev.Verdict.Pass, "%+v", rev.Verdict.Findings)
	cmp, err := w.Compare(ctx, tenantName, prop.Variant, nil)
	require.NoError(t, err)
	require.False(t, cmp.Decision.Accept)
	require.Equal(t, "v0000", cmp.NewIncumbent, "a rejected compare leaves the incumbent")

	st, err := w.SessionStatus(tenantName)
	require.NoError(t, err)
	require.Contains(t, st.OpenLevels, variant.LevelParameter)
	got, err := w.Propose(ctx, longer)
	require.NoError(t, err)
	require.Equal(t, variant.Level("parameter"), got.Level)
}

// TestStructuralProposal: once the prompt level is exhausted, a structural
// variant (a new chain.toml adding a parse step) passes review and raises
// the score on validation.
func TestStructuralProposal(t *testing.T) {
	f := looptest.New(t, func(toml string) string {
		toml = strings.Replace(toml, "patience = 3", "patience = 1", 1)
		return strings.Replace(toml, `levels = ["prompt", "parameter", "structural"]`, `levels = ["prompt", "structural"]`, 1)
	})
	w := open(t, f)
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)

	// No train run is attributed in this session: the proposal targets
	// no recorded cluster.
	structural := loop.ProposeRequest{Tenant: tenantName, Level: "structural", Rationale: "extract the city from the sentence",
		TargetCluster: "none", ChainTOML: `output = "city"

[[steps]]
id = "answer"
kind = "llm"
prompt = "prompts/answer.md"
[steps.params]
temperature = 0.0
max_tokens = 32

[[steps]]
id = "city"
kind = "parse"
input = "{{.steps.answer.output}}"
regex = ' is (.+?)\.?$'
on_fail = "raw"
`}
	_, err = w.Propose(ctx, structural)
	require.ErrorContains(t, err, "structural is locked")

	prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "be polite",
		Prompts: map[string]string{"answer": "Please answer politely.\n\n{{.context.question}}\n"}})
	require.NoError(t, err)
	_, err = w.Review(ctx, tenantName, prop.Variant)
	require.NoError(t, err)
	cmp, err := w.Compare(ctx, tenantName, prop.Variant, nil)
	require.NoError(t, err)
	require.False(t, cmp.Decision.Accept)

	got, err := w.Propose(ctx, structural)
	require.NoError(t, err)
	rev, err := w.Review(ctx, tenantName, got.Variant)
	require.NoError(t, err)
	require.True(t, rev.Verdict.Pass, "%+v", rev.Verdict.Findings)
	cmp, err = w.Compare(ctx, tenantName, got.Variant, nil)
	require.NoError(t, err)
	require.True(t, cmp.Decision.Accept, cmp.Decision.Reason)
	require.Greater(t, cmp.CandidateScore, 90.0)

	// A structural variant that names an undeclared react tool is refused
	// at propose by its dry run, and costs no variant.
	before, _ := w.Budget(tenantName)
	bad := structural
	bad.ChainTOML = "[[steps]]\nid = \"answer\"\nkind = \"react\"\nprompt = \"prompts/answer.md\"\ntools = [\"shell\"]\n"
	badProp, err := w.Propose(ctx, bad)
	require.Nil(t, badProp)
	require.ErrorContains(t, err, `tool "shell" is not declared`)
	after, _ := w.Budget(tenantName)
	require.Equal(t, before.Variants, after.Variants)
}

// TestInspectPagesStayUnderTheLimit: cases with HotpotQA-sized contexts
// (ten paragraphs of sentences) and long outputs still give pages under
// ~40k characters, whatever limit the agent asks for.
func TestInspectPagesStayUnderTheLimit(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	te, err := w.EvaluateTrain(context.Background(), loop.RunRequest{Tenant: tenantName, Limit: 2})
	require.NoError(t, err)
	runID := te.Summary.RunID

	logPath := filepath.Join(f.TenantDir(), "runs", runID, "cases.jsonl")
	lf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	long := strings.Repeat("a long sentence of supporting text. ", 40)
	for i := range 25 {
		var paragraphs []any
		for p := range 10 {
			paragraphs = append(paragraphs, map[string]any{"title": fmt.Sprintf("Title %d", p),
				"sentences": []any{long, long, long, long}})
		}
		line, err := json.Marshal(map[string]any{
			"case_id": fmt.Sprintf("fat-%02d", i), "composite_score": 0,
			"context":  map[string]any{"question": long, "paragraphs": paragraphs},
			"expected": map[string]any{"answer": "x"},
			"trace": map[string]any{"case_id": fmt.Sprintf("fat-%02d", i), "final": long + long,
				"steps": []any{
					map[string]any{"step_id": "answer", "kind": "llm", "output": long + long + long,
						"messages": []any{map[string]any{"role": "user", "content": long + long + long + long}}},
				}},
		})
		require.NoError(t, err)
		_, err = lf.Write(append(line, '\n'))
		require.NoError(t, err)
	}
	require.NoError(t, lf.Close())
	w.ResealTrainLog(t, tenantName, runID)

	for _, limit := range []int{1, 5, 20} {
		page, err := w.InspectCases(context.Background(), loop.InspectRequest{Tenant: tenantName, Run: runID, Failed: true, Limit: limit})
		require.NoError(t, err)
		b, err := json.Marshal(page)
		require.NoError(t, err)
		require.LessOrEqual(t, len(b), 40000, "limit %d gave %d characters", limit, len(b))
		require.NotEmpty(t, page.Cases)
		require.NotEmpty(t, page.Note, "a shortened or partial page says how to see the rest")
	}
}

// TestDiffVariantsSaysWhenShortened: a diff too long for one answer is cut,
// and says so in its flag as in its last line; a short one is whole.
func TestDiffVariantsSaysWhenShortened(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	long := strings.Repeat("Answer with the city only, and nothing else at all.\n", 1200) // 62 KB
	for _, tt := range []struct {
		prompt    string
		truncated bool
	}{{betterPrompt, false}, {long, true}} {
		prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "x",
			Prompts: map[string]string{"answer": tt.prompt}})
		require.NoError(t, err)
		diff, truncated, err := w.DiffVariants(tenantName, "v0000", prop.Variant)
		require.NoError(t, err)
		require.Equal(t, tt.truncated, truncated)
		require.Equal(t, tt.truncated, strings.Contains(diff, "more characters]"))
	}
}
