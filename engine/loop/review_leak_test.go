package loop_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/review"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/session"
)

type heldOutPair = looptest.Capital

func heldOutPairs(t *testing.T, f *looptest.Fixture) []heldOutPair {
	pairs := f.HeldOutCapitals(t)
	require.Greater(t, len(pairs), 20)
	return pairs
}

// answerTables are the attacks of issue 12 on the capitals tenant, each a
// prompt for the answer step; every one scores 100 on validation and test
// if it reaches them.
func answerTables(pairs []heldOutPair) map[string]string {
	table := func(line func(p heldOutPair) string) string {
		var b strings.Builder
		b.WriteString("Answer with " + looptest.BarePhrase + ".\n")
		for _, p := range pairs {
			b.WriteString(line(p) + "\n")
		}
		return b.String() + "{{.context.question}}\n"
	}
	half := func(s string) (string, string) { return s[:len(s)/2], s[len(s)/2:] }
	return map[string]string{
		"case-id table": table(func(p heldOutPair) string {
			return fmt.Sprintf("{{if eq .case_id %q}}%s{{end}}", p.ID, p.City)
		}),
		"print-split case-id table": table(func(p heldOutPair) string {
			a, b := half(p.City)
			return fmt.Sprintf("{{if eq .case_id %q}}{{print %q %q}}{{end}}", p.ID, a, b)
		}),
		"input-keyed table": table(func(p heldOutPair) string { return p.Country + ": " + p.City }),
		"literal-split input-keyed table": table(func(p heldOutPair) string {
			a, b := half(p.City)
			return p.Country + ": " + a + `{{""}}` + b
		}),
		"7-word chunks": table(func(p heldOutPair) string { return "Q: capital of " + p.Country + "? A: " + p.City }),
		// Rendered only where it is the case's answer: the prompt shows no
		// table at all, each case sees its own capital and nothing else.
		"answer where it is the answer": table(func(p heldOutPair) string {
			end := len("What is the capital of ") + len(p.Country)
			return fmt.Sprintf("{{if eq (slice .context.question 23 %d) %q}}Hint: %s{{end}}", end, p.Country, p.City)
		}),
	}
}

// TestReviewFailsAnswerTables: every answer table of issue 12 fails review,
// however its strings are assembled; the leakage finding is one coarse
// verdict that quotes nothing.
func TestReviewFailsAnswerTables(t *testing.T) {
	f := looptest.New(t, func(s string) string { return strings.Replace(s, "max_variants = 10", "max_variants = 30", 1) })
	w := open(t, f)
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	pairs := heldOutPairs(t, f)
	tables := answerTables(pairs)
	for _, name := range sortedNames(tables) {
		t.Run(name, func(t *testing.T) {
			before, _ := w.Budget(tenantName)
			prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "reference facts",
				Prompts: map[string]string{"answer": tables[name]}})
			if strings.Contains(name, "case-id") {
				// Refused by the dry run at propose, before anything is
				// written or charged; the message quotes nothing held out.
				require.ErrorContains(t, err, "templates see inputs, not identities")
				require.ErrorContains(t, err, "nothing was written or charged")
				for _, p := range pairs {
					require.NotContains(t, err.Error(), p.ID)
				}
				after, _ := w.Budget(tenantName)
				require.Equal(t, before.Variants, after.Variants)
				return
			}
			require.NoError(t, err)
			rev, err := w.Review(ctx, tenantName, prop.Variant)
			require.NoError(t, err)
			require.False(t, rev.Verdict.Pass, "passed review: %+v", rev.Verdict)
			text := fmt.Sprint(rev.Verdict.Findings)
			for _, p := range pairs {
				require.NotContains(t, text, p.ID)
				require.NotContains(t, text, p.Country)
			}
			if strings.Contains(name, "case-id") {
				require.Contains(t, text, "templates see inputs, not identities")
				return
			}
			require.Contains(t, text, "leak suspected in prompts/answer.md")
			require.True(t, rev.Verdict.LocksSession, "a table of every held-out case locks the session")
			_, err = w.UnlockSession(tenantName, "test: reviewing the next attack")
			require.NoError(t, err)
		})
	}
}

