package attribution

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/prompts"
)

func analysisClient(t *testing.T, reply fakellm.Reply) (provider.Client, *fakellm.Server) {
	t.Helper()
	srv := fakellm.New(fakellm.WithDefault(func(fakellm.Request) fakellm.Reply { return reply }))
	t.Cleanup(srv.Close)
	c, err := provider.New(provider.Spec{Provider: provider.ProviderOpenAICompatible, Name: "analyst", BaseURL: srv.URL(), APIKeyEnv: "K"},
		provider.Options{Getenv: func(string) string { return "k" }})
	require.NoError(t, err)
	return provider.WithTimeout(c, 2*time.Second), srv
}

func summaries() []CaseSummary {
	return []CaseSummary{
		{CaseID: "c1", Step: "answer", Input: "Who directed X?", Output: "Y's studio", Expected: "Z"},
		{CaseID: "c2", Step: "answer", Input: "Where was A born?", Output: "B", Expected: "C"},
		{CaseID: "c3", Step: "answer", Input: "How old?", Output: "In 1990", Expected: "31"},
	}
}

func TestAnalyze(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    *Analysis
		wantErr string
	}{
		{name: "patterns over known cases",
			content: `{"patterns": [{"name": "bridge entity", "description": "answers the bridge", "case_ids": ["c1", "c2", "c1"], "suggested_fix": "name the final entity"}]}`,
			want: &Analysis{Patterns: []Pattern{{Name: "bridge entity", Description: "answers the bridge", CaseIDs: []string{"c1", "c2"}, SuggestedFix: "name the final entity"}},
				Unassigned: []string{"c3"}}},
		{name: "invented ids are removed and reported",
			content: "```json\n" + `{"patterns": [
 {"name": "units", "description": "d", "case_ids": ["c3", "c99"], "suggested_fix": "f"},
 {"name": "ghost", "description": "d", "case_ids": ["x1"], "suggested_fix": "f"},
 {"name": "empty", "description": "d", "case_ids": [], "suggested_fix": "f"},
 {"name": " ", "description": "d", "case_ids": ["c1"], "suggested_fix": "f"}]}` + "\n```",
			want: &Analysis{Patterns: []Pattern{{Name: "units", Description: "d", CaseIDs: []string{"c3"}, SuggestedFix: "f"}},
				Dropped: []string{`units: removed case ids not in the input ("c99")`, `ghost: dropped, it names no case of the input ("x1")`,
					"empty: dropped, it lists no case ids", "pattern #4: dropped, it has no name"},
				Unassigned: []string{"c1", "c2"}}},
		{name: "no patterns is an answer", content: `{"patterns": []}`,
			want: &Analysis{Patterns: []Pattern{}, Unassigned: []string{"c1", "c2", "c3"}}},
		{name: "prose", content: "The failures are mostly about dates.", wantErr: "the answer is not the JSON the analysis prompt asks for"},
		{name: "unknown field", content: `{"patterns": [], "summary": "x"}`, wantErr: `unknown field "summary"`},
		{name: "trailing text", content: `{"patterns": []} done`, wantErr: "text follows the JSON object"},
		{name: "missing patterns", content: `{}`, wantErr: `the answer has no "patterns" list`},
		{name: "empty", content: "", wantErr: "the answer is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, srv := analysisClient(t, fakellm.Reply{Content: tt.content, PromptTokens: 100, CompletionTokens: 20})
			got, err := Analyze(context.Background(), client, "analyst", summaries())
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				require.Nil(t, got)
				return
			}
			require.NoError(t, err)
			tt.want.Usage = provider.Usage{PromptTokens: 100, CompletionTokens: 20}
			tt.want.Analyzed, tt.want.Failures = 3, 3
			require.Equal(t, tt.want, got)

			req := srv.Requests()[0].Chat
			require.Equal(t, prompts.MustText(prompts.Analysis), req.Messages[0].Content)
			require.Contains(t, req.LastUser(), "case_id: c2\nstep: answer\ninput: Where was A born?\noutput: B\nexpected: C")
			require.Contains(t, string(req.ResponseFormat), "case_ids")
		})
	}
}

// TestAnalyzeIsBounded: a run with more reasoning failures than one call
// should read is analyzed on its first maxAnalyzed, and says so; an answer
// with more patterns than maxPatterns keeps the first; no list the agent
// receives grows with the run.
func TestAnalyzeIsBounded(t *testing.T) {
	var many []CaseSummary
	for i := range 3 * maxAnalyzed {
		many = append(many, CaseSummary{CaseID: fmt.Sprintf("c%03d", i), Step: "answer", Input: "q", Output: "o", Expected: "e"})
	}
	var patterns []string
	for i := range 3 * maxPatterns {
		patterns = append(patterns, fmt.Sprintf(`{"name": "p%d", "description": "d", "case_ids": ["c%03d", "c%03d"], "suggested_fix": "f"}`, i, i, 2*maxAnalyzed+i))
	}
	client, srv := analysisClient(t, fakellm.Reply{Content: `{"patterns": [` + strings.Join(patterns, ",") + `]}`})
	got, err := Analyze(context.Background(), client, "analyst", many)
	require.NoError(t, err)
	require.Equal(t, maxAnalyzed, got.Analyzed)
	require.Equal(t, 3*maxAnalyzed, got.Failures)
	require.Len(t, got.Patterns, maxPatterns)
	require.Len(t, got.Unassigned, maxAnalyzed-maxPatterns, "only the analyzed cases")
	require.LessOrEqual(t, len(got.Dropped), maxPatterns+1)
	require.Contains(t, got.Dropped[0], "patterns past the first 20: dropped")
	last := srv.Requests()[0].Chat.LastUser()
	require.Contains(t, last, fmt.Sprintf("case_id: c%03d\n", maxAnalyzed-1))
	require.NotContains(t, last, fmt.Sprintf("case_id: c%03d\n", maxAnalyzed))
}

func TestAnalyzeErrors(t *testing.T) {
	_, err := Analyze(context.Background(), nil, "analyst", nil)
	require.ErrorContains(t, err, "no failures to analyze")

	client, _ := analysisClient(t, fakellm.Reply{Fault: fakellm.ServerError()})
	_, err = Analyze(context.Background(), client, "analyst", summaries())
	require.ErrorContains(t, err, "failure analysis by model analyst: ")
	require.ErrorContains(t, err, "500")
}

func TestSummaries(t *testing.T) {
	wrong := edit(goodTrace("w"), failWith("Dallas", 0))
	fmtFail := edit(goodTrace("f"), failWith("The answer is Austin", 50))
	results := []run.CaseResult{goodTrace("ok"), wrong, fmtFail}
	rep := Attribute(results, testSteps(), Options{})
	got := Summaries(results, rep, Options{})
	require.Equal(t, []CaseSummary{{CaseID: "w", Step: "answer", Input: "Facts: Their first show was in Austin.", Output: "Answer: Dallas", Expected: "Austin"}}, got,
		"only reasoning failures, with the root step's input and output")
}
