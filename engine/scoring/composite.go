package scoring

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/fapo-dev/fapo/engine/dataset"
)

// composite is a weighted sum of named scorers, e.g. answer correctness plus
// a format check, or a final-answer score plus a retrieval-step score.
type composite struct {
	parts []part
	total float64
}

type part struct {
	name   string
	weight float64
	s      Scorer
}

func newComposite(path string, spec Spec, env Env) (*composite, error) {
	c := &composite{}
	for i, comp := range spec.Components {
		s, err := build(fmt.Sprintf("%s.components[%d].scorer", path, i), comp.Spec, env)
		if err != nil {
			return nil, err
		}
		c.parts = append(c.parts, part{name: comp.Name, weight: comp.Weight, s: s})
		c.total += comp.Weight
	}
	return c, nil
}

func (c *composite) Validate(dc dataset.Case) error {
	var errs []error
	for _, p := range c.parts {
		if err := p.s.Validate(dc); err != nil {
			errs = append(errs, fmt.Errorf("component %s: %w", p.name, err))
		}
	}
	return errors.Join(errs...)
}

func (c *composite) ValidateBatch(ctx context.Context, cases []dataset.Case) []error {
	per := make([][]error, len(cases))
	for _, p := range c.parts {
		for i, err := range ValidateAll(ctx, p.s, cases) {
			if err != nil {
				per[i] = append(per[i], fmt.Errorf("component %s: %w", p.name, err))
			}
		}
	}
	out := make([]error, len(cases))
	for i, errs := range per {
		out[i] = errors.Join(errs...)
	}
	return out
}

func (c *composite) Score(ctx context.Context, dc dataset.Case, out Output) (Result, error) {
	results := make([]Result, len(c.parts))
	for i, p := range c.parts {
		r, err := p.s.Score(ctx, dc, out)
		if err == nil {
			err = CheckResult(r)
		}
		if err != nil {
			return Result{}, fmt.Errorf("component %s: %w", p.name, err)
		}
		results[i] = r
	}
	return c.combine(results), nil
}

// ScoreBatch lets a batching component (a command scorer) see the whole
// batch instead of one case at a time.
func (c *composite) ScoreBatch(ctx context.Context, items []Item) []ItemResult {
	per := make([][]ItemResult, len(c.parts))
	for j, p := range c.parts {
		per[j] = ScoreAll(ctx, p.s, items, 0)
	}
	out := make([]ItemResult, len(items))
	for i := range items {
		results := make([]Result, len(c.parts))
		for j, p := range c.parts {
			if err := per[j][i].Err; err != nil {
				out[i].Err = fmt.Errorf("component %s: %w", p.name, err)
				break
			}
			results[j] = per[j][i].Result
		}
		if out[i].Err == nil {
			out[i].Result = c.combine(results)
		}
	}
	return out
}

func (c *composite) combine(results []Result) Result {
	r := Result{Breakdown: map[string]float64{}}
	var reasons []string
	for j, p := range c.parts {
		pr := results[j]
		r.Composite += pr.Composite * p.weight / c.total
		r.Breakdown[p.name] = pr.Composite
		for k, v := range pr.Breakdown {
			r.Breakdown[p.name+"."+k] = v
		}
		if pr.Reason != "" {
			reasons = append(reasons, p.name+": "+pr.Reason)
		}
	}
	// Rounding of the weighted sum may overshoot by an ulp; that is not a
	// scorer bug worth failing a case for.
	r.Composite = min(r.Composite, MaxScore)
	r.Reason = strings.Join(reasons, "\n")
	return r
}