func sortedNames(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestReviewFailsModelFreeChain: a chain whose answer is computed by a
// parse step, without any model, fails review.
func TestReviewFailsModelFreeChain(t *testing.T) {
	f := looptest.New(t, func(s string) string {
		return strings.Replace(s, `levels = ["prompt", "parameter", "structural"]`, `levels = ["structural"]`, 1)
	})
	w := open(t, f)
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "structural", Rationale: "answer by rule",
		ChainTOML: "output = \"answer\"\n\n[[steps]]\nid = \"think\"\nkind = \"llm\"\nprompt = \"prompts/answer.md\"\n\n" +
			"[[steps]]\nid = \"answer\"\nkind = \"parse\"\ninput = \"{{.context.question}}\"\nregex = 'capital of (\\w+)'\n"})
	require.Nil(t, prop)
	require.ErrorContains(t, err, `output step "answer" depends on no model call`)
	require.ErrorContains(t, err, "nothing was written or charged")
}

// TestLeakVerdictIsCoarse: the leakage finding is the same whichever and
// however many of a variant's probe texts are held-out cases, and a
// variant with many hits locks the session until the operator unlocks it.
func TestLeakVerdictIsCoarse(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	verdict := func(probes ...string) review.Verdict {
		prompt := "Answer with " + looptest.BarePhrase + ".\nExamples:\n" + strings.Join(probes, "\n") + "\n{{.context.question}}\n"
		prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "examples",
			Prompts: map[string]string{"answer": prompt}})
		require.NoError(t, err)
		rev, err := w.Review(ctx, tenantName, prop.Variant)
		require.NoError(t, err)
		return rev.Verdict
	}
	one := verdict(f.HeldOutQuestions[0])
	three := verdict(f.HeldOutQuestions[1], f.HeldOutQuestions[2], f.HeldOutQuestions[3])
	require.False(t, one.Pass)
	require.False(t, three.Pass)
	require.Equal(t, one.Findings, three.Findings, "one probe or three: the same words")
	require.Equal(t, one.Checks, three.Checks)
	require.False(t, three.LocksSession)

	many := verdict(f.HeldOutQuestions[4:14]...)
	require.True(t, many.LocksSession)
	require.Equal(t, one.Findings, many.Findings)
	_, err = w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "again",
		Prompts: map[string]string{"answer": betterPrompt}})
	require.ErrorContains(t, err, "the session is locked for the operator")
	r, ok := refusal.Of(err)
	require.True(t, ok)
	require.Equal(t, refusal.Unlock, r.Next)
	_, err = w.Compare(ctx, tenantName, "v0001", nil)
	require.ErrorContains(t, err, "the session is locked for the operator")
	_, err = w.EvaluateValidation(ctx, loop.RunRequest{Tenant: tenantName})
	require.ErrorContains(t, err, "the session is locked for the operator")
	st, err := w.SessionStatus(tenantName)
	require.NoError(t, err)
	require.Contains(t, st.Next[0], "locked for the operator")

	_, err = w.UnlockSession(tenantName, "")
	require.ErrorContains(t, err, "needs a reason")
	_, err = w.UnlockSession(tenantName, "checked v0003: the agent pasted cases; warned it")
	require.NoError(t, err)
	_, err = w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "again",
		Prompts: map[string]string{"answer": betterPrompt}})
	require.NoError(t, err)
}

// TestHeldOutProgressCountsOnly: the engine hands a held-out run's progress
// callback counts only, whoever renders it (the MCP tools, fapo eval).
func TestHeldOutProgressCountsOnly(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "bare answers",
		Prompts: map[string]string{"answer": betterPrompt}})
	require.NoError(t, err)
	_, err = w.Review(ctx, tenantName, prop.Variant)
	require.NoError(t, err)
	var seen []run.Progress
	v, err := w.EvaluateValidation(ctx, loop.RunRequest{Tenant: tenantName, Variant: prop.Variant,
		Progress: func(p run.Progress) { seen = append(seen, p) }})
	require.NoError(t, err)
	require.Equal(t, 100.0, v.ScoreMean, "the run itself scores")
	require.Len(t, seen, v.Cases)
	for _, p := range seen {
		require.Zero(t, p.ScoreMean)
		require.Zero(t, p.Failed)
	}
}

