package scoring

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/internal/jsontext"
)

// ifevalScorer checks the verifiable instructions of IFEval (Zhou et al.
// 2023) in Go, following the reference checkers of
// google-research/instruction_following_eval/instructions.py in their
// strict form. A case carries expected.instruction_id_list and
// expected.kwargs (one object per instruction), as input_data.jsonl does.
// The composite is the share of instructions followed; the breakdown has
// one 0/100 entry per instruction id (a repeated id gets a #2 suffix).
//
// Where the reference calls langdetect (response_language, and the English
// check of the two change_case instructions), this scorer uses a script
// and stopword heuristic for response_language and checks only the case
// for change_case, so results can differ from the reference on text that is
// in an unexpected language.
type ifevalScorer struct{ step string }

type ifevalCheck func(resp string, kw map[string]any) (bool, error)

// ifevalChecks maps every instruction id the scorer knows to its check.
var ifevalChecks = map[string]ifevalCheck{
	"punctuation:no_comma":                          func(r string, _ map[string]any) (bool, error) { return !strings.Contains(r, ","), nil },
	"length_constraints:number_words":               checkNumberWords,
	"length_constraints:number_sentences":           checkNumberSentences,
	"length_constraints:number_paragraphs":          checkNumberParagraphs,
	"length_constraints:nth_paragraph_first_word":   checkNthParagraphFirstWord,
	"keywords:forbidden_words":                      checkForbiddenWords,
	"keywords:existence":                            checkKeywordsExist,
	"keywords:frequency":                            checkKeywordFrequency,
	"keywords:letter_frequency":                     checkLetterFrequency,
	"change_case:english_lowercase":                 func(r string, _ map[string]any) (bool, error) { return hasCased(r) && r == strings.ToLower(r), nil },
	"change_case:english_capital":                   func(r string, _ map[string]any) (bool, error) { return hasCased(r) && r == strings.ToUpper(r), nil },
	"change_case:capital_word_frequency":            checkCapitalWords,
	"detectable_format:number_highlighted_sections": checkHighlights,
	"detectable_format:number_bullet_lists":         checkBullets,
	"detectable_format:title":                       checkTitle,
	"detectable_format:json_format":                 checkJSON,
	"detectable_format:multiple_sections":           checkSections,
	"detectable_format:constrained_response":        checkConstrained,
	"detectable_content:postscript":                 checkPostscript,
	"detectable_content:number_placeholders":        checkPlaceholders,
	"combination:repeat_prompt":                     checkRepeatPrompt,
	"combination:two_responses":                     checkTwoResponses,
	"startend:quotation":                            checkQuotation,
	"startend:end_checker":                          checkEndPhrase,
	"language:response_language":                    checkLanguage,
}

