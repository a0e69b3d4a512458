package review

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/internal/pathglob"
	"github.com/fapo-dev/fapo/engine/variant"
)

// Check names.
const (
	CheckScope        = "scope"
	CheckValidity     = "validity"
	CheckLeakage      = "leakage"
	CheckMemorization = "memorization"
	CheckSize         = "size"
	CheckModel        = "model_reviewer"
)

// Finding is one reason a check failed. Messages never quote held-out text.
type Finding struct {
	Check   string `json:"check" jsonschema:"the check that failed"`
	File    string `json:"file,omitempty" jsonschema:"the file it concerns"`
	Message string `json:"message" jsonschema:"what is wrong and how to fix it"`
}

// CheckResult is the outcome of one check.
type CheckResult struct {
	Check  string `json:"check" jsonschema:"check name: scope, validity, leakage, memorization, size or model_reviewer"`
	Passed bool   `json:"passed" jsonschema:"whether it passed"`
	// Note says what was checked, for a passing check too.
	Note string `json:"note,omitempty" jsonschema:"what was checked"`
}

// Verdict is the gate's decision.
type Verdict struct {
	Pass     bool          `json:"pass" jsonschema:"the variant may be compared on validation"`
	Level    variant.Level `json:"level" jsonschema:"the declared level"`
	Checks   []CheckResult `json:"checks" jsonschema:"every check run"`
	Findings []Finding     `json:"findings" jsonschema:"every reason the review failed"`
	// Model is the independent reviewer's answer, when one is configured.
	Model *ModelVerdict `json:"model_reviewer,omitempty" jsonschema:"the independent model reviewer's answer, when one is configured"`
	// LocksSession is set when the leakage check found so much evaluation
	// data in the variant (lockThreshold) that the session stops for the
	// operator.
	LocksSession bool `json:"locks_session,omitempty" jsonschema:"so much evaluation data was found that the session is locked for the operator"`
}

// HeldOut answers how much text overlaps held-out cases, computed from the
// sealed store by the caller; the gate never holds held-out text itself.
type HeldOut interface {
	// Overlap returns how many distinct held-out cases share at least one
	// n-gram with text, and how many n-grams of text are shared.
	Overlap(text string) (cases, ngrams int)
}

// TrainFacts are what the memorization check compares against: values that
// identify single train cases.
type TrainFacts struct {
	// CaseIDs of the train split.
	CaseIDs []string
	// Answers are expected values that belong to one train case only
	// (shared values such as class labels are legitimately in prompts).
	Answers []string
	// Inputs are train input texts, for verbatim-passage detection.
	Inputs []string
}

// Input is everything the deterministic checks need.
type Input struct {
	Level         variant.Level     // the level the proposal declares
	Rationale     string            // the author's reasoning
	TargetCluster string            // the failure cluster it targets
	Parent        map[string][]byte // parent variant files
	Candidate     map[string][]byte // candidate variant files
	AllowedLevels []variant.Level   // from the scope contract
	FrozenFiles   []string          // paths a proposal may not touch
	Scope         string            // the scope contract as text, for the model reviewer
	// Validate dry-runs the candidate chain (parse, validate, render every
	// template on a sample train case) without any model call.
	Validate func(files map[string][]byte) error
	Train    TrainFacts
	HeldOut  HeldOut // nil skips the leakage check (and says so)
	// Rendered are the held-out cases as the candidate renders them
	// (server-side, no model call), for the rendered-answer checks.
	Rendered []RenderedCase
	// Limits for the size check.
	MaxPromptChars int
	MaxFiles       int
	NgramSize      int
}

// Reviewer is the independent model reviewer. It receives only the diff,
// the rationale, the level and the scope contract: a fresh context with no
// access to data, traces or the author's conversation.
type Reviewer interface {
	Review(ctx context.Context, in ModelInput) (ModelVerdict, error)
}

// ModelInput is what the model reviewer sees.
type ModelInput struct {
	Level         variant.Level `json:"level"`
	Rationale     string        `json:"rationale"`
	TargetCluster string        `json:"target_cluster"`
	Scope         string        `json:"scope"`
	Diff          string        `json:"diff"`
}