// TestReusableHoldoutCompare: with [acceptance.thresholdout], compare
// answers through the mechanism from the server's train runs, withholds
// the exact validation figures, and validation is reachable only through
// compare.
func TestReusableHoldoutCompare(t *testing.T) {
	f := looptest.New(t, func(s string) string {
		return s + "\n[acceptance.thresholdout]\nthreshold = 4.0\nsigma = 1.0\nbudget = 3\n"
	})
	w := open(t, f)
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	_, err = w.EvaluateValidation(ctx, loop.RunRequest{Tenant: tenantName})
	require.ErrorContains(t, err, "only through comparisons")
	r, ok := refusal.Of(err)
	require.True(t, ok)
	require.Equal(t, refusal.Compare, r.Next)
	prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "bare answers",
		Prompts: map[string]string{"answer": betterPrompt}})
	require.NoError(t, err)
	_, err = w.Review(ctx, tenantName, prop.Variant)
	require.NoError(t, err)
	_, err = w.Compare(ctx, tenantName, prop.Variant, nil)
	require.ErrorContains(t, err, "evaluate v0001 and v0000 on the full train split first")
	for _, v := range []string{"v0000", prop.Variant} {
		_, err = w.EvaluateTrain(ctx, loop.RunRequest{Tenant: tenantName, Variant: v})
		require.NoError(t, err)
	}
	cmp, err := w.Compare(ctx, tenantName, prop.Variant, nil)
	require.NoError(t, err)
	d := cmp.Decision
	require.NotNil(t, d.Reusable)
	require.True(t, d.Accept, d.Reason)
	// Train and validation agree (100 vs 0 on both): the answer is the
	// train value, or, when the noisy threshold fell below 0, a noisy
	// validation value that spent one answer.
	require.InDelta(t, 100, d.Delta, 10)
	require.Equal(t, 1, d.Reusable.Query)
	require.Equal(t, map[bool]int{false: 3, true: 2}[d.Reusable.FromHoldout], d.Reusable.BudgetLeft)
	require.Zero(t, cmp.CandidateScore)
	require.Zero(t, cmp.IncumbentScore)
	require.Zero(t, d.Wins+d.Losses, "the exact validation statistics are withheld")
	require.Zero(t, d.Seed, "the noise's seed is a secret of the sealed store, not reported")
	require.False(t, cmp.TargetMet, "target_met would compare the exact validation mean with the target")
	for _, m := range cmp.PerModel {
		require.Zero(t, m.CandidateScore+m.IncumbentScore+m.CandidatePassK+m.IncumbentPassK, "per-model means are withheld too")
	}
	require.Contains(t, d.Reason, "reusable holdout (Thresholdout)")
	st, err := w.SessionStatus(tenantName)
	require.NoError(t, err)
	for _, a := range st.Validation {
		require.Zero(t, a.Score)
	}
	// The workspace mirror of the journal is the agent's to read.
	mirror, err := os.ReadFile(filepath.Join(f.TenantDir(), session.JournalFile))
	require.NoError(t, err)
	validations := 0
	for _, line := range strings.Split(strings.TrimSpace(string(mirror)), "\n") {
		var e session.Entry
		require.NoError(t, json.Unmarshal([]byte(line), &e))
		if e.Kind == session.KindEvaluated && e.Data["split"] == session.SplitValidation {
			validations++
			require.NotContains(t, e.Data, "value", "the exact validation mean stays in the database")
			require.Equal(t, true, e.Data["value_withheld"])
		}
	}
	require.Positive(t, validations)
}