// IFEvalInstructions lists the instruction ids the ifeval scorer checks.
func IFEvalInstructions() []string {
	out := make([]string, 0, len(ifevalChecks))
	for k := range ifevalChecks {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (s *ifevalScorer) instructions(c dataset.Case) ([]string, []map[string]any, error) {
	ids, ok := c.Expected["instruction_id_list"].([]any)
	if !ok || len(ids) == 0 {
		return nil, nil, fmt.Errorf("case %s: expected.instruction_id_list is missing or empty; an ifeval case lists its instructions as in IFEval's input_data.jsonl", c.CaseID)
	}
	kws, _ := c.Expected["kwargs"].([]any)
	if len(kws) != len(ids) {
		return nil, nil, fmt.Errorf("case %s: expected.kwargs has %d entries for %d instructions; give one object per instruction ({} when it has none)", c.CaseID, len(kws), len(ids))
	}
	names := make([]string, len(ids))
	args := make([]map[string]any, len(ids))
	for i, v := range ids {
		id, _ := v.(string)
		if _, ok := ifevalChecks[id]; !ok {
			return nil, nil, fmt.Errorf("case %s: expected.instruction_id_list[%d] = %v is not an instruction the ifeval scorer checks (known: %s)", c.CaseID, i, v, strings.Join(IFEvalInstructions(), ", "))
		}
		names[i] = id
		kw, ok := kws[i].(map[string]any)
		if !ok && kws[i] != nil {
			return nil, nil, fmt.Errorf("case %s: expected.kwargs[%d] is %s; want an object", c.CaseID, i, jsontext.Kind(kws[i]))
		}
		args[i] = kw
	}
	return names, args, nil
}

func (s *ifevalScorer) Validate(c dataset.Case) error {
	names, args, err := s.instructions(c)
	if err != nil {
		return err
	}
	// A check with missing arguments fails the same way for every response,
	// so running it on "" finds a malformed case before any model call.
	for i, id := range names {
		if _, err := ifevalChecks[id]("", args[i]); err != nil {
			return fmt.Errorf("case %s: expected.kwargs[%d] (%s): %w", c.CaseID, i, id, err)
		}
	}
	return nil
}

func (s *ifevalScorer) Score(_ context.Context, c dataset.Case, out Output) (Result, error) {
	names, args, err := s.instructions(c)
	if err != nil {
		return Result{}, err
	}
	resp, err := outputText(s.step, out)
	if err != nil {
		return Result{}, err
	}
	bd := make(map[string]float64, len(names))
	followed := 0
	var failed []string
	for i, id := range names {
		ok, err := ifevalChecks[id](resp, args[i])
		if err != nil {
			return Result{}, fmt.Errorf("case %s: expected.kwargs[%d] (%s): %w", c.CaseID, i, id, err)
		}
		key := id
		for n := 2; ; n++ {
			if _, dup := bd[key]; !dup {
				break
			}
			key = fmt.Sprintf("%s#%d", id, n)
		}
		bd[key] = boolScore(ok)
		if ok {
			followed++
		} else {
			failed = append(failed, id)
		}
	}
	r := Result{Composite: MaxScore * float64(followed) / float64(len(names)), Breakdown: bd}
	if len(failed) > 0 {
		r.Reason = "not followed: " + strings.Join(failed, ", ")
	}
	return r, nil
}

// kwargs accessors: a missing or mistyped argument is a case error.

func kwInt(kw map[string]any, key string) (int, error) {
	f, ok := kw[key].(float64)
	if !ok || f != math.Trunc(f) {
		return 0, fmt.Errorf("kwargs.%s must be an integer, got %v", key, kw[key])
	}
	return int(f), nil
}

func kwString(kw map[string]any, key string) (string, error) {
	s, ok := kw[key].(string)
	if !ok {
		return "", fmt.Errorf("kwargs.%s must be a string, got %v", key, kw[key])
	}
	return s, nil
}

func kwStrings(kw map[string]any, key string) ([]string, error) {
	list, ok := kw[key].([]any)
	if !ok {
		return nil, fmt.Errorf("kwargs.%s must be a list of strings, got %v", key, kw[key])
	}
	out := make([]string, len(list))
	for i, v := range list {
		if out[i], ok = v.(string); !ok {
			return nil, fmt.Errorf("kwargs.%s[%d] must be a string", key, i)
		}
	}
	return out, nil
}

// compare applies IFEval's two relations.
func compare(kw map[string]any, relKey, numKey string, got int) (bool, error) {
	n, err := kwInt(kw, numKey)
	if err != nil {
		return false, err
	}
	rel, err := kwString(kw, relKey)
	if err != nil {
		return false, err
	}
	switch rel {
	case "less than":
		return got < n, nil
	case "at least":
		return got >= n, nil
	}
	return false, fmt.Errorf("kwargs.%s = %q; IFEval's relations are \"less than\" and \"at least\"", relKey, rel)
}

var wordRE = regexp.MustCompile(`\w+`)

func checkNumberWords(r string, kw map[string]any) (bool, error) {
	return compare(kw, "relation", "num_words", len(wordRE.FindAllString(r, -1)))
}

// sentenceEnd approximates the reference's sentence splitter: a run of
// . ! ? followed by whitespace or the end of the text.
var sentenceEnd = regexp.MustCompile(`[.!?]+(\s+|$)`)

func countSentences(r string) int {
	n := 0
	for _, s := range sentenceEnd.Split(strings.TrimSpace(r), -1) {
		if strings.TrimSpace(s) != "" {
			n++
		}
	}
	return n
}

func checkNumberSentences(r string, kw map[string]any) (bool, error) {
	return compare(kw, "relation", "num_sentences", countSentences(r))
}

var paragraphSep = regexp.MustCompile(`\s?\*\*\*\s?`)

func checkNumberParagraphs(r string, kw map[string]any) (bool, error) {
	want, err := kwInt(kw, "num_paragraphs")
	if err != nil {
		return false, err
	}
	ps := paragraphSep.Split(r, -1)
	n := len(ps)
	for i, p := range ps {
		if strings.TrimSpace(p) == "" {
			if i == 0 || i == len(ps)-1 {
				n--
			} else {
				return false, nil
			}
		}
	}
	return n == want, nil
}

func checkNthParagraphFirstWord(r string, kw map[string]any) (bool, error) {
	want, err := kwInt(kw, "num_paragraphs")
	if err != nil {
		return false, err
	}
	nth, err := kwInt(kw, "nth_paragraph")
	if err != nil {
		return false, err
	}
	first, err := kwString(kw, "first_word")
	if err != nil {
		return false, err
	}
	ps := strings.Split(r, "\n\n")
	n := len(ps)
	for _, p := range ps {
		if strings.TrimSpace(p) == "" {
			n--
		}
	}
	if nth < 1 || nth > n {
		return false, nil
	}
	p := strings.TrimSpace(ps[nth-1])
	if p == "" {
		return false, nil
	}
	word := strings.TrimLeft(strings.Fields(p)[0], `'"`)
	var b strings.Builder
	for _, c := range word {
		if strings.ContainsRune(`.,?!'"`, c) {
			break
		}
		b.WriteRune(unicode.ToLower(c))
	}
	return n == want && b.String() == strings.ToLower(first), nil
}

func checkForbiddenWords(r string, kw map[string]any) (bool, error) {
	words, err := kwStrings(kw, "forbidden_words")
	if err != nil {
		return false, err
	}
	for _, w := range words {
		if regexp.MustCompile(`(?i)\b` + regexp.QuoteMeta(w) + `\b`).MatchString(r) {
			return false, nil
		}
	}
	return true, nil
}

func checkKeywordsExist(r string, kw map[string]any) (bool, error) {
	words, err := kwStrings(kw, "keywords")
	if err != nil {
		return false, err
	}
	for _, w := range words {
		if !strings.Contains(strings.ToLower(r), strings.ToLower(w)) {
			return false, nil
		}
	}
	return true, nil
}

func checkKeywordFrequency(r string, kw map[string]any) (bool, error) {
	w, err := kwString(kw, "keyword")
	if err != nil {
		return false, err
	}
	n := 0
	if w != "" {
		n = strings.Count(strings.ToLower(r), strings.ToLower(w))
	}
	return compare(kw, "relation", "frequency", n)
}

func checkLetterFrequency(r string, kw map[string]any) (bool, error) {
	l, err := kwString(kw, "letter")
	if err != nil {
		return false, err
	}
	if len([]rune(l)) != 1 {
		return false, fmt.Errorf("kwargs.letter must be one letter, got %q", l)
	}
	return compare(kw, "let_relation", "let_frequency", strings.Count(strings.ToLower(r), strings.ToLower(l)))
}

func hasCased(r string) bool {
	return strings.IndexFunc(r, func(c rune) bool { return unicode.IsUpper(c) || unicode.IsLower(c) }) >= 0
}

var tokenRE = regexp.MustCompile(`[\p{L}\p{N}_'’-]+`)

func checkCapitalWords(r string, kw map[string]any) (bool, error) {
	n := 0
	for _, w := range tokenRE.FindAllString(r, -1) {
		if hasCased(w) && w == strings.ToUpper(w) {
			n++
		}
	}
	return compare(kw, "capital_relation", "capital_frequency", n)
}

var (
	highlightRE       = regexp.MustCompile(`\*[^\n*]*\*`)
	doubleHighlightRE = regexp.MustCompile(`\*\*[^\n*]*\*\*`)
)

func checkHighlights(r string, kw map[string]any) (bool, error) {
	want, err := kwInt(kw, "num_highlights")
	if err != nil {
		return false, err
	}
	n := 0
	for _, h := range highlightRE.FindAllString(r, -1) {
		if strings.TrimSpace(strings.Trim(h, "*")) != "" {
			n++
		}
	}
	for _, h := range doubleHighlightRE.FindAllString(r, -1) {
		if strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(h, "**"), "**")) != "" {
			n++
		}
	}
	return n >= want, nil
}

