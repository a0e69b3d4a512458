package review

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/engine/variant"
	"github.com/fapo-dev/fapo/prompts"
)

// reviewerOn builds the model reviewer over the HTTP test double through the
// real OpenAI-compatible client.
func reviewerOn(t *testing.T, srv *fakellm.Server, timeout time.Duration) Reviewer {
	t.Helper()
	client, err := provider.New(provider.Spec{Provider: provider.ProviderOpenAICompatible, Name: "reviewer-model", BaseURL: srv.URL(), APIKeyEnv: "FAKE_KEY"},
		provider.Options{Getenv: func(string) string { return "test-key" }})
	require.NoError(t, err)
	r := NewModelReviewer(client, "reviewer-model")
	r.(*ModelReviewer).Timeout = timeout
	return r
}

const (
	passJSON = `{"verdict": "pass",
 "scope": {"ok": true, "reason": "Only prompt text changed."},
 "overfit": {"ok": true, "reason": "General instruction."},
 "leak": {"ok": true, "reason": "No data pasted."},
 "coherence": {"ok": true, "reason": "Addresses the format cluster."}}`
	overfitJSON = `{"verdict": "fail",
 "scope": {"ok": true, "reason": "Prompt only."},
 "overfit": {"ok": false, "reason": "Hard-codes the answer Austin for the Tinted Windows question."},
 "leak": {"ok": true, "reason": "No evaluation data."},
 "coherence": {"ok": true, "reason": "Coherent."}}`
	frozenJSON = `{"verdict": "fail",
 "scope": {"ok": false, "reason": "The diff edits tenant.toml, which the scope contract freezes."},
 "overfit": {"ok": true, "reason": "None."},
 "leak": {"ok": true, "reason": "None."},
 "coherence": {"ok": true, "reason": "Coherent."}}`
)

func sampleInput() ModelInput {
	return ModelInput{Level: variant.LevelPrompt, Rationale: "Answers carry extra words; ask for the bare entity.",
		TargetCluster: "format@answer", Scope: "levels: prompt; frozen: tenant.toml, data/",
		Diff: "--- a/prompts/answer.md\n+++ b/prompts/answer.md\n@@ -1 +1 @@\n-Answer.\n+Answer with the entity only.\n"}
}

func TestModelReviewerVerdicts(t *testing.T) {
	tests := []struct {
		name    string
		reply   fakellm.Reply
		want    ModelVerdict
		wantErr string
	}{
		{name: "pass", reply: fakellm.Reply{Content: passJSON},
			want: ModelVerdict{Pass: true, Reasons: map[string]string{"scope": "Only prompt text changed.", "overfit": "General instruction.", "leak": "No data pasted.", "coherence": "Addresses the format cluster."}}},
		{name: "fenced pass", reply: fakellm.Reply{Content: "```json\n" + passJSON + "\n```"},
			want: ModelVerdict{Pass: true, Reasons: map[string]string{"scope": "Only prompt text changed.", "overfit": "General instruction.", "leak": "No data pasted.", "coherence": "Addresses the format cluster."}}},
		{name: "hard-coded train answer fails overfit", reply: fakellm.Reply{Content: overfitJSON},
			want: ModelVerdict{Pass: false, Failed: []string{"overfit"}, Reasons: map[string]string{"scope": "Prompt only.", "overfit": "Hard-codes the answer Austin for the Tinted Windows question.", "leak": "No evaluation data.", "coherence": "Coherent."}}},
		{name: "touching a frozen file fails scope", reply: fakellm.Reply{Content: frozenJSON},
			want: ModelVerdict{Pass: false, Failed: []string{"scope"}, Reasons: map[string]string{"scope": "The diff edits tenant.toml, which the scope contract freezes.", "overfit": "None.", "leak": "None.", "coherence": "Coherent."}}},
		{name: "pass verdict contradicted by an aspect is a fail",
			reply: fakellm.Reply{Content: strings.Replace(passJSON, `"leak": {"ok": true`, `"leak": {"ok": false`, 1)},
			want:  ModelVerdict{Pass: false, Failed: []string{"leak"}, Reasons: map[string]string{"scope": "Only prompt text changed.", "overfit": "General instruction.", "leak": "No data pasted.", "coherence": "Addresses the format cluster."}}},
		{name: "fail verdict with every aspect ok names the verdict",
			reply: fakellm.Reply{Content: strings.Replace(passJSON, `"verdict": "pass"`, `"verdict": "fail"`, 1)},
			want: ModelVerdict{Pass: false, Failed: []string{"verdict"}, Reasons: map[string]string{"scope": "Only prompt text changed.", "overfit": "General instruction.", "leak": "No data pasted.", "coherence": "Addresses the format cluster.",
				"verdict": "the reviewer answered fail although it judged every aspect ok"}}},
		{name: "bad JSON", reply: fakellm.Reply{Content: "Looks good to me!"}, wantErr: "the answer is not the JSON object asked for"},
		{name: "unknown field", reply: fakellm.Reply{Content: strings.Replace(passJSON, `{"verdict"`, `{"notes": "x", "verdict"`, 1)}, wantErr: `unknown field "notes"`},
		{name: "prose after the object", reply: fakellm.Reply{Content: passJSON + " Hope this helps."}, wantErr: "text follows the JSON object"},
		{name: "empty answer", reply: fakellm.Reply{Content: "  "}, wantErr: "the answer is empty"},
		{name: "missing verdict", reply: fakellm.Reply{Content: `{"scope": {"ok": true, "reason": ""}}`}, wantErr: `"verdict" must be "pass" or "fail"`},
		{name: "unknown verdict", reply: fakellm.Reply{Content: strings.Replace(passJSON, `"pass"`, `"maybe"`, 1)}, wantErr: `"verdict" must be`},
		{name: "missing aspects", reply: fakellm.Reply{Content: `{"verdict": "pass", "scope": {"ok": true, "reason": "x"}, "leak": {"reason": "no ok"}}`},
			wantErr: "aspects not judged (each needs {\"ok\": true|false, \"reason\": ...}): overfit, leak, coherence"},
		{name: "provider error", reply: fakellm.Reply{Fault: fakellm.Status(400)}, wantErr: "reviewer model reviewer-model: "},
		{name: "malformed response body", reply: fakellm.Reply{Fault: fakellm.Malformed()}, wantErr: "reviewer model reviewer-model"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakellm.New(fakellm.WithDefault(func(fakellm.Request) fakellm.Reply { return tt.reply }))
			defer srv.Close()
			v, err := reviewerOn(t, srv, 5*time.Second).Review(context.Background(), sampleInput())
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, v)
		})
	}
}