// ModelVerdict is the model reviewer's answer.
type ModelVerdict struct {
	Pass    bool              `json:"pass" jsonschema:"the model reviewer passed the proposal"`
	Reasons map[string]string `json:"reasons,omitempty" jsonschema:"its reason per aspect: scope, overfit, leak, coherence"` // per aspect: scope, overfit, leak, coherence
	Failed  []string          `json:"failed,omitempty" jsonschema:"aspects judged not ok"`                                   // aspects judged not ok
	// Error is set when the reviewer could not give a verdict (timeout, bad
	// JSON); the review then fails with that reason.
	Error string `json:"error,omitempty" jsonschema:"why it gave no verdict"`
}

// Gate runs the checks. Reviewer may be nil (deterministic checks only).
type Gate struct {
	Reviewer Reviewer
}

// Review runs every deterministic check and, when they pass and a reviewer
// is configured, the model reviewer. All findings are reported, not only
// the first.
func (g *Gate) Review(ctx context.Context, in Input) Verdict {
	v := Verdict{Level: in.Level}
	add := func(check, note string, findings []Finding) {
		v.Checks = append(v.Checks, CheckResult{Check: check, Passed: len(findings) == 0, Note: note})
		v.Findings = append(v.Findings, findings...)
	}
	add(CheckScope, "declared level, allowed levels and frozen files", checkScope(in))
	add(CheckValidity, "chain parses, validates and renders on a train case without a model call, and its output comes from a model", checkValidity(in))
	if in.HeldOut == nil {
		v.Checks = append(v.Checks, CheckResult{Check: CheckLeakage, Passed: false, Note: "no sealed held-out data to compare against"})
		v.Findings = append(v.Findings, Finding{Check: CheckLeakage, Message: "the tenant has no sealed held-out splits, so leakage cannot be ruled out until the operator seals it"})
	} else {
		findings, lock := checkLeakage(in)
		add(CheckLeakage, leakageNote, findings)
		v.LocksSession = lock
	}
	add(CheckMemorization, "train case ids, single-case answers and verbatim train inputs in added text", checkMemorization(in))
	add(CheckSize, "prompt sizes and file count", checkSize(in))

	v.Pass = len(v.Findings) == 0
	if v.Pass && g.Reviewer != nil {
		diff := UnifiedDiff(in.Parent, in.Candidate)
		mv, err := g.Reviewer.Review(ctx, ModelInput{Level: in.Level, Rationale: in.Rationale,
			TargetCluster: in.TargetCluster, Scope: in.Scope, Diff: diff})
		if err != nil {
			mv = ModelVerdict{Pass: false, Error: err.Error()}
		}
		v.Model = &mv
		var findings []Finding
		switch {
		case mv.Error != "":
			findings = append(findings, Finding{Check: CheckModel, Message: "the model reviewer gave no verdict, so the review fails: " + mv.Error})
		case !mv.Pass:
			for _, aspect := range mv.Failed {
				findings = append(findings, Finding{Check: CheckModel, Message: aspect + ": " + mv.Reasons[aspect]})
			}
			if len(findings) == 0 {
				findings = append(findings, Finding{Check: CheckModel, Message: "the model reviewer failed the proposal without naming an aspect"})
			}
		}
		add(CheckModel, "independent model review of the diff and rationale", findings)
		v.Pass = len(v.Findings) == 0
	}
	return v
}

func checkScope(in Input) []Finding {
	var out []Finding
	if _, err := variant.ParseLevel(string(in.Level)); err != nil {
		return []Finding{{Check: CheckScope, Message: err.Error()}}
	}
	if len(in.AllowedLevels) > 0 && !slices.Contains(in.AllowedLevels, in.Level) {
		out = append(out, Finding{Check: CheckScope, Message: fmt.Sprintf("level %s is not allowed by the session's scope contract (allowed: %s)", in.Level, variant.JoinLevels(in.AllowedLevels))})
	}
	cl, err := Classify(in.Parent, in.Candidate)
	if err != nil {
		return append(out, Finding{Check: CheckScope, File: "chain.toml", Message: err.Error()})
	}
	for _, f := range cl.Files() {
		if pathglob.Match(in.FrozenFiles, f) {
			out = append(out, Finding{Check: CheckScope, File: f, Message: fmt.Sprintf("%s is frozen by the scope contract and may not change", f)})
		}
	}
	switch {
	case cl.Level == "":
		out = append(out, Finding{Check: CheckScope, Message: "the candidate is identical to its parent: there is nothing to review"})
	case cl.Level != in.Level:
		var details []string
		for _, ch := range cl.Changes {
			if ch.Level == cl.Level {
				details = append(details, ch.File+": "+ch.Detail)
			}
		}
		out = append(out, Finding{Check: CheckScope, Message: fmt.Sprintf("declared level %s, but the changes are %s-level (%s): propose it at level %s",
			in.Level, cl.Level, strings.Join(details, "; "), cl.Level)})
	}
	return out
}