var (
	starBulletRE = regexp.MustCompile(`(?m)^\s*\*[^*].*$`)
	dashBulletRE = regexp.MustCompile(`(?m)^\s*-.*$`)
)

func checkBullets(r string, kw map[string]any) (bool, error) {
	want, err := kwInt(kw, "num_bullets")
	if err != nil {
		return false, err
	}
	return len(starBulletRE.FindAllString(r, -1))+len(dashBulletRE.FindAllString(r, -1)) == want, nil
}

var titleRE = regexp.MustCompile(`<<[^\n]+>>`)

func checkTitle(r string, _ map[string]any) (bool, error) {
	for _, t := range titleRE.FindAllString(r, -1) {
		if strings.TrimSpace(strings.TrimRight(strings.TrimLeft(t, "<"), ">")) != "" {
			return true, nil
		}
	}
	return false, nil
}

func checkJSON(r string, _ map[string]any) (bool, error) {
	return json.Valid([]byte(jsontext.Unfence(r))), nil
}

func checkSections(r string, kw map[string]any) (bool, error) {
	want, err := kwInt(kw, "num_sections")
	if err != nil {
		return false, err
	}
	sep, err := kwString(kw, "section_spliter")
	if err != nil {
		return false, err
	}
	re := regexp.MustCompile(`\s?` + regexp.QuoteMeta(sep) + `\s?\d+\s?`)
	return len(re.Split(r, -1))-1 >= want, nil
}

