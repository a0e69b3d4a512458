package chain

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/fapo-dev/fapo/engine/provider"
)

// A vote step samples its prompt n times and keeps one answer:
//
//	[[steps]]
//	id = "answer"
//	kind = "vote"
//	prompt = "prompts/answer.md"
//	extract = 'Answer:\s*(.+)'     # optional: the answer inside each sample (group "value" or the first group)
//	method = "majority"            # or "judge"
//	judge = "prompts/judge.md"     # judge only: reads .samples, answers with a sample number
//	[steps.params]
//	n = 5                          # 2..16, default 5
//	temperature = 0.7
//
// Majority compares the extracted answers after normalization (case,
// surrounding whitespace, quotes, emphasis and trailing punctuation are
// ignored); samples whose extract does not match do not vote. A tie goes to
// the answer whose first sample came earliest, so the result is
// deterministic for a given set of samples. A judge's reply is read as the
// first number in it; a reply naming no sample falls back to majority and
// says so in ParseError. The step's output is the winning answer (the
// extracted text when extract is set, else the whole sample); every sample
// is in StepTrace.Samples.
func init() {
	registerKind("vote", &kindSpec{
		callsModel:  true,
		keys:        []string{"model", "system", "prompt", "params", "method", "judge", "extract"},
		roots:       []string{"samples"},
		compile:     compileVote,
		views:       func(*step) []string { return []string{"output"} },
		run:         runVote,
		placeholder: placeholderVote,
	})
}

const defaultVoteSamples = 5

var voteMethods = []string{"majority", "judge"}

func compileVote(l *loader, s *step) {
	label := s.cfg.ID
	compilePromptTemplates(l, s)
	if n := s.cfg.Params.N; n != nil && *n == 1 {
		l.problem(label, "params.n = 1: a vote needs at least 2 samples (default %d); use kind = \"llm\" for one sample", defaultVoteSamples)
	}
	if s.cfg.Extract != "" {
		re, err := regexp.Compile(s.cfg.Extract)
		if err != nil {
			l.problem(label, "extract %q: %v", s.cfg.Extract, err)
		} else {
			s.regex = re
		}
	}
	switch s.cfg.Method {
	case "", "majority":
		if s.cfg.Judge != "" {
			l.problem(label, "judge is set but method is majority; set method = \"judge\" or remove judge")
		}
	case "judge":
		if s.cfg.Judge == "" {
			l.problem(label, "method = \"judge\" needs judge, a prompt file that reads {{.samples}} and answers with the number of the best sample")
		} else {
			l.fileTemplate(label, s, "judge", s.cfg.Judge)
		}
	default:
		l.problem(label, "method = %q; use one of %s", s.cfg.Method, strings.Join(voteMethods, ", "))
	}
}

func (s *step) voteSamples() int {
	if s.cfg.Params.N == nil {
		return defaultVoteSamples
	}
	return *s.cfg.Params.N
}

// voteKey is the normalized form answers are compared in.
func voteKey(answer string) string {
	a := strings.ToLower(strings.Join(strings.Fields(answer), " "))
	a = strings.Trim(a, "*_`\"' ")
	return strings.TrimRight(a, ".!;: ")
}

func runVote(ctx context.Context, x *execution, s *step, st *StepTrace) error {
	msgs, err := x.chatMessages(s, "prompt", nil)
	st.Messages = msgs
	if err != nil {
		return err
	}
	c, err := x.caller(s, st)
	if err != nil {
		return err
	}
	n := s.voteSamples()
	resps := make([]provider.Response, n)
	errs := make([]error, n)
	var mu sync.Mutex // caller adds usage to st
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			r, err := c.client.Complete(ctx, provider.Request{Model: c.model, Messages: msgs, Params: s.params(), Sample: i})
			mu.Lock()
			defer mu.Unlock()
			resps[i], errs[i] = r, err
			if err == nil {
				st.Calls++
				if r.CacheHit {
					st.CacheHits++
				}
				st.PromptTokens += r.Usage.PromptTokens
				st.CompletionTokens += r.Usage.CompletionTokens
			}
		})
	}
	wg.Wait()
	st.CacheSavedMS += SavedByCacheMS(resps...)
	for i, e := range errs {
		if e != nil {
			return fmt.Errorf("sample %d: %w", i, e)
		}
	}
	st.Samples = make([]string, n)
	answers := make([]string, n)
	for i, r := range resps {
		st.Samples[i] = r.Content
		answers[i] = r.Content
		if s.regex != nil {
			v, err := extractRegex(s.regex, r.Content)
			if err != nil {
				answers[i] = ""
				continue
			}
			answers[i] = v.(string)
		}
	}
	win, note := majority(answers)
	if s.cfg.Method == "judge" {
		pick, jerr := x.judgePick(ctx, s, st, c, st.Samples)
		if jerr != nil {
			if ctx.Err() != nil {
				return jerr
			}
			note = jerr.Error() + "; majority used"
		} else {
			win, note = pick, ""
		}
	}
	st.ParseError = note
	st.FinishReason = resps[win].FinishReason
	st.RawOutput = st.Samples[win]
	st.Output = answers[win]
	if s.regex == nil || (answers[win] == "" && note != "") {
		st.Output = st.Samples[win]
	}
	return nil
}

// majority returns the index of the first sample of the most frequent
// non-empty answer; a tie goes to the answer seen first. With no usable
// answer it returns sample 0 and a note.
func majority(answers []string) (int, string) {
	counts := map[string]int{}
	first := map[string]int{}
	for i, a := range answers {
		k := voteKey(a)
		if k == "" {
			continue
		}
		if _, ok := first[k]; !ok {
			first[k] = i
		}
		counts[k]++
	}
	if len(counts) == 0 {
		return 0, "no sample yielded an answer (extract did not match); sample 0 used"
	}
	best, bestN := -1, 0
	for k, c := range counts {
		if i := first[k]; c > bestN || (c == bestN && i < best) {
			best, bestN = i, c
		}
	}
	return best, ""
}

var firstNumber = regexp.MustCompile(`\d+`)

// judgePick asks the judge which sample is best, numbered from 1.
func (x *execution) judgePick(ctx context.Context, s *step, st *StepTrace, c *caller, samples []string) (int, error) {
	msgs, err := x.chatMessages(s, "judge", map[string]any{"samples": samples})
	if err != nil {
		return 0, err
	}
	resp, err := c.complete(ctx, msgs, nil, 0)
	if err != nil {
		return 0, fmt.Errorf("judge: %w", err)
	}
	st.Messages = append(st.Messages, msgs...)
	st.Messages = append(st.Messages, provider.Message{Role: "assistant", Content: resp.Content})
	m := firstNumber.FindString(resp.Content)
	i, err := strconv.Atoi(m)
	if err != nil || i < 1 || i > len(samples) {
		return 0, fmt.Errorf("judge reply %q names no sample 1..%d", truncate(resp.Content, 80), len(samples))
	}
	return i - 1, nil
}

func placeholderVote(x *execution, s *step, st *StepTrace) error {
	msgs, err := x.chatMessages(s, "prompt", nil)
	st.Messages = msgs
	if err == nil && s.cfg.Method == "judge" {
		_, err = x.chatMessages(s, "judge", map[string]any{"samples": []string{"<sample 1>", "<sample 2>"}})
	}
	st.Output = placeholderOutput(s)
	return err
}
