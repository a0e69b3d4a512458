package scoring

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/internal/jsontext"
)

// jsonField scores one value of a JSON answer with an inner scorer. Output
// that is not JSON, or lacks the path, scores 0: it is the pipeline's
// failure, not the scorer's, and the breakdown says which one it was.
type jsonField struct {
	step  string
	path  string
	inner Scorer
}

func (j *jsonField) Validate(c dataset.Case) error { return j.inner.Validate(c) }

func (j *jsonField) ValidateBatch(ctx context.Context, cases []dataset.Case) []error {
	return ValidateAll(ctx, j.inner, cases)
}

// selected is the outcome of parsing one output.
type selected struct {
	value     string
	jsonValid bool
	found     bool
}

func (j *jsonField) selectValue(out Output) (selected, error) {
	text, err := outputText(j.step, out)
	if err != nil {
		return selected{}, err
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(jsontext.Unfence(text))))
	dec.UseNumber() // keep numbers as written: "2.50" stays "2.50"
	var v any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return selected{}, nil
	}
	got, err := jsontext.Lookup(v, j.path)
	if err != nil {
		return selected{jsonValid: true}, nil
	}
	s, ok := scalarText(got)
	if !ok {
		b, _ := json.Marshal(got) // a value just decoded always re-encodes
		s = string(b)
	}
	return selected{value: s, jsonValid: true, found: true}, nil
}

func (j *jsonField) Score(ctx context.Context, c dataset.Case, out Output) (Result, error) {
	sel, err := j.selectValue(out)
	if err != nil || !sel.found {
		return j.result(sel, Result{}), err
	}
	r, err := j.inner.Score(ctx, c, Output{Final: sel.value})
	if err != nil {
		return Result{}, err
	}
	return j.result(sel, r), nil
}

func (j *jsonField) ScoreBatch(ctx context.Context, items []Item) []ItemResult {
	out := make([]ItemResult, len(items))
	sels := make([]selected, len(items))
	var inner []Item
	var at []int
	for i, it := range items {
		sel, err := j.selectValue(it.Output)
		sels[i] = sel
		switch {
		case err != nil:
			out[i].Err = err
		case !sel.found:
			out[i].Result = j.result(sel, Result{})
		default:
			inner = append(inner, Item{Case: it.Case, Output: Output{Final: sel.value}})
			at = append(at, i)
		}
	}
	for k, r := range ScoreAll(ctx, j.inner, inner, 0) {
		i := at[k]
		if r.Err != nil {
			out[i].Err = r.Err
			continue
		}
		out[i].Result = j.result(sels[i], r.Result)
	}
	return out
}

func (j *jsonField) result(sel selected, inner Result) Result {
	r := Result{Composite: inner.Composite, Reason: inner.Reason, Breakdown: map[string]float64{
		"json_valid": boolScore(sel.jsonValid),
		"path_found": boolScore(sel.found),
	}}
	for k, v := range inner.Breakdown {
		r.Breakdown[k] = v
	}
	return r
}
