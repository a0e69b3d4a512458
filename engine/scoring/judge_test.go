package scoring

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/provider"
)

// modelEnv resolves only the model "judge", like a tenant with one
// [models.judge] block.
func modelEnv(c provider.Client) func(string) (provider.Client, string, error) {
	return func(name string) (provider.Client, string, error) {
		if name != "judge" {
			return nil, "", fmt.Errorf("no [models.%s] block in tenant.toml", name)
		}
		return c, "gpt-judge", nil
	}
}

// scriptedModel is a judge model that must never be called.
func scriptedModel(t *testing.T) func(string) (provider.Client, string, error) {
	return modelEnv(provider.ClientFunc(func(context.Context, provider.Request) (provider.Response, error) {
		t.Error("the model was called")
		return provider.Response{}, errors.New("unexpected call")
	}))
}

// replying is a scripted judge that answers content (or fails with err) and
// records the request.
func replying(content, finish string, err error, got *provider.Request) provider.Client {
	return provider.ClientFunc(func(_ context.Context, req provider.Request) (provider.Response, error) {
		if got != nil {
			*got = req
		}
		if finish == "" {
			finish = "stop"
		}
		return provider.Response{Content: content, FinishReason: finish}, err
	})
}

func TestJudgeScore(t *testing.T) {
	tests := []struct {
		name     string
		content  string
		finish   string
		err      error
		spec     Spec
		expected obj
		want     float64
		reason   string
		wantErr  string
	}{
		{name: "pass", content: `{"score": 85, "reason": "close enough"}`, want: 85, reason: "close enough"},
		{name: "zero", content: `{"score": 0, "reason": "wrong"}`, want: 0, reason: "wrong"},
		{name: "fenced", content: "```json\n{\"score\": 100, \"reason\": \"exact\"}\n```", want: 100, reason: "exact"},
		{name: "not json", content: "I would give it 80.", wantErr: `llm_judge (model judge): case c1: the answer is not the JSON object {"score": 0-100, "reason": "..."}`},
		{name: "trailing text", content: `{"score": 80, "reason": "x"} and more`, wantErr: "text after the JSON object"},
		{name: "missing score", content: `{"reason": "x"}`, wantErr: `the answer has no "score"`},
		{name: "string score", content: `{"score": "80", "reason": "x"}`, wantErr: "is not the JSON object"},
		{name: "above range", content: `{"score": 101.5, "reason": "x"}`, wantErr: "the score 101.5 is outside [0, 100]"},
		{name: "below range", content: `{"score": -1, "reason": "x"}`, wantErr: "the score -1 is outside [0, 100]"},
		{name: "provider error", err: errors.New("429 rate limited"), wantErr: "the model call failed: 429 rate limited"},
		{name: "truncated", content: `{"score": 8`, finish: "length", wantErr: "cut off (finish_reason length); raise max_tokens of [models.judge]"},
		{name: "empty expected", expected: obj{}, wantErr: "case c1: expected is empty"},
		{name: "field missing", spec: Spec{Field: "gold"}, wantErr: "expected.gold is missing"},
		{name: "step missing", spec: Spec{Step: "answer"}, wantErr: `scorer.step "answer"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			spec.Kind, spec.Model, spec.Rubric = "llm_judge", "judge", "Full marks for the right city."
			var req provider.Request
			s, err := New(spec, Env{Model: modelEnv(replying(tt.content, tt.finish, tt.err, &req))})
			require.NoError(t, err)
			c := testCase(obj{"answer": "Paris"})
			if tt.expected != nil {
				c.Expected = tt.expected
			}
			r, err := s.Score(context.Background(), c, Output{Final: "It is Paris."})
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, r.Composite)
			require.Equal(t, map[string]float64{"judge": tt.want}, r.Breakdown)
			require.Equal(t, tt.reason, r.Reason)

			require.Equal(t, "gpt-judge", req.Model)
			require.JSONEq(t, string(judgeSchema), string(req.JSONSchema))
			require.NotNil(t, req.Params.Temperature)
			require.Zero(t, *req.Params.Temperature)
			require.Len(t, req.Messages, 2)
			require.Contains(t, req.Messages[0].Content, "Full marks for the right city.")
			require.Equal(t, "Question:\nq?\n\nExpected answer:\nParis\n\nCandidate output:\nIt is Paris.", req.Messages[1].Content)
		})
	}
}

// TestJudgeKeepsProviderError: a failed judge call wraps the provider's
// error, so that the run classifies a judge server's 5xx or timeout as an
// errored case rather than a score of 0.
func TestJudgeKeepsProviderError(t *testing.T) {
	cause := &provider.APIError{Provider: "openai", Model: "gpt-judge", Status: 502}
	s, err := New(Spec{Kind: "llm_judge", Model: "judge", Rubric: "r"}, Env{Model: modelEnv(replying("", "", cause, nil))})
	require.NoError(t, err)
	_, err = s.Score(context.Background(), testCase(obj{"answer": "Paris"}), Output{Final: "Paris"})
	var api *provider.APIError
	require.ErrorAs(t, err, &api)
	require.Equal(t, 502, api.Status)
	_, err = s.Score(context.Background(), testCase(obj{"answer": "Paris"}), Output{Final: "Paris"})
	require.ErrorContains(t, err, "llm_judge (model judge): case c1: the model call failed: ")
}

func TestJudgePrompt(t *testing.T) {
	var req provider.Request
	env := Env{Model: modelEnv(replying(`{"score": 50, "reason": "half"}`, "", nil, &req))}

	s, err := New(Spec{Kind: "llm_judge", Model: "judge", Rubric: "r"}, env)
	require.NoError(t, err)
	c := testCase(obj{"answer": []any{"NYC", "New York"}})
	_, err = s.Score(context.Background(), c, Output{Final: "nyc"})
	require.NoError(t, err)
	require.Contains(t, req.Messages[1].Content, "Expected answer:\nany of:\n- NYC\n- New York\n")

	// No answer field and no context.question: the judge sees both whole.
	c = testCase(obj{"summary": "short"})
	c.Context = obj{"document": "long text"}
	require.NoError(t, s.Validate(c))
	_, err = s.Score(context.Background(), c, Output{Final: "x"})
	require.NoError(t, err)
	require.Contains(t, req.Messages[1].Content, "Question:\n{\n  \"document\": \"long text\"\n}")
	require.Contains(t, req.Messages[1].Content, "Expected answer:\n{\n  \"summary\": \"short\"\n}")

	// Pipeline-aware: the judge reads a step's output.
	s, err = New(Spec{Kind: "llm_judge", Model: "judge", Rubric: "r", Step: "retrieve"}, env)
	require.NoError(t, err)
	_, err = s.Score(context.Background(), testCase(obj{"answer": "Paris"}), Output{Final: "x", Trace: testTrace()})
	require.NoError(t, err)
	require.Contains(t, req.Messages[1].Content, "Candidate output:\nParis is the capital of France.")
}

func TestJudgeNew(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "rubrics"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rubrics", "city.md"), []byte("Name the city."), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rubrics", "blank.md"), []byte(" \n"), 0o644))
	outside := filepath.Join(t.TempDir(), "secret.md")
	require.NoError(t, os.WriteFile(outside, []byte("x"), 0o644))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "rubrics", "link.md")))

	var req provider.Request
	client := replying(`{"score": 100, "reason": "ok"}`, "", nil, &req)
	tests := []struct {
		name    string
		spec    Spec
		env     Env
		wantErr string
	}{
		{name: "rubric file", spec: Spec{RubricFile: "rubrics/city.md"}, env: Env{Dir: dir, Model: modelEnv(client)}},
		{name: "rubric file missing", spec: Spec{RubricFile: "rubrics/none.md"}, env: Env{Dir: dir, Model: modelEnv(client)}, wantErr: "scorer.rubric_file: open"},
		{name: "rubric file escapes", spec: Spec{RubricFile: "../x.md"}, env: Env{Dir: dir, Model: modelEnv(client)}, wantErr: `scorer.rubric_file: path "../x.md" leaves`},
		{name: "rubric file symlink out", spec: Spec{RubricFile: "rubrics/link.md"}, env: Env{Dir: dir, Model: modelEnv(client)}, wantErr: "resolves outside"},
		{name: "rubric file blank", spec: Spec{RubricFile: "rubrics/blank.md"}, env: Env{Dir: dir, Model: modelEnv(client)}, wantErr: "scorer.rubric: the rubric is empty"},
		{name: "rubric blank", spec: Spec{Rubric: "  "}, env: Env{Model: modelEnv(client)}, wantErr: "scorer.rubric: the rubric is empty"},
		{name: "unknown model", spec: Spec{Rubric: "r", Model: "judg"}, env: Env{Model: modelEnv(client)}, wantErr: "scorer.model: no [models.judg] block in tenant.toml"},
		{name: "no resolver", spec: Spec{Rubric: "r"}, wantErr: `scorer.model: no models are configured to resolve "judge"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := tt.spec
			spec.Kind = "llm_judge"
			if spec.Model == "" {
				spec.Model = "judge"
			}
			s, err := New(spec, tt.env)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			_, err = s.Score(context.Background(), testCase(obj{"answer": "Paris"}), Output{Final: "Paris"})
			require.NoError(t, err)
			require.Contains(t, req.Messages[0].Content, "Name the city.")
		})
	}
}
