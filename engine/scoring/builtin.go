package scoring

import (
	"context"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/internal/jsontext"
)

// labelNormalizers default to case-insensitive matching: a classifier that
// answers "Billing" for "billing" has the label right.
var labelNormalizers = []string{"strip", "lower"}

// textScorer is what the text-comparing built-ins share: which expected field
// holds the gold answers, which output is judged, how both are normalized.
type textScorer struct {
	field string
	step  string
	norm  textNormalizer
}

func newTextScorer(spec Spec, defField string, defNorm []string) textScorer {
	return textScorer{
		field: expectedPath(spec.Field, defField),
		step:  spec.Step,
		norm:  newNormalizer(spec.Normalize, defNorm),
	}
}

func (t textScorer) Validate(c dataset.Case) error {
	_, err := golds(c, t.field)
	return err
}

// inputs returns the normalized output and gold answers of one case.
func (t textScorer) inputs(c dataset.Case, out Output) (string, []string, error) {
	gs, err := golds(c, t.field)
	if err != nil {
		return "", nil, err
	}
	text, err := outputText(t.step, out)
	if err != nil {
		return "", nil, err
	}
	for i := range gs {
		gs[i] = t.norm.apply(gs[i])
	}
	return t.norm.apply(text), gs, nil
}

// exactMatch gives full marks when the normalized output equals any gold.
type exactMatch struct{ textScorer }

func (s *exactMatch) Score(_ context.Context, c dataset.Case, out Output) (Result, error) {
	got, gs, err := s.inputs(c, out)
	if err != nil {
		return Result{}, err
	}
	hit := false
	for _, g := range gs {
		hit = hit || got == g
	}
	return Result{Composite: boolScore(hit), Breakdown: map[string]float64{"exact_match": boolScore(hit)}}, nil
}

// tokenF1 is the SQuAD token overlap F1, best over the gold answers.
type tokenF1 struct{ textScorer }

func (s *tokenF1) Score(_ context.Context, c dataset.Case, out Output) (Result, error) {
	got, gs, err := s.inputs(c, out)
	if err != nil {
		return Result{}, err
	}
	pred := strings.Fields(got)
	var best [3]float64 // precision, recall, f1
	for i, g := range gs {
		p, r, f := tokenOverlap(pred, strings.Fields(g))
		if i == 0 || f > best[2] {
			best = [3]float64{p, r, f}
		}
	}
	return Result{
		Composite: best[2] * MaxScore,
		Breakdown: map[string]float64{"precision": best[0] * MaxScore, "recall": best[1] * MaxScore, "f1": best[2] * MaxScore},
	}, nil
}

func tokenOverlap(pred, gold []string) (precision, recall, f1 float64) {
	if len(pred) == 0 || len(gold) == 0 {
		// SQuAD: two empty answers agree (an unanswerable question answered
		// as such); one empty answer shares nothing with the other.
		if len(pred) == len(gold) {
			return 1, 1, 1
		}
		return 0, 0, 0
	}
	counts := make(map[string]int, len(gold))
	for _, t := range gold {
		counts[t]++
	}
	common := 0
	for _, t := range pred {
		if counts[t] > 0 {
			counts[t]--
			common++
		}
	}
	if common == 0 {
		return 0, 0, 0
	}
	precision = float64(common) / float64(len(pred))
	recall = float64(common) / float64(len(gold))
	return precision, recall, 2 * precision * recall / (precision + recall)
}

// containsScorer gives full marks when the output contains any gold.
type containsScorer struct{ textScorer }

func (s *containsScorer) Validate(c dataset.Case) error {
	gs, err := golds(c, s.field)
	if err != nil {
		return err
	}
	for _, g := range gs {
		if s.norm.apply(g) == "" {
			// Every output contains the empty string: the case would score
			// full marks whatever the pipeline does.
			return fmt.Errorf("case %s: expected.%s is empty after normalization; the contains scorer would pass any output", c.CaseID, s.field)
		}
	}
	return nil
}

func (s *containsScorer) Score(_ context.Context, c dataset.Case, out Output) (Result, error) {
	if err := s.Validate(c); err != nil {
		return Result{}, err
	}
	got, gs, err := s.inputs(c, out)
	if err != nil {
		return Result{}, err
	}
	hit := false
	for _, g := range gs {
		hit = hit || strings.Contains(got, g)
	}
	return Result{Composite: boolScore(hit), Breakdown: map[string]float64{"contains": boolScore(hit)}}, nil
}

// regexScorer matches the raw output (normalizers could remove what the
// pattern anchors on); a named group "answer" is then normalized and compared
// to the gold answers.
type regexScorer struct {
	textScorer
	re    *regexp.Regexp
	group int // index of the "answer" group, -1 when absent
}

func (s *regexScorer) Validate(c dataset.Case) error {
	if s.group < 0 {
		return nil // a match alone decides; no gold answer needed
	}
	return s.textScorer.Validate(c)
}

func (s *regexScorer) Score(_ context.Context, c dataset.Case, out Output) (Result, error) {
	text, err := outputText(s.step, out)
	if err != nil {
		return Result{}, err
	}
	m := s.re.FindStringSubmatch(text)
	if s.group < 0 {
		return Result{Composite: boolScore(m != nil), Breakdown: map[string]float64{"match": boolScore(m != nil)}}, nil
	}
	gs, err := golds(c, s.field)
	if err != nil {
		return Result{}, err
	}
	hit := false
	if m != nil {
		got := s.norm.apply(m[s.group])
		for _, g := range gs {
			hit = hit || got == s.norm.apply(g)
		}
	}
	return Result{Composite: boolScore(hit), Breakdown: map[string]float64{"match": boolScore(m != nil), "answer": boolScore(hit)}}, nil
}