func checkValidity(in Input) []Finding {
	out := checkInputsRead(in)
	if in.Validate == nil {
		return out
	}
	if err := in.Validate(in.Candidate); err != nil {
		return append(out, Finding{Check: CheckValidity, Message: err.Error()})
	}
	return out
}

// inputRef matches a template's reference to a step input inside an
// action: .context.ticket, $.steps.summarize.output, .context.
var (
	actionRe = regexp.MustCompile(`(?s){{.*?}}`)
	inputRef = regexp.MustCompile(`\.(context|steps)((?:\.[A-Za-z0-9_]+)?)((?:\.[A-Za-z0-9_]+)*)`)
)

// templateInputs lists the inputs a template reads, to the first field
// below the root ("context.ticket", "steps.summarize"), and each as first
// written.
func templateInputs(text string) (keys, written []string) {
	for _, a := range actionRe.FindAllString(text, -1) {
		for _, m := range inputRef.FindAllStringSubmatch(a, -1) {
			if ref := m[1] + m[2]; !slices.Contains(keys, ref) {
				keys, written = append(keys, ref), append(written, "{{."+m[1]+m[2]+m[3]+"}}")
			}
		}
	}
	return keys, written
}

// checkInputsRead finds a rewritten prompt that reads none of the inputs
// its parent's version read: "{ticket}" for "{{.context.ticket}}" loads and
// renders, but the model no longer sees the case.
func checkInputsRead(in Input) []Finding {
	var out []Finding
	for _, p := range slices.Sorted(maps.Keys(in.Candidate)) {
		old, ok := in.Parent[p]
		if !ok || !strings.HasPrefix(p, "prompts/") || string(old) == string(in.Candidate[p]) {
			continue
		}
		was, refs := templateInputs(string(old))
		now, _ := templateInputs(string(in.Candidate[p]))
		if len(was) == 0 || slices.ContainsFunc(now, func(n string) bool {
			return slices.ContainsFunc(was, func(w string) bool {
				return n == w || strings.HasPrefix(w, n+".") || strings.HasPrefix(n, w+".")
			})
		}) {
			continue
		}
		out = append(out, Finding{Check: CheckValidity, File: p, Message: fmt.Sprintf(
			"%s reads none of the inputs its parent's version read (%s): the model would no longer see the case; templates are Go text/template, an input is written {{.context.FIELD}} or {{.steps.STEP.output}} (not {FIELD})",
			p, strings.Join(refs, ", "))})
	}
	return out
}

// promptText returns the text of every prompt file and of chain.toml (whose
// inline templates are prompt text too), by file.
func promptText(files map[string][]byte) map[string]string {
	out := map[string]string{}
	for p, b := range files {
		if p == "chain.toml" || strings.HasPrefix(p, "prompts/") {
			out[p] = string(b)
		}
	}
	return out
}

// leakageNote says what the leakage check looked at; the same words for
// every variant, passing or not.
const leakageNote = "prompt text against evaluation inputs and expected values, and the prompts as rendered on evaluation cases (server-side, no model call)"

// checkLeakage gives one coarse verdict for the whole variant: it is the
// same finding whichever of the variant's texts hit and however many, so a
// review cannot serve as an oracle of which texts are evaluation cases.
func checkLeakage(in Input) ([]Finding, bool) {
	hits := 0
	for _, p := range slices.Sorted(maps.Keys(promptText(in.Candidate))) {
		if cases, _ := in.HeldOut.Overlap(string(in.Candidate[p])); cases > hits {
			hits = cases
		}
	}
	leak := hits > 0
	if r := renderHits(in.Rendered, in.Train.Inputs); r >= MinRenderHits {
		leak = true
		hits += r
	}
	if !leak {
		return nil, false
	}
	where := "the variant"
	if files := changedPrompts(in.Parent, in.Candidate); len(files) > 0 {
		where = strings.Join(files, ", ")
	}
	msg := fmt.Sprintf("leak suspected in %s: the prompts, as written or as rendered on evaluation cases, carry evaluation data (copied inputs, or answers placed where they are a case's answer); write general instructions, and derive nothing from evaluation cases", where)
	return []Finding{{Check: CheckLeakage, Message: msg}}, hits >= lockThreshold(len(in.Rendered))
}

