package attribution

import (
	"fmt"
	"strings"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/run"
)

// maxEvidence keeps evidence to one readable sentence in a tool result.
const maxEvidence = 300

// minCoverage is the share of an answer's words that must appear in the
// retrieved text for the lexical fallback to clear retrieval.
const minCoverage = 0.5

// clip shortens s to at most n bytes on a rune boundary, marking the cut.
func clip(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) <= n {
		return s
	}
	cut := n - len("…")
	for cut > 0 && !runeStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func runeStart(b byte) bool { return b&0xC0 != 0x80 }

// normText is the comparison form of answers, outputs and titles: the same
// normalization the leakage and memorization checks use.
func normText(s string) string { return dataset.Normalize(s) }

// answerTexts returns the expected answers of a case at field: a string, a
// number, or a list of them (aliases).
func answerTexts(r *run.CaseResult, fields []string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(x any) {
		var s string
		switch t := x.(type) {
		case string:
			s = t
		case float64:
			s = fmt.Sprint(t)
		}
		if strings.TrimSpace(s) != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	c := r.Case()
	for _, field := range fields {
		v, ok := c.Lookup(field)
		if !ok {
			continue
		}
		if list, ok := v.([]any); ok {
			for _, x := range list {
				add(x)
			}
		} else {
			add(v)
		}
	}
	return out
}

// yesNo answers are decided by reasoning over passages, never found in them.
var yesNo = map[string]bool{"yes": true, "no": true, "true": true, "false": true}

// coverage is the share of answer's words found in text; 1 for answers
// whose words cannot be looked up (yes/no).
func coverage(answer, text string) float64 {
	words := strings.Fields(normText(answer))
	if len(words) == 0 || len(words) == 1 && yesNo[words[0]] {
		return 1
	}
	have := map[string]bool{}
	for _, w := range strings.Fields(normText(text)) {
		have[w] = true
	}
	n := 0
	for _, w := range words {
		if have[w] {
			n++
		}
	}
	return float64(n) / float64(len(words))
}

// quoteList quotes up to n items and counts the rest.
func quoteList(xs []string, n int) string {
	var b strings.Builder
	for i, x := range xs {
		if i == n {
			fmt.Fprintf(&b, " and %d more", len(xs)-n)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", clip(x, 60))
	}
	return b.String()
}