// numberRE finds numbers as people and models write them: signs, currency
// symbols, thousands separators, decimals, exponents.
var numberRE = regexp.MustCompile(`([-+−]?)\s*[$€£¥]?\s*((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)([eE][-+]?\d+)?`)

// lastNumber parses the last number in s; models put the final answer last,
// after their working.
func lastNumber(s string) (float64, bool) {
	all := numberRE.FindAllStringSubmatchIndex(s, -1)
	if len(all) == 0 {
		return 0, false
	}
	m := all[len(all)-1]
	sign := s[m[2]:m[3]]
	// A "-" glued to a preceding word or digit is a range or a date
	// separator ("3-5", "2024-01"), not a sign.
	if sign != "" && m[0] > 0 {
		prev := s[m[0]-1]
		if prev >= '0' && prev <= '9' || prev >= 'a' && prev <= 'z' || prev >= 'A' && prev <= 'Z' {
			sign = ""
		}
	}
	text := strings.ReplaceAll(s[m[4]:m[5]], ",", "")
	if m[6] >= 0 {
		text += s[m[6]:m[7]]
	}
	v, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return 0, false
	}
	if sign == "-" || sign == "−" {
		v = -v
	}
	return v, true
}

// numericScorer compares the last number of the output with the gold
// numbers within an absolute tolerance.
type numericScorer struct {
	textScorer
	tolerance float64
}

func (s *numericScorer) goldNumbers(c dataset.Case) ([]float64, error) {
	gs, err := golds(c, s.field)
	if err != nil {
		return nil, err
	}
	out := make([]float64, len(gs))
	for i, g := range gs {
		v, ok := lastNumber(g)
		if !ok {
			return nil, fmt.Errorf("case %s: expected.%s %q is not a number; the numeric scorer needs a number such as 42 or \"$1,200.50\"", c.CaseID, s.field, g)
		}
		out[i] = v
	}
	return out, nil
}

func (s *numericScorer) Validate(c dataset.Case) error {
	_, err := s.goldNumbers(c)
	return err
}

func (s *numericScorer) Score(_ context.Context, c dataset.Case, out Output) (Result, error) {
	want, err := s.goldNumbers(c)
	if err != nil {
		return Result{}, err
	}
	text, err := outputText(s.step, out)
	if err != nil {
		return Result{}, err
	}
	got, found := lastNumber(text)
	hit := false
	for _, w := range want {
		// A hair of relative slack so that 0.1+0.2 equals 0.3 at tolerance 0.
		hit = hit || found && math.Abs(got-w) <= s.tolerance+1e-9*math.Max(1, math.Abs(w))
	}
	return Result{Composite: boolScore(hit), Breakdown: map[string]float64{"found": boolScore(found), "numeric": boolScore(hit)}}, nil
}

// labelScorer is a classification scorer over an allowed label set.
type labelScorer struct {
	textScorer
	labels      map[string]bool // normalized; nil when read from the case
	labelsField string
}

func newLabelScorer(spec Spec) *labelScorer {
	s := &labelScorer{textScorer: newTextScorer(spec, "label", labelNormalizers), labelsField: spec.LabelsField}
	if len(spec.Labels) > 0 {
		s.labels = make(map[string]bool, len(spec.Labels))
		for _, l := range spec.Labels {
			s.labels[s.norm.apply(l)] = true
		}
	}
	return s
}

func (s *labelScorer) allowed(c dataset.Case) (map[string]bool, error) {
	if s.labels != nil {
		return s.labels, nil
	}
	v, ok := c.Lookup(s.labelsField)
	if !ok || v == nil {
		return nil, fmt.Errorf("case %s: %s (scorer.labels_field) is missing; add the allowed labels to the case", c.CaseID, s.labelsField)
	}
	list, ok := v.([]any)
	if !ok || len(list) == 0 {
		return nil, fmt.Errorf("case %s: %s (scorer.labels_field) is %s; it must be a non-empty list of labels", c.CaseID, s.labelsField, jsontext.Kind(v))
	}
	set := make(map[string]bool, len(list))
	for i, e := range list {
		l, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("case %s: %s[%d] is %s; labels must be strings", c.CaseID, s.labelsField, i, jsontext.Kind(e))
		}
		set[s.norm.apply(l)] = true
	}
	return set, nil
}

func (s *labelScorer) Validate(c dataset.Case) error {
	_, _, err := s.check(c)
	return err
}

// check returns the allowed set and the normalized gold labels of a case.
func (s *labelScorer) check(c dataset.Case) (map[string]bool, []string, error) {
	set, err := s.allowed(c)
	if err != nil {
		return nil, nil, err
	}
	gs, err := golds(c, s.field)
	if err != nil {
		return nil, nil, err
	}
	for i, g := range gs {
		gs[i] = s.norm.apply(g)
		if !set[gs[i]] {
			return nil, nil, fmt.Errorf("case %s: expected.%s %q is not an allowed label; add it to the label set or fix the case", c.CaseID, s.field, g)
		}
	}
	return set, gs, nil
}

func (s *labelScorer) Score(_ context.Context, c dataset.Case, out Output) (Result, error) {
	set, gs, err := s.check(c)
	if err != nil {
		return Result{}, err
	}
	text, err := outputText(s.step, out)
	if err != nil {
		return Result{}, err
	}
	got := s.norm.apply(text)
	hit := false
	for _, g := range gs {
		hit = hit || got == g
	}
	return Result{Composite: boolScore(hit), Breakdown: map[string]float64{"correct": boolScore(hit), "valid_label": boolScore(set[got])}}, nil
}