func checkMemorization(in Input) []Finding {
	var out []Finding
	answers := map[string]bool{}
	for _, a := range in.Train.Answers {
		if n := dataset.Normalize(a); len(n) >= 3 {
			answers[n] = true
		}
	}
	inputShingles := map[uint64]bool{}
	n := max(in.NgramSize, 8)
	for _, t := range in.Train.Inputs {
		for _, h := range dataset.Shingles(t, n) {
			inputShingles[h] = true
		}
	}
	for _, p := range slices.Sorted(maps.Keys(promptText(in.Candidate))) {
		added := addedText(in.Parent[p], in.Candidate[p])
		if added == "" {
			continue
		}
		norm := " " + dataset.Normalize(added) + " "
		var ids, hits []string
		for _, id := range in.Train.CaseIDs {
			if len(id) >= 4 && strings.Contains(added, id) {
				ids = append(ids, id)
			}
		}
		for a := range answers {
			if strings.Contains(norm, " "+a+" ") {
				hits = append(hits, a)
			}
		}
		sort.Strings(hits)
		if len(ids) > 0 {
			out = append(out, Finding{Check: CheckMemorization, File: p, Message: fmt.Sprintf("%s names train case ids (%s); prompts must not refer to specific cases", p, strings.Join(limit(ids, 5), ", "))})
		}
		if len(hits) > 0 {
			out = append(out, Finding{Check: CheckMemorization, File: p, Message: fmt.Sprintf("%s adds %d expected answers of individual train cases (%s); write general instructions instead of answers", p, len(hits), strings.Join(limit(hits, 5), ", "))})
		}
		shared := 0
		for _, h := range dataset.Shingles(added, n) {
			if inputShingles[h] {
				shared++
			}
		}
		if shared > 0 {
			out = append(out, Finding{Check: CheckMemorization, File: p, Message: fmt.Sprintf("%s copies %d %d-word sequences verbatim from train case inputs; describe the pattern instead of pasting cases", p, shared, n)})
		}
	}
	return out
}

func checkSize(in Input) []Finding {
	var out []Finding
	maxChars := in.MaxPromptChars
	if maxChars <= 0 {
		maxChars = 20000
	}
	maxFiles := in.MaxFiles
	if maxFiles <= 0 {
		maxFiles = 64
	}
	if len(in.Candidate) > maxFiles {
		out = append(out, Finding{Check: CheckSize, Message: fmt.Sprintf("the variant has %d files; at most %d are allowed", len(in.Candidate), maxFiles)})
	}
	for _, p := range slices.Sorted(maps.Keys(promptText(in.Candidate))) {
		b := in.Candidate[p]
		if len(b) > maxChars {
			out = append(out, Finding{Check: CheckSize, File: p, Message: fmt.Sprintf("%s has %d characters; the tenant allows %d per file (review.max_prompt_chars)", p, len(b), maxChars)})
		}
		if strings.HasPrefix(p, "prompts/") && strings.TrimSpace(string(b)) == "" {
			out = append(out, Finding{Check: CheckSize, File: p, Message: p + " is empty"})
		}
	}
	return out
}

// UnifiedDiff renders the changes from parent to candidate as one unified
// diff, file by file in path order.
func UnifiedDiff(parent, candidate map[string][]byte) string {
	d, err := variant.UnifiedDiff("a", "b", parent, candidate)
	if err != nil {
		return "diff failed: " + err.Error()
	}
	return d
}

// addedText returns the lines of cur that are not lines of old.
func addedText(old, cur []byte) string {
	have := map[string]int{}
	for _, l := range strings.Split(string(old), "\n") {
		have[l]++
	}
	var added []string
	for _, l := range strings.Split(string(cur), "\n") {
		if have[l] > 0 {
			have[l]--
			continue
		}
		added = append(added, l)
	}
	return strings.Join(added, "\n")
}

func limit(xs []string, n int) []string {
	if len(xs) <= n {
		return xs
	}
	return append(xs[:n:n], fmt.Sprintf("and %d more", len(xs)-n))
}
