package scoring

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/internal/fsx"
	"github.com/fapo-dev/fapo/engine/internal/jsontext"
	"github.com/fapo-dev/fapo/engine/provider"
)

// judgeSchema constrains the judge's answer where the provider supports
// structured output; the answer is checked the same way where it does not.
var judgeSchema = json.RawMessage(`{
  "type": "object",
  "properties": {
    "score": {"type": "number", "minimum": 0, "maximum": 100},
    "reason": {"type": "string"}
  },
  "required": ["score", "reason"],
  "additionalProperties": false
}`)

const judgeSystem = `You are a strict, impartial grader of a pipeline's output.
Judge the candidate output against the expected answer by the rubric below.
Answer with one JSON object and nothing else: {"score": <number from 0 to 100>, "reason": "<one or two sentences>"}.

Rubric:
`

// judge asks a model to grade an output by a rubric. A judge that fails to
// answer properly fails the case: a default score would be a made-up number
// that the comparison on validation would then trust.
type judge struct {
	model  string // the [models.NAME] block, for messages
	name   string // the provider's model name
	client provider.Client
	rubric string
	field  string // "" means expected.answer when present, else all of expected
	step   string
}

func newJudge(path string, spec Spec, env Env) (*judge, error) {
	if env.Model == nil {
		return nil, fmt.Errorf("%s.model: no models are configured to resolve %q; add a [models.%s] block to tenant.toml", path, spec.Model, spec.Model)
	}
	client, name, err := env.Model(spec.Model)
	if err != nil {
		return nil, fmt.Errorf("%s.model: %w", path, err)
	}
	rubric := spec.Rubric
	if spec.RubricFile != "" {
		p, err := fsx.Confine(env.Dir, spec.RubricFile)
		if err != nil {
			return nil, fmt.Errorf("%s.rubric_file: %w", path, err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%s.rubric_file: %w", path, err)
		}
		rubric = string(b)
	}
	if strings.TrimSpace(rubric) == "" {
		return nil, fmt.Errorf("%s.rubric: the rubric is empty; write the judging instructions", path)
	}
	return &judge{
		model: spec.Model, name: name, client: client, rubric: rubric,
		field: strings.TrimPrefix(spec.Field, "expected."), step: spec.Step,
	}, nil
}

func (j *judge) Validate(c dataset.Case) error {
	_, err := j.expected(c)
	return err
}

// expected renders the gold side of the prompt.
func (j *judge) expected(c dataset.Case) (string, error) {
	field := j.field
	if field == "" {
		if _, ok := c.Expected["answer"]; !ok {
			if len(c.Expected) == 0 {
				return "", fmt.Errorf("case %s: expected is empty; the judge needs something to compare with", c.CaseID)
			}
			b, err := json.MarshalIndent(c.Expected, "", "  ")
			return string(b), err
		}
		field = "answer"
	}
	gs, err := golds(c, field)
	if err != nil {
		return "", err
	}
	if len(gs) == 1 {
		return gs[0], nil
	}
	return "any of:\n- " + strings.Join(gs, "\n- "), nil
}

// question renders what the pipeline was asked: context.question when the
// case has one, otherwise the whole context.
func question(c dataset.Case) string {
	if q, ok := c.Context["question"].(string); ok {
		return q
	}
	b, err := json.MarshalIndent(c.Context, "", "  ")
	if err != nil {
		return fmt.Sprint(c.Context)
	}
	return string(b)
}

func (j *judge) Score(ctx context.Context, c dataset.Case, out Output) (Result, error) {
	want, err := j.expected(c)
	if err != nil {
		return Result{}, err
	}
	got, err := outputText(j.step, out)
	if err != nil {
		return Result{}, err
	}
	zero := 0.0
	req := provider.Request{
		Model: j.name,
		Messages: []provider.Message{
			{Role: "system", Content: judgeSystem + j.rubric},
			{Role: "user", Content: "Question:\n" + question(c) + "\n\nExpected answer:\n" + want + "\n\nCandidate output:\n" + got},
		},
		Params:     provider.Params{Temperature: &zero},
		JSONSchema: judgeSchema,
	}
	resp, err := j.client.Complete(ctx, req)
	if err != nil {
		// %w: the run tells a judge whose server failed (an errored case,
		// in no mean) from one that scored, by the provider error inside.
		return Result{}, fmt.Errorf("llm_judge (model %s): case %s: the model call failed: %w", j.model, c.CaseID, err)
	}
	if resp.FinishReason == "length" {
		return Result{}, j.errorf(c, "the answer was cut off (finish_reason length); raise max_tokens of [models.%s]", j.model)
	}
	return j.parse(c, resp.Content)
}

func (j *judge) parse(c dataset.Case, content string) (Result, error) {
	var ans struct {
		Score  *float64 `json:"score"`
		Reason string   `json:"reason"`
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(jsontext.Unfence(content))))
	if err := dec.Decode(&ans); err != nil || dec.More() {
		if err == nil {
			err = fmt.Errorf("text after the JSON object")
		}
		return Result{}, j.errorf(c, `the answer is not the JSON object {"score": 0-100, "reason": "..."} (%v); it was %q`, err, head(content, 200))
	}
	switch {
	case ans.Score == nil:
		return Result{}, j.errorf(c, `the answer has no "score"; it was %q`, head(content, 200))
	case !inRange(*ans.Score):
		return Result{}, j.errorf(c, "the score %v is outside [0, %v]", *ans.Score, MaxScore)
	}
	return Result{Composite: *ans.Score, Breakdown: map[string]float64{"judge": *ans.Score}, Reason: ans.Reason}, nil
}

func (j *judge) errorf(c dataset.Case, format string, args ...any) error {
	return fmt.Errorf("llm_judge (model %s): case %s: %s", j.model, c.CaseID, fmt.Sprintf(format, args...))
}
