package chain

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/fapo-dev/fapo/engine/internal/suggest"
)

// A branch step routes a case around later steps on a value an earlier step
// produced:
//
//	[[steps]]
//	id = "route"
//	kind = "branch"
//	input = "{{.steps.classify.output}}"
//	else_skip = ["quick"]          # skipped when no condition holds
//	[[steps.when]]
//	equals = "math"                # or contains = "...", or matches = 'regex'
//	skip = ["lookup"]              # later steps not run for this case
//
// Conditions are tried in order and the first that holds wins; equals and
// contains ignore case and surrounding whitespace, matches is a Go regexp on
// the raw value. Skipped steps appear in the trace with Skipped set and
// publish an empty output, so a later template can test them with {{if}}.
// The branch's own output names the route taken: "when[0]", "when[1]", ...
// or "else". Steps can only be skipped, never repeated, so a branch cannot
// make a chain loop.
func init() {
	registerKind("branch", &kindSpec{
		keys:        []string{"input", "when", "else_skip"},
		compile:     compileBranch,
		views:       func(*step) []string { return []string{"output"} },
		run:         runBranch,
		placeholder: placeholderBranch,
	})
}

// whenConfig is one [[steps.when]] table of a branch step.
type whenConfig struct {
	Equals   string   `toml:"equals" json:"equals,omitempty"`
	Contains string   `toml:"contains" json:"contains,omitempty"`
	Matches  string   `toml:"matches" json:"matches,omitempty"`
	Skip     []string `toml:"skip" json:"skip,omitempty"`
}

type branchRule struct {
	cfg whenConfig
	re  *regexp.Regexp
}

func compileBranch(l *loader, s *step) {
	label := s.cfg.ID
	if s.cfg.Input == "" {
		l.problem(label, "input is empty; give the value to branch on, e.g. input = \"{{.steps.classify.output}}\"")
	} else {
		l.inlineTemplate(label, s, "input", s.cfg.Input)
	}
	if len(s.cfg.When) == 0 {
		l.problem(label, "no [[steps.when]] conditions; add at least one with equals, contains or matches and the steps to skip")
	}
	rules := make([]branchRule, 0, len(s.cfg.When))
	for i, w := range s.cfg.When {
		key := fmt.Sprintf("when[%d]", i)
		set := 0
		for _, v := range []string{w.Equals, w.Contains, w.Matches} {
			if v != "" {
				set++
			}
		}
		if set != 1 {
			l.problem(label, "%s: set exactly one of equals, contains or matches", key)
		}
		r := branchRule{cfg: w}
		if w.Matches != "" {
			re, err := regexp.Compile(w.Matches)
			if err != nil {
				l.problem(label, "%s.matches %q: %v", key, w.Matches, err)
			}
			r.re = re
		}
		if len(w.Skip) == 0 {
			l.problem(label, "%s.skip is empty; list the later steps this condition routes around", key)
		}
		l.laterSteps(label, s, key+".skip", w.Skip)
		rules = append(rules, r)
	}
	l.laterSteps(label, s, "else_skip", s.cfg.ElseSkip)
	s.ext = rules
}

// laterSteps checks that every id names a step after s: a branch may only
// route around steps that have not run yet.
func (l *loader) laterSteps(label string, s *step, key string, ids []string) {
	self := l.ids[s.cfg.ID]
	all := slices.Sorted(maps.Keys(l.ids))
	for _, id := range ids {
		j, ok := l.ids[id]
		switch {
		case !ok:
			l.problem(label, "%s names no step %q%s", key, id, suggest.Hint(id, all))
		case j <= self:
			l.problem(label, "%s names step %q, which runs before the branch; only later steps can be skipped", key, id)
		}
	}
}

func (r branchRule) holds(v string) bool {
	switch {
	case r.re != nil:
		return r.re.MatchString(v)
	case r.cfg.Equals != "":
		return strings.EqualFold(strings.TrimSpace(v), strings.TrimSpace(r.cfg.Equals))
	default:
		return strings.Contains(strings.ToLower(v), strings.ToLower(strings.TrimSpace(r.cfg.Contains)))
	}
}

func runBranch(_ context.Context, x *execution, s *step, st *StepTrace) error {
	v, err := x.render(s, "input")
	if err != nil {
		return err
	}
	st.RawOutput = v
	rules, _ := s.ext.([]branchRule)
	skip, route := s.cfg.ElseSkip, "else"
	for i, r := range rules {
		if r.holds(v) {
			skip, route = r.cfg.Skip, fmt.Sprintf("when[%d]", i)
			break
		}
	}
	if len(skip) > 0 && x.skip == nil {
		x.skip = map[string]bool{}
	}
	for _, id := range skip {
		x.skip[id] = true
	}
	st.Output = route
	return nil
}

func placeholderBranch(x *execution, s *step, st *StepTrace) error {
	_, err := x.render(s, "input")
	st.Output = "else"
	return err
}
