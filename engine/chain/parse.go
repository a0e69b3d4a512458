package chain

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/fapo-dev/fapo/engine/internal/jsontext"
)

func init() {
	registerKind("parse", &kindSpec{
		keys:        []string{"input", "regex", "json_path", "on_fail"},
		compile:     compileParse,
		views:       func(*step) []string { return []string{"output", "parsed"} },
		run:         runParse,
		placeholder: placeholderParse,
	})
}

var onFailPolicies = []string{"raw", "empty", "error"}

func compileParse(l *loader, s *step) {
	label := s.cfg.ID
	if s.cfg.Input == "" {
		l.problem(label, "input is empty; give the text to parse, e.g. input = \"{{.steps.answer.output}}\"")
	} else {
		l.inlineTemplate(label, s, "input", s.cfg.Input)
	}
	switch {
	case !l.exactlyOne(label, "regex", s.cfg.Regex, "json_path", s.cfg.JSONPath, ""):
	case s.cfg.Regex != "":
		re, err := regexp.Compile(s.cfg.Regex)
		if err != nil {
			l.problem(label, "regex %q: %v", s.cfg.Regex, err)
			break
		}
		s.regex = re
	default:
		for seg := range strings.SplitSeq(s.cfg.JSONPath, ".") {
			if seg == "" {
				l.problem(label, "json_path %q has an empty segment; write a dot path such as \"answer\" or \"items.0.name\"", s.cfg.JSONPath)
				break
			}
		}
	}
	switch s.cfg.OnFail {
	case "", "raw", "empty", "error":
	default:
		l.problem(label, "on_fail = %q; use one of %s", s.cfg.OnFail, strings.Join(onFailPolicies, ", "))
	}
}

func runParse(_ context.Context, x *execution, s *step, st *StepTrace) error {
	in, err := x.render(s, "input")
	if err != nil {
		return err
	}
	st.RawOutput = in
	v, perr := extract(s, in)
	if perr == nil {
		st.Parsed = v
		st.Output = toText(v)
		return nil
	}
	switch s.cfg.OnFail {
	case "raw":
		st.ParseError = perr.Error()
		st.Output, st.Parsed = in, in
	case "empty":
		st.ParseError = perr.Error()
		st.Output, st.Parsed = "", ""
	default:
		return perr
	}
	return nil
}

func placeholderParse(x *execution, s *step, st *StepTrace) error {
	if _, err := x.render(s, "input"); err != nil {
		return err
	}
	st.Output = placeholderOutput(s)
	st.Parsed = st.Output
	return nil
}

func extract(s *step, in string) (any, error) {
	if s.regex != nil {
		return extractRegex(s.regex, in)
	}
	return extractJSONPath(s.cfg.JSONPath, in)
}

// extractRegex returns the group named "value", else the first group, else
// the whole match.
func extractRegex(re *regexp.Regexp, in string) (any, error) {
	m := re.FindStringSubmatch(in)
	if m == nil {
		return nil, fmt.Errorf("regex %q does not match the input", re.String())
	}
	if i := re.SubexpIndex("value"); i > 0 {
		return strings.TrimSpace(m[i]), nil
	}
	if len(m) > 1 {
		return strings.TrimSpace(m[1]), nil
	}
	return strings.TrimSpace(m[0]), nil
}

func extractJSONPath(path, in string) (any, error) {
	v, err := parseJSONText(in)
	if err != nil {
		return nil, err
	}
	out, err := jsontext.Lookup(v, path)
	if err != nil {
		return nil, fmt.Errorf("json_path %q: %w", path, err)
	}
	return out, nil
}

var errNoJSON = errors.New("no JSON object or array found")

// parseJSONText decodes model output that is meant to be JSON, tolerating
// the ```json fences and the chatter around them that models add.
func parseJSONText(text string) (any, error) {
	t := strings.TrimSpace(text)
	if body, ok := jsontext.FirstFence(t); ok {
		t = body
	}
	var v any
	err := json.Unmarshal([]byte(t), &v)
	if err == nil {
		return v, nil
	}
	// Prose around a single object: take the outermost braces.
	if i, j := strings.IndexAny(t, "{["), strings.LastIndexAny(t, "}]"); i >= 0 && j > i {
		if json.Unmarshal([]byte(t[i:j+1]), &v) == nil {
			return v, nil
		}
	}
	if !strings.ContainsAny(t, "{[") {
		return nil, errNoJSON
	}
	return nil, fmt.Errorf("invalid JSON: %w", err)
}
