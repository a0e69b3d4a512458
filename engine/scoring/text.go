package scoring

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"golang.org/x/text/unicode/norm"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/internal/jsontext"
)

// normalizer rewrites text before comparison; both sides of a comparison go
// through the same chain so that normalization never favours one side.
type normalizer func(string) string

var articleRE = regexp.MustCompile(`(?i)\b(a|an|the)\b`)

var normalizerFuncs = map[string]normalizer{
	"lower": strings.ToLower,
	"strip": strings.TrimSpace,
	"punctuation": func(s string) string {
		return strings.Map(func(r rune) rune {
			// ASCII symbols ($, +, <, ...) count as punctuation, as in
			// SQuAD's string.punctuation; other scripts' symbols stay.
			if unicode.IsPunct(r) || r < unicode.MaxASCII && unicode.IsSymbol(r) {
				return -1
			}
			return r
		}, s)
	},
	"articles":   func(s string) string { return articleRE.ReplaceAllString(s, " ") },
	"whitespace": func(s string) string { return strings.Join(strings.Fields(s), " ") },
	"nfkc":       norm.NFKC.String,
}

// squadNormalizers is the normalization of the SQuAD evaluation script, the
// convention every published token-F1 number assumes.
var squadNormalizers = []string{"lower", "punctuation", "articles", "whitespace"}

// textNormalizer is a compiled normalizer chain.
type textNormalizer []normalizer

func newNormalizer(names []string, defaults []string) textNormalizer {
	if names == nil {
		names = defaults
	}
	n := make(textNormalizer, 0, len(names))
	for _, name := range names {
		if f, ok := normalizerFuncs[name]; ok {
			n = append(n, f)
		}
	}
	return n
}

func (n textNormalizer) apply(s string) string {
	for _, f := range n {
		s = f(s)
	}
	return s
}

// expectedPath strips an optional "expected." prefix: authors write
// "expected.label" for stratification and should not have to remember that
// the scorer's field is relative.
func expectedPath(field, def string) string {
	if field == "" {
		field = def
	}
	return strings.TrimPrefix(field, "expected.")
}

// golds returns the gold answers at field: one for a scalar, each element for
// a list.
func golds(c dataset.Case, field string) ([]string, error) {
	v, err := jsontext.Lookup(map[string]any(c.Expected), field)
	if err != nil || v == nil {
		return nil, fmt.Errorf("case %s: expected.%s is missing; add it to the case or point the scorer's field at the expected value", c.CaseID, field)
	}
	list, isList := v.([]any)
	if !isList {
		list = []any{v}
	}
	if len(list) == 0 {
		return nil, fmt.Errorf("case %s: expected.%s is an empty list; give at least one gold answer", c.CaseID, field)
	}
	out := make([]string, 0, len(list))
	for i, e := range list {
		s, ok := scalarText(e)
		if !ok {
			where := "expected." + field
			if isList {
				where = fmt.Sprintf("%s[%d]", where, i)
			}
			return nil, fmt.Errorf("case %s: %s is %s; a gold answer must be a string, number or boolean", c.CaseID, where, jsontext.Kind(e))
		}
		out = append(out, s)
	}
	return out, nil
}

// scalarText renders a JSON scalar as the text a model would write for it.
func scalarText(v any) (string, bool) {
	switch t := v.(type) {
	case string:
		return t, true
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64), true
	case json.Number:
		return t.String(), true
	case int:
		return strconv.Itoa(t), true
	case int64:
		return strconv.FormatInt(t, 10), true
	case bool:
		return strconv.FormatBool(t), true
	}
	return "", false
}

// outputText is the text a scorer judges: the chain's final output, or the
// output of the step named in the spec.
func outputText(step string, out Output) (string, error) {
	if step == "" {
		return out.Final, nil
	}
	if out.Trace == nil {
		return "", fmt.Errorf("scorer.step %q: the output has no step trace to read; score a chain run, or remove step", step)
	}
	st := out.Trace.Step(step)
	if st == nil {
		ids := make([]string, 0, len(out.Trace.Steps))
		for _, s := range out.Trace.Steps {
			ids = append(ids, s.StepID)
		}
		sort.Strings(ids)
		return "", fmt.Errorf("scorer.step %q: no such step in the trace (steps: %s); fix scorer.step in tenant.toml", step, strings.Join(ids, ", "))
	}
	return st.Output, nil
}

func boolScore(b bool) float64 {
	if b {
		return MaxScore
	}
	return 0
}
