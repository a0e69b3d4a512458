package loop_test

import (
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/engine/variant"
)

// TestTicketsSessionReachesTarget: on the two-step tenant, the session
// the next steps describe reaches the target in two proposals: the
// truncation cluster with a parameter change, then the format cluster with
// a prompt change; each next names the cluster to inspect.
func TestTicketsSessionReachesTarget(t *testing.T) {
	f := looptest.NewTickets(t, nil)
	w := open(t, f)
	ctx := context.Background()
	const tn = looptest.Tickets
	st, err := w.StartSession(loop.StartRequest{Tenant: tn})
	require.NoError(t, err)
	require.Contains(t, st.CompareCharges, "charges 2 validation evaluations")

	te, err := w.EvaluateTrain(ctx, loop.RunRequest{Tenant: tn})
	require.NoError(t, err)
	require.Equal(t, "truncation@summarize", te.Attribution.Dominant.Name())
	require.Contains(t, strings.Join(te.Next, ";"), "inspect_cases run "+te.Summary.RunID+" cluster truncation@summarize")
	require.Contains(t, strings.Join(te.Next, ";"), "at level parameter")

	page, err := w.InspectCases(ctx, loop.InspectRequest{Tenant: tn, Run: te.Summary.RunID, Cluster: "truncation@summarize", Limit: 2})
	require.NoError(t, err)
	require.Equal(t, te.Attribution.Dominant.Count, page.Matched)
	page, err = w.InspectCases(ctx, loop.InspectRequest{Tenant: tn, Run: te.Summary.RunID, Step: "summarize", Limit: 20})
	require.NoError(t, err)
	require.Equal(t, te.Attribution.Dominant.Count, page.Matched, "a cut-off step matches step")

	prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tn, Level: "parameter", Rationale: "summaries are cut off",
		TargetCluster: "truncation@summarize", Params: map[string]map[string]any{"summarize": {"max_tokens": 64.0}}})
	require.NoError(t, err)
	require.Contains(t, prop.Diff, "+max_tokens = 64     # short summaries: long tickets get cut off")
	rev, err := w.Review(ctx, tn, prop.Variant)
	require.NoError(t, err)
	require.True(t, rev.Verdict.Pass, "%+v", rev.Verdict.Findings)
	cmp, err := w.Compare(ctx, tn, prop.Variant, nil)
	require.NoError(t, err)
	require.True(t, cmp.Decision.Accept, cmp.Decision.Reason)
	require.Contains(t, cmp.Caution, "paired validation cases")
	require.Contains(t, strings.Join(cmp.Next, ";"), prop.Variant+" is the new incumbent and has no train run yet")

	te, err = w.EvaluateTrain(ctx, loop.RunRequest{Tenant: tn})
	require.NoError(t, err)
	require.Equal(t, "format@classify", te.Attribution.Dominant.Name())
	st, err = w.SessionStatus(tn)
	require.NoError(t, err)
	require.Contains(t, st.OpenLevels, variant.LevelParameter, "a level once open stays open")

	prop, err = w.Propose(ctx, loop.ProposeRequest{Tenant: tn, Level: "prompt", Rationale: "account answers are sentences",
		TargetCluster: "format@classify", Prompts: map[string]string{"classify": strings.Replace(looptest.TicketsClassifyPrompt,
			"Answer with the label.", "Answer with "+looptest.LabelOnlyPhrase+", one word.", 1)}})
	require.NoError(t, err)
	rev, err = w.Review(ctx, tn, prop.Variant)
	require.NoError(t, err)
	require.True(t, rev.Verdict.Pass, "%+v", rev.Verdict.Findings)
	cmp, err = w.Compare(ctx, tn, prop.Variant, nil)
	require.NoError(t, err)
	require.True(t, cmp.Decision.Accept, cmp.Decision.Reason)
	t.Logf("final: %+v next=%v", cmp.Decision, cmp.Next)
	require.True(t, cmp.TargetMet)
	require.Contains(t, strings.Join(cmp.Next, ";"), "stop and report")
}
