package scoring

import (
	"errors"
	"fmt"
	"regexp"

	"github.com/fapo-dev/fapo/engine/provider"
)

// Env is what a scorer may need from its tenant.
type Env struct {
	// Dir is the tenant directory: the working directory of a command
	// scorer and the base of rubric_file.
	Dir string
	// Model resolves a [models.NAME] block to a client and the provider's
	// model name; only llm_judge calls it.
	Model func(name string) (provider.Client, string, error)
}

// New builds the scorer a spec describes. It reports every spec problem at
// once (see ValidateSpec), then what only the environment can tell: an
// unknown judge model, an unreadable rubric file.
func New(spec Spec, env Env) (Scorer, error) {
	if errs := ValidateSpec(spec); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return build("scorer", spec, env)
}

// build assumes a valid spec; path is the key path used in messages.
func build(path string, spec Spec, env Env) (Scorer, error) {
	switch spec.Kind {
	case "exact_match":
		return &exactMatch{textScorer: newTextScorer(spec, "answer", []string{"strip"})}, nil
	case "f1":
		return &tokenF1{textScorer: newTextScorer(spec, "answer", squadNormalizers)}, nil
	case "contains":
		return &containsScorer{textScorer: newTextScorer(spec, "answer", []string{"strip"})}, nil
	case "regex":
		re := regexp.MustCompile(spec.Pattern) // ValidateSpec compiled it
		return &regexScorer{textScorer: newTextScorer(spec, "answer", []string{"strip"}), re: re, group: re.SubexpIndex("answer")}, nil
	case "numeric":
		return &numericScorer{textScorer: newTextScorer(spec, "answer", nil), tolerance: spec.Tolerance}, nil
	case "label":
		return newLabelScorer(spec), nil
	case "json_field":
		inner, err := build(path+".inner", *spec.Inner, env)
		if err != nil {
			return nil, err
		}
		return &jsonField{step: spec.Step, path: spec.Path, inner: inner}, nil
	case "command":
		return newCommandScorer(spec, env), nil
	case "llm_judge":
		return newJudge(path, spec, env)
	case "composite":
		return newComposite(path, spec, env)
	case "trajectory":
		return newTrajectory(spec), nil
	case "ifeval":
		return &ifevalScorer{step: spec.Step}, nil
	}
	return nil, fmt.Errorf("%s.kind: unknown %q", path, spec.Kind)
}
