package review

import (
	"sort"
	"strings"

	"github.com/fapo-dev/fapo/engine/dataset"
)

// RenderedCase is one held-out case as the candidate's chain renders it,
// computed server-side without a model call. The gate only counts what it
// finds in these; nothing of them reaches a finding.
type RenderedCase struct {
	// Expected are the case's expected values, as text.
	Expected []string
	// Input is the case's input text and what the chain retrieved for it
	// (the tenant's corpus, the case's own passages): text a prompt may
	// legitimately carry.
	Input string
	// Prompts is everything the candidate's templates render for the case,
	// and the outputs of its model-free steps.
	Prompts string
}

// Thresholds of the rendered-answer checks.
const (
	// MinRenderHits is how many held-out cases must carry their own answer
	// before the variant fails: a single coincidence (a few-shot example
	// that happens to be a held-out pair) is tolerated, a table is not.
	MinRenderHits = 2
	// LockHits is the fewest hit cases that lock the session for the
	// operator (or LockShare of the held-out cases, whichever is more): a
	// variant that carries that many evaluation answers or inputs was
	// built from evaluation data, and its author is not to be trusted
	// with the rest of the budget.
	LockHits  = 5
	LockShare = 0.10
	// otherShare: a value shown to more than this share of the cases whose
	// answer it is not is shown to every case alike (a label list).
	otherShare = 0.10
	// window is how many words around an answer a key may stand.
	window = 8
	// maxKeyWords is the longest input fragment tried as a table key.
	maxKeyWords = 3
)

// lockThreshold is how many hit cases lock the session, for n held-out
// cases scanned.
func lockThreshold(n int) int { return max(LockHits, int(LockShare*float64(n)+0.999)) }

type renderedCase struct {
	answers []string // normalized expected values not found in the input
	input   string   // normalized, space-padded
	prompt  string   // normalized, space-padded
	words   []string // prompt words
}

// renderHits counts the held-out cases whose renderings carry their own
// expected value where it is that case's answer: (a) the value is rendered
// for the case but not (or rarely) for cases with other answers, or (b) the
// prompt text pairs a fragment unique to the case's input with its value
// (an answer table keyed by input, however its strings were assembled).
// inputs are the train inputs, so that a fragment counts as a key only when
// no other case anywhere has it.
func renderHits(cases []RenderedCase, trainInputs []string) int {
	rc := make([]renderedCase, len(cases))
	for i, c := range cases {
		r := renderedCase{input: pad(dataset.Normalize(c.Input)), prompt: pad(dataset.Normalize(c.Prompts))}
		r.words = strings.Fields(r.prompt)
		seen := map[string]bool{}
		for _, e := range c.Expected {
			n := dataset.Normalize(e)
			if n == "" || seen[n] || strings.Contains(r.input, pad(n)) {
				continue // an answer the input holds is no leak when rendered
			}
			seen[n] = true
			r.answers = append(r.answers, n)
		}
		rc[i] = r
	}
	hit := make([]bool, len(rc))

	// (a) rendered where it is the answer and not elsewhere.
	owners := map[string][]int{}
	for i, r := range rc {
		for _, a := range r.answers {
			owners[a] = append(owners[a], i)
		}
	}
	for a, own := range owners {
		others, shown := 0, 0
		mine := map[int]bool{}
		for _, i := range own {
			mine[i] = true
		}
		for j, r := range rc {
			if mine[j] {
				continue
			}
			others++
			if strings.Contains(r.prompt, pad(a)) {
				shown++
			}
		}
		if others == 0 || float64(shown) > otherShare*float64(others) {
			continue
		}
		for _, i := range own {
			if strings.Contains(rc[i].prompt, pad(a)) {
				hit[i] = true
			}
		}
	}

	// (b) a key unique to the case's input next to its answer, in text the
	// prompt writes for another case: nothing of that case's own input can
	// explain the pairing there.
	df := map[string]int{}
	keysOf := make([]map[string]bool, len(rc))
	for i, r := range rc {
		keysOf[i] = fragments(r.input)
		for k := range keysOf[i] {
			df[k]++
		}
	}
	for _, t := range trainInputs {
		for k := range fragments(pad(dataset.Normalize(t))) {
			if _, ok := df[k]; ok {
				df[k]++
			}
		}
	}
	for i, r := range rc {
		if hit[i] || len(r.answers) == 0 || len(rc) < 2 {
			continue
		}
		keys := map[string]bool{}
		for k := range keysOf[i] {
			if df[k] == 1 && !answerWord(k, r.answers) {
				keys[k] = true
			}
		}
		if len(keys) == 0 {
			continue
		}
		for step := 1; step <= min(2, len(rc)-1) && !hit[i]; step++ {
			other := rc[(i+step)%len(rc)]
			hit[i] = pairedNearby(other.words, r.answers, keys)
		}
	}
	n := 0
	for _, h := range hit {
		if h {
			n++
		}
	}
	return n
}

// fragments are the word runs of 1..maxKeyWords words of a normalized,
// padded text that can key a table: runs of words of at least 3 characters
// each (short words and numbers alone key nothing).
func fragments(text string) map[string]bool {
	words := strings.Fields(text)
	out := map[string]bool{}
	for i := range words {
		for n := 1; n <= maxKeyWords && i+n <= len(words); n++ {
			if len(words[i+n-1]) < 3 {
				break
			}
			out[strings.Join(words[i:i+n], " ")] = true
		}
	}
	return out
}

func answerWord(k string, answers []string) bool {
	for _, a := range answers {
		if strings.Contains(pad(a), pad(k)) || strings.Contains(pad(k), pad(a)) {
			return true
		}
	}
	return false
}

// pairedNearby reports whether words holds one of answers with one of keys
// within window words of it.
func pairedNearby(words []string, answers []string, keys map[string]bool) bool {
	for _, a := range answers {
		aw := strings.Fields(a)
		for p := 0; p+len(aw) <= len(words); p++ {
			if !equalWords(words[p:p+len(aw)], aw) {
				continue
			}
			lo, hi := max(0, p-window), min(len(words), p+len(aw)+window)
			for s := lo; s < hi; s++ {
				for n := 1; n <= maxKeyWords && s+n <= hi; n++ {
					if keys[strings.Join(words[s:s+n], " ")] {
						return true
					}
				}
			}
		}
	}
	return false
}

func equalWords(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func pad(s string) string { return " " + s + " " }

// changedPrompts names the prompt files (and chain.toml) a candidate
// changes, sorted: the leakage finding names these whatever text hit, so
// that it says nothing about which of the variant's texts are held out.
func changedPrompts(parent, candidate map[string][]byte) []string {
	var out []string
	for p, b := range promptText(candidate) {
		if old, ok := parent[p]; !ok || string(old) != b {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}