// TestModelReviewerFreshContext checks that the reviewer sees its own system
// prompt and one user message holding only the proposal, with the verdict
// schema attached.
func TestModelReviewerFreshContext(t *testing.T) {
	srv := fakellm.New(fakellm.WithDefault(func(fakellm.Request) fakellm.Reply { return fakellm.Reply{Content: passJSON} }))
	defer srv.Close()
	_, err := reviewerOn(t, srv, 5*time.Second).Review(context.Background(), sampleInput())
	require.NoError(t, err)
	reqs := srv.Requests()
	require.Len(t, reqs, 1)
	msgs := reqs[0].Chat.Messages
	require.Len(t, msgs, 2)
	require.Equal(t, "system", msgs[0].Role)
	require.Equal(t, prompts.MustText(prompts.Reviewer), msgs[0].Content)
	require.Equal(t, "user", msgs[1].Role)
	in := sampleInput()
	for _, part := range []string{in.Scope, in.Level.String(), in.TargetCluster, in.Rationale, "+Answer with the entity only."} {
		require.Contains(t, msgs[1].Content, part)
	}
	require.Equal(t, RenderModelInput(in), msgs[1].Content)
	require.Contains(t, string(reqs[0].Chat.ResponseFormat), `"verdict"`)
	require.InDelta(t, 0.0, *reqs[0].Chat.Temperature, 1e-9, "deterministic review")
	require.Contains(t, RenderModelInput(ModelInput{}), "(none given)", "empty fields are said to be empty, not left blank")
}

func TestModelReviewerTimeoutFailsReview(t *testing.T) {
	srv := fakellm.New(fakellm.WithDefault(func(fakellm.Request) fakellm.Reply { return fakellm.Reply{Fault: fakellm.Hang()} }))
	defer srv.Close()
	r := reviewerOn(t, srv, 50*time.Millisecond)
	_, err := r.Review(context.Background(), sampleInput())
	require.ErrorContains(t, err, "reviewer model reviewer-model did not answer in time")

	// Through the gate the timeout is a failed review with that reason.
	parent := map[string][]byte{"chain.toml": []byte("[[steps]]\nid = \"a\"\nkind = \"llm\"\nprompt = \"prompts/a.md\"\n"), "prompts/a.md": []byte("Answer.\n")}
	cand := map[string][]byte{"chain.toml": parent["chain.toml"], "prompts/a.md": []byte("Answer with the entity only.\n")}
	v := (&Gate{Reviewer: r}).Review(context.Background(), Input{Level: variant.LevelPrompt, Parent: parent, Candidate: cand, HeldOut: heldOut{}})
	require.False(t, v.Pass)
	require.NotNil(t, v.Model)
	require.Contains(t, v.Model.Error, "did not answer in time")
	require.Contains(t, v.Findings[len(v.Findings)-1].Message, "the model reviewer gave no verdict, so the review fails")
}

func TestModelReviewerThroughGate(t *testing.T) {
	parent := map[string][]byte{"chain.toml": []byte("[[steps]]\nid = \"a\"\nkind = \"llm\"\nprompt = \"prompts/a.md\"\n"), "prompts/a.md": []byte("Answer.\n")}
	cand := map[string][]byte{"chain.toml": parent["chain.toml"], "prompts/a.md": []byte("Answer with the entity only.\n")}
	for _, tt := range []struct {
		reply   string
		pass    bool
		finding string
	}{
		{passJSON, true, ""},
		{overfitJSON, false, "overfit: Hard-codes the answer Austin"},
	} {
		srv := fakellm.New(fakellm.WithDefault(func(fakellm.Request) fakellm.Reply { return fakellm.Reply{Content: tt.reply} }))
		v := (&Gate{Reviewer: reviewerOn(t, srv, 5*time.Second)}).Review(context.Background(), Input{Level: variant.LevelPrompt, Parent: parent, Candidate: cand, HeldOut: heldOut{}})
		srv.Close()
		require.Equal(t, tt.pass, v.Pass, v.Findings)
		if tt.finding != "" {
			require.Contains(t, v.Findings[len(v.Findings)-1].Message, tt.finding)
		}
		// The diff the reviewer saw is the gate's diff.
		require.Contains(t, srv.Requests()[0].Chat.LastUser(), "+Answer with the entity only.")
	}
}
