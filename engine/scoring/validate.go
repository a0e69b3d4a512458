package scoring

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"

	"github.com/fapo-dev/fapo/engine/internal/suggest"
)

// ValidateSpec reports every problem of a [scorer] block, each message
// starting with its key path in tenant.toml (scorer.kind,
// scorer.components[1].weight, ...). It needs nothing outside the spec;
// New additionally resolves the judge model and reads the rubric file.
func ValidateSpec(spec Spec) []error {
	var v specValidator
	v.spec("scorer", spec)
	return v.errs
}

type specValidator struct{ errs []error }

func (v *specValidator) add(path, format string, args ...any) {
	v.errs = append(v.errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

// fieldUse says which kinds read a spec field, so that a field set on a kind
// that ignores it is reported instead of silently doing nothing.
var fieldUse = []struct {
	key   string
	isSet func(Spec) bool
	kinds []string
}{
	{"field", func(s Spec) bool { return s.Field != "" }, []string{"exact_match", "f1", "contains", "regex", "numeric", "label", "llm_judge", "trajectory"}},
	{"step", func(s Spec) bool { return s.Step != "" }, []string{"exact_match", "f1", "contains", "regex", "numeric", "label", "json_field", "command", "llm_judge", "trajectory", "ifeval"}},
	{"normalize", func(s Spec) bool { return len(s.Normalize) > 0 }, []string{"exact_match", "f1", "contains", "regex", "label"}},
	{"pattern", func(s Spec) bool { return s.Pattern != "" }, []string{"regex"}},
	{"tolerance", func(s Spec) bool { return s.Tolerance != 0 }, []string{"numeric"}},
	{"labels", func(s Spec) bool { return len(s.Labels) > 0 }, []string{"label"}},
	{"labels_field", func(s Spec) bool { return s.LabelsField != "" }, []string{"label"}},
	{"path", func(s Spec) bool { return s.Path != "" }, []string{"json_field"}},
	{"inner", func(s Spec) bool { return s.Inner != nil }, []string{"json_field"}},
	{"command", func(s Spec) bool { return len(s.Command) > 0 }, []string{"command"}},
	{"batch", func(s Spec) bool { return s.Batch }, []string{"command"}},
	{"timeout_seconds", func(s Spec) bool { return s.TimeoutSeconds != 0 }, []string{"command"}},
	{"model", func(s Spec) bool { return s.Model != "" }, []string{"llm_judge"}},
	{"rubric", func(s Spec) bool { return s.Rubric != "" }, []string{"llm_judge"}},
	{"rubric_file", func(s Spec) bool { return s.RubricFile != "" }, []string{"llm_judge"}},
	{"components", func(s Spec) bool { return len(s.Components) > 0 }, []string{"composite"}},
	{"order", func(s Spec) bool { return s.Order != "" }, []string{"trajectory"}},
	{"redundancy_penalty", func(s Spec) bool { return s.RedundancyPenalty != 0 }, []string{"trajectory"}},
}

var caseRoots = []string{"context", "expected", "metadata"}

func (v *specValidator) spec(path string, s Spec) {
	switch {
	case s.Kind == "":
		v.add(path+".kind", "missing; set one of %s", strings.Join(Kinds, ", "))
		return
	case !slices.Contains(Kinds, s.Kind):
		v.add(path+".kind", "unknown %q%s", s.Kind, suggest.Hint(s.Kind, Kinds))
		return
	}
	for _, f := range fieldUse {
		if f.isSet(s) && !slices.Contains(f.kinds, s.Kind) {
			v.add(path+"."+f.key, "does not apply to kind %q (it is read by %s); remove it", s.Kind, strings.Join(f.kinds, ", "))
		}
	}
	for i, n := range s.Normalize {
		if _, ok := normalizerFuncs[n]; !ok {
			v.add(fmt.Sprintf("%s.normalize[%d]", path, i), "unknown normalizer %q%s (known: %s)", n, suggest.Hint(n, Normalizers), strings.Join(Normalizers, ", "))
		}
	}
	if strings.HasPrefix(s.Field, ".") || strings.HasSuffix(s.Field, ".") || strings.Contains(s.Field, "..") {
		v.add(path+".field", "%q is not a path; write a dotted path into expected such as \"answer\" or \"a.b\"", s.Field)
	}

	switch s.Kind {
	case "regex":
		if s.Pattern == "" {
			v.add(path+".pattern", "missing; the regex scorer needs a pattern (a named group \"answer\" is compared to the expected field)")
		} else if _, err := regexp.Compile(s.Pattern); err != nil {
			v.add(path+".pattern", "does not compile: %v", err)
		}
	case "numeric":
		if s.Tolerance < 0 || math.IsNaN(s.Tolerance) || math.IsInf(s.Tolerance, 0) {
			v.add(path+".tolerance", "must be a finite number >= 0, got %v", s.Tolerance)
		}
	case "label":
		v.labels(path, s)
	case "json_field":
		if s.Path == "" {
			v.add(path+".path", "missing; name the JSON value to score, e.g. \"answer\" or \"result.items.0\"")
		}
		if s.Inner == nil {
			v.add(path+".inner", "missing; add a [%s.inner] block with the kind that scores the selected value", path)
			break
		}
		if s.Inner.Step != "" {
			v.add(path+".inner.step", "does not apply inside json_field (the inner scorer reads the selected JSON value); set step on %s instead", path)
		}
		v.spec(path+".inner", *s.Inner)
	case "command":
		if len(s.Command) == 0 || s.Command[0] == "" {
			v.add(path+".command", "empty; give the executable and its arguments, e.g. [\"python3\", \"score.py\"]")
		}
		if s.TimeoutSeconds < 0 || math.IsNaN(s.TimeoutSeconds) || math.IsInf(s.TimeoutSeconds, 0) {
			v.add(path+".timeout_seconds", "must be a finite number > 0 (0 means the default %v), got %v", defaultCommandTimeout.Seconds(), s.TimeoutSeconds)
		}
	case "llm_judge":
		if s.Model == "" {
			v.add(path+".model", "missing; name a [models.NAME] block of tenant.toml to judge with")
		}
		switch {
		case s.Rubric == "" && s.RubricFile == "":
			v.add(path+".rubric", "missing; set rubric (the judging instructions) or rubric_file (a file in the tenant)")
		case s.Rubric != "" && s.RubricFile != "":
			v.add(path+".rubric_file", "set either rubric or rubric_file, not both")
		}
	case "composite":
		v.composite(path, s)
	case "trajectory":
		if s.Order != "" && !slices.Contains(trajectoryOrders, s.Order) {
			v.add(path+".order", "unknown %q; use one of %s", s.Order, strings.Join(trajectoryOrders, ", "))
		}
		if p := s.RedundancyPenalty; p < 0 || p > MaxScore || math.IsNaN(p) {
			v.add(path+".redundancy_penalty", "must be between 0 and %v points per repeated call, got %v", MaxScore, p)
		}
	}
}

func (v *specValidator) labels(path string, s Spec) {
	switch {
	case len(s.Labels) == 0 && s.LabelsField == "":
		v.add(path+".labels", "missing; list the allowed labels, or set labels_field to a case field holding them (e.g. \"context.labels\")")
	case len(s.Labels) > 0 && s.LabelsField != "":
		v.add(path+".labels_field", "set either labels or labels_field, not both")
	}
	if s.LabelsField != "" {
		root, _, _ := strings.Cut(s.LabelsField, ".")
		if !slices.Contains(caseRoots, root) || !strings.Contains(s.LabelsField, ".") {
			v.add(path+".labels_field", "%q must start with context., expected. or metadata.", s.LabelsField)
		}
	}
	norm := newNormalizer(s.Normalize, labelNormalizers)
	seen := map[string]int{}
	for i, l := range s.Labels {
		key := norm.apply(l)
		if key == "" {
			v.add(fmt.Sprintf("%s.labels[%d]", path, i), "empty label")
			continue
		}
		if j, dup := seen[key]; dup {
			v.add(fmt.Sprintf("%s.labels[%d]", path, i), "%q is the same label as labels[%d] after normalization", l, j)
			continue
		}
		seen[key] = i
	}
}

func (v *specValidator) composite(path string, s Spec) {
	if len(s.Components) == 0 {
		v.add(path+".components", "missing; add [[%s.components]] blocks with name, weight and a [%s.components.scorer]", path, path)
		return
	}
	seen := map[string]int{}
	for i, c := range s.Components {
		cp := fmt.Sprintf("%s.components[%d]", path, i)
		switch j, dup := seen[c.Name]; {
		case c.Name == "":
			v.add(cp+".name", "missing; the name keys this component's score in the breakdown")
		case strings.Contains(c.Name, "."):
			v.add(cp+".name", "%q contains a dot, which separates nested breakdown keys; use _ or -", c.Name)
		case dup:
			v.add(cp+".name", "%q is already the name of components[%d]", c.Name, j)
		default:
			seen[c.Name] = i
		}
		if !(c.Weight > 0) || math.IsInf(c.Weight, 0) {
			v.add(cp+".weight", "must be > 0, got %v", c.Weight)
		}
		v.spec(cp+".scorer", c.Spec)
	}
}