func checkConstrained(r string, _ map[string]any) (bool, error) {
	v := strings.TrimSpace(r)
	for _, o := range []string{"My answer is yes.", "My answer is no.", "My answer is maybe."} {
		if strings.Contains(v, o) {
			return true, nil
		}
	}
	return false, nil
}

func checkPostscript(r string, kw map[string]any) (bool, error) {
	m, err := kwString(kw, "postscript_marker")
	if err != nil {
		return false, err
	}
	var pat string
	switch m {
	case "P.P.S":
		pat = `\s*p\.\s?p\.\s?s.*$`
	case "P.S.":
		pat = `\s*p\.\s?s\..*$`
	default:
		pat = `\s*` + regexp.QuoteMeta(strings.ToLower(m)) + `.*$`
	}
	return regexp.MustCompile(`(?m)` + pat).MatchString(strings.ToLower(r)), nil
}

var placeholderRE = regexp.MustCompile(`\[.*?\]`)

func checkPlaceholders(r string, kw map[string]any) (bool, error) {
	want, err := kwInt(kw, "num_placeholders")
	if err != nil {
		return false, err
	}
	return len(placeholderRE.FindAllString(r, -1)) >= want, nil
}

func checkRepeatPrompt(r string, kw map[string]any) (bool, error) {
	p, err := kwString(kw, "prompt_to_repeat")
	if err != nil {
		return false, err
	}
	return strings.HasPrefix(strings.ToLower(strings.TrimSpace(r)), strings.ToLower(strings.TrimSpace(p))), nil
}

func checkTwoResponses(r string, _ map[string]any) (bool, error) {
	parts := strings.Split(r, "******")
	var valid []string
	for i, p := range parts {
		if strings.TrimSpace(p) == "" {
			if i != 0 && i != len(parts)-1 {
				return false, nil
			}
			continue
		}
		valid = append(valid, p)
	}
	return len(valid) == 2 && strings.TrimSpace(valid[0]) != strings.TrimSpace(valid[1]), nil
}

func checkQuotation(r string, _ map[string]any) (bool, error) {
	v := strings.TrimSpace(r)
	return len(v) > 1 && v[0] == '"' && v[len(v)-1] == '"', nil
}

func checkEndPhrase(r string, kw map[string]any) (bool, error) {
	p, err := kwString(kw, "end_phrase")
	if err != nil {
		return false, err
	}
	v := strings.ToLower(strings.Trim(strings.TrimSpace(r), `"`))
	return strings.HasSuffix(v, strings.ToLower(strings.TrimSpace(p))), nil
}

func checkLanguage(r string, kw map[string]any) (bool, error) {
	want, err := kwString(kw, "language")
	if err != nil {
		return false, err
	}
	return detectLanguage(r) == want, nil
}
