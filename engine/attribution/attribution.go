// Package attribution traces every failing case of a run to the pipeline step
// where it went wrong and to the class of the failure, groups the failures
// into clusters that say which level of change (prompt, parameter,
// structural) can address them, and measures a step's headroom by oracle
// replay: rerunning the chain with that step's output replaced by the gold
// output the dataset carries. It only reads traces; it never decides what to
// change.
package attribution

import (
	"cmp"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/scoring"
	"github.com/fapo-dev/fapo/engine/variant"
)

// Failure classes, in the order they are tried: the first that matches a
// case is its class.
const (
	ClassInfrastructure = "infrastructure"
	ClassTruncation     = "truncation"
	ClassCascade        = "cascade"
	ClassRetrieval      = "retrieval"
	ClassFormat         = "format"
	ClassReasoning      = "reasoning"
)

// Classes lists the classes in precedence order.
var Classes = []string{ClassInfrastructure, ClassTruncation, ClassCascade, ClassRetrieval, ClassFormat, ClassReasoning}

// classLevel is the cheapest level of change that can address a class.
// Infrastructure has none: no variant fixes a model server that is down.
var classLevel = map[string]variant.Level{
	ClassInfrastructure: "",
	ClassTruncation:     variant.LevelParameter,
	ClassCascade:        variant.LevelStructural,
	ClassRetrieval:      variant.LevelStructural,
	ClassFormat:         variant.LevelPrompt,
	ClassReasoning:      variant.LevelPrompt,
}

// ScorerStep is the root step of a failure the scorer caused rather than a
// pipeline step.
const ScorerStep = "(scorer)"

// PipelineStep is the root step of a failure whose step the trace does not
// name.
const PipelineStep = "(pipeline)"

// Options configure Attribute.
type Options struct {
	// FailBelow marks a case failed when its score is below it; 0 means
	// below scoring.MaxScore. A case whose pipeline or scorer errored always
	// fails.
	FailBelow float64
	// Gold says where a case carries gold evidence for retrieve steps.
	Gold GoldEvidence
	// Oracle maps a step id to the case field holding its gold output
	// (tenant.toml [oracle], e.g. extract = "expected.facts").
	Oracle map[string]string
	// AnswerFields are the expected values compared with outputs and
	// passages: the scorer's fields (scoring.ExpectedFields), every
	// component of a composite; default "expected.answer".
	AnswerFields []string
	// OutputStep is the chain's output step (chain.Chain.Output); when empty
	// it is inferred from the trace's final output.
	OutputStep string
}

func (o Options) threshold() float64 {
	if o.FailBelow > 0 {
		return o.FailBelow
	}
	return scoring.MaxScore
}

func (o Options) answerFields() []string {
	if len(o.AnswerFields) > 0 {
		return o.AnswerFields
	}
	return []string{"expected.answer"}
}

// Failure is one failed case traced to its root step.
type Failure struct {
	CaseID   string        `json:"case_id" jsonschema:"the train case"`
	Score    float64       `json:"score" jsonschema:"its score, 0 to 100"`
	Class    string        `json:"class" jsonschema:"failure class: infrastructure, truncation, cascade, retrieval, format or reasoning"`
	RootStep string        `json:"root_step" jsonschema:"the step the failure started at"`
	Level    variant.Level `json:"level" jsonschema:"the cheapest level that can address it: prompt, parameter or structural (empty for infrastructure)"`
	// Evidence says in one sentence why the case got this class; it may
	// quote train content and is never shown for held-out runs.
	Evidence string `json:"evidence" jsonschema:"why this class, in one sentence"`
	// LowConfidence marks a class decided by a heuristic (lexical overlap)
	// rather than by gold evidence or the trace itself.
	LowConfidence bool `json:"low_confidence,omitempty" jsonschema:"the class was decided by a heuristic (word overlap), not by gold evidence or the trace"`
}

// Cluster is the failures sharing a class and a root step.
type Cluster struct {
	Class    string        `json:"class" jsonschema:"failure class of the cluster"`
	RootStep string        `json:"root_step" jsonschema:"the step its failures started at"`
	Level    variant.Level `json:"level" jsonschema:"the cheapest level that can address it (empty for infrastructure)"`
	Count    int           `json:"count" jsonschema:"attributed cases in the cluster"`
	Share    float64       `json:"share" jsonschema:"fraction of all attributed cases"` // of all failures
	// LowConfidence counts members classed by heuristic.
	LowConfidence int `json:"low_confidence,omitempty" jsonschema:"members classed by heuristic"`
	// Examples are up to 5 case ids, in run order.
	Examples []string `json:"examples" jsonschema:"up to 5 of its case ids, for inspect_cases case_ids"`
}

// Name identifies a cluster as "class@step", the form a proposal's target
// cluster takes.
func (c Cluster) Name() string { return c.Class + "@" + c.RootStep }

// Report is the attribution of one run.
//
// Its counts use the vocabulary of every tool, the CLI and the Explorer:
// errored is a case with no answer because of the infrastructure, failed a
// scored case below full marks, below_threshold a scored case below
// fail_below (attribution classifies errored and below-threshold cases).
type Report struct {
	Cases int `json:"cases" jsonschema:"cases in the run"`
	// Errored cases got no answer because of the infrastructure.
	Errored int `json:"errored" jsonschema:"cases with no answer because of provider or network errors (class infrastructure); in no mean"`
	// Failed cases were scored below full marks.
	Failed int `json:"failed" jsonschema:"scored cases below full marks"`
	// BelowThreshold cases were scored below FailBelow.
	BelowThreshold int `json:"below_threshold" jsonschema:"scored cases below fail_below: the ones attributed besides errored ones"`
	// Attributed counts the classified cases: errored and below threshold.
	Attributed int       `json:"attributed" jsonschema:"cases classified: errored plus below_threshold (plus cases whose pipeline or scorer errored)"`
	FailBelow  float64   `json:"fail_below" jsonschema:"score under which a scored case is attributed (tenant.toml attribution.fail_below; default full marks)"`
	Failures   []Failure `json:"failures" jsonschema:"the attributed cases, each with its class, root step and evidence"`
	// Clusters are sorted largest first (ties: cheaper level, earlier step).
	Clusters []Cluster `json:"clusters" jsonschema:"failures grouped by class and root step, largest first"`
	// Dominant is Clusters[0], nil when nothing failed.
	Dominant *Cluster `json:"dominant,omitempty" jsonschema:"the largest cluster: class@step names it for inspect_cases cluster and propose_variant target_cluster"`
	// RecommendedLevel is the level the dominant cluster points to; "" when
	// nothing failed or the dominant failures are infrastructure.
	RecommendedLevel variant.Level `json:"recommended_level" jsonschema:"the level the dominant cluster points to; empty when nothing failed or it is infrastructure"`
	// Note explains a recommendation a level cannot carry.
	Note string `json:"note,omitempty" jsonschema:"what to do when no level can carry the recommendation"`
	// OracleSteps are the steps an oracle replay can substitute gold for.
	OracleSteps []string `json:"oracle_steps,omitempty" jsonschema:"steps run_oracle can replace with gold"`
}

// ClassCounts returns how many failures each class has, every class
// present: all a validation run may expose.
func (r *Report) ClassCounts() map[string]int {
	out := make(map[string]int, len(Classes))
	for _, c := range Classes {
		out[c] = 0
	}
	for _, f := range r.Failures {
		out[f.Class]++
	}
	return out
}

// Attribute classifies every failed case of results. Steps are the chain's
// steps in execution order (chain.Chain.Steps); which step retrieves comes
// from its kind, never its name.
func Attribute(results []run.CaseResult, steps []chain.StepInfo, opts Options) *Report {
	rep := &Report{Cases: len(results), FailBelow: opts.threshold(), Failures: []Failure{}, Clusters: []Cluster{}}
	a := attributor{steps: steps, opts: opts, pos: map[string]int{}}
	for i, s := range steps {
		a.pos[s.ID] = i
	}
	for i := range results {
		r := &results[i]
		switch {
		case r.Errored():
			rep.Errored++
		case r.Score < scoring.MaxScore:
			rep.Failed++
			if r.Score < rep.FailBelow {
				rep.BelowThreshold++
			}
		}
		if !r.Failed() && r.Score >= rep.FailBelow {
			continue
		}
		f := a.classify(r)
		f.CaseID, f.Score, f.Level = r.CaseID, r.Score, classLevel[f.Class]
		f.Evidence = clip(f.Evidence, maxEvidence)
		rep.Failures = append(rep.Failures, f)
	}
	rep.Attributed = len(rep.Failures)
	rep.Clusters = a.cluster(rep.Failures)
	if len(rep.Clusters) > 0 {
		d := rep.Clusters[0]
		rep.Dominant = &d
		rep.RecommendedLevel = d.Level
		if d.Class == ClassInfrastructure {
			rep.Note = fmt.Sprintf("the largest failure cluster (%d cases) is provider errors at step %s: fix the model server, key or rate limits and evaluate again before changing the pipeline", d.Count, d.RootStep)
		}
	}
	rep.OracleSteps = oracleSteps(steps, opts)
	return rep
}

type attributor struct {
	steps []chain.StepInfo
	opts  Options
	pos   map[string]int
}

// kind is a step's kind from the chain, falling back to the trace's.
func (a *attributor) kind(st *chain.StepTrace) string {
	if i, ok := a.pos[st.StepID]; ok {
		return a.steps[i].Kind
	}
	return st.Kind
}

func (a *attributor) classify(r *run.CaseResult) Failure {
	tr := &r.Trace
	for _, check := range []func(*run.CaseResult) (Failure, bool){
		a.infrastructure, a.truncation, a.offSchema, a.cascade, a.retrieval, a.format,
	} {
		if f, ok := check(r); ok {
			return f
		}
	}
	return a.reasoning(r, tr)
}

// infraPattern recognizes provider failures in error text: the provider's
// APIError renders "<provider> <model>: <status> <text>", timeouts and
// transport errors keep Go's wording.
var infraPattern = regexp.MustCompile(`(?i)\b(429|50[0-9])\b|too many requests|rate limit|internal server error|bad gateway|service unavailable|gateway timeout|timed out|timeout|deadline exceeded|connection (refused|reset)|no such host|unexpected eof|broken pipe|malformed response|response cache miss|context canceled`)

var stepPrefix = regexp.MustCompile(`^step "([^"]+)": `)

func isInfra(msg string) bool { return msg != "" && infraPattern.MatchString(msg) }

func (a *attributor) infrastructure(r *run.CaseResult) (Failure, bool) {
	for _, st := range r.Trace.Steps {
		// A step whose output failed to parse got its answer: whatever the
		// parser's message says, the infrastructure worked.
		if !st.Skipped && st.ParseError == "" && isInfra(st.Error) {
			return Failure{Class: ClassInfrastructure, RootStep: st.StepID,
				Evidence: fmt.Sprintf("step %s failed calling the model: %s", st.StepID, st.Error)}, true
		}
	}
	// A trace without the failing step's record (a run cut short) still
	// carries the error text, prefixed with the step by chain.Run.
	if isInfra(r.ExecError) && !failedToParse(r) {
		root := PipelineStep
		if m := stepPrefix.FindStringSubmatch(r.ExecError); m != nil {
			root = m[1]
		}
		return Failure{Class: ClassInfrastructure, RootStep: root,
			Evidence: "the pipeline failed calling a model: " + r.ExecError}, true
	}
	if isInfra(r.ScoreError) {
		return Failure{Class: ClassInfrastructure, RootStep: ScorerStep,
			Evidence: "the scorer failed calling its model: " + r.ScoreError}, true
	}
	return Failure{}, false
}

func (a *attributor) truncation(r *run.CaseResult) (Failure, bool) {
	for _, st := range r.Trace.Steps {
		if st.FinishReason == "length" {
			return Failure{Class: ClassTruncation, RootStep: st.StepID,
				Evidence: fmt.Sprintf("step %s stopped at max_tokens (finish_reason length) after %d completion tokens", st.StepID, st.CompletionTokens)}, true
		}
	}
	return Failure{}, false
}

// failedToParse reports whether a step of r failed because its output did
// not parse (an llm step off its json_schema).
func failedToParse(r *run.CaseResult) bool {
	return slices.ContainsFunc(r.Trace.Steps, func(st chain.StepTrace) bool { return st.Error != "" && st.ParseError != "" })
}

// offSchema blames a step that failed because the model's answer did not
// parse as the JSON its json_schema asks for: the answer's format, at the
// step that produced it, not a cascade into the steps that never ran.
func (a *attributor) offSchema(r *run.CaseResult) (Failure, bool) {
	for _, st := range r.Trace.Steps {
		if !st.Skipped && st.Error != "" && st.ParseError != "" {
			return Failure{Class: ClassFormat, RootStep: st.StepID,
				Evidence: fmt.Sprintf("step %s answered outside its json_schema: %s", st.StepID, st.ParseError)}, true
		}
	}
	return Failure{}, false
}

// cascade finds the earliest non-retrieve step that failed or came out empty
// while a later step reads it. Retrieve steps are left to the retrieval
// class, which says more about them.
func (a *attributor) cascade(r *run.CaseResult) (Failure, bool) {
	steps := r.Trace.Steps
	for i := range steps {
		st := &steps[i]
		if st.Skipped || a.kind(st) == "retrieve" {
			continue
		}
		failed := st.Error != ""
		if !failed && strings.TrimSpace(st.Output) != "" {
			continue
		}
		consumer := a.consumer(steps[i+1:], st.StepID)
		if consumer == "" {
			continue
		}
		what := "came out empty"
		switch {
		case failed:
			what = "failed (" + st.Error + ")"
		case st.ParseError != "":
			what = "came out empty (" + st.ParseError + ")"
		}
		return Failure{Class: ClassCascade, RootStep: st.StepID,
			Evidence: fmt.Sprintf("step %s %s and step %s reads it", st.StepID, what, consumer)}, true
	}
	return Failure{}, false
}

// consumer is the first of later that reads id, directly or through steps
// that read it.
func (a *attributor) consumer(later []chain.StepTrace, id string) string {
	tainted := map[string]bool{id: true}
	first := ""
	for _, st := range later {
		i, ok := a.pos[st.StepID]
		if !ok {
			continue
		}
		for _, r := range a.steps[i].Reads {
			if tainted[r] {
				tainted[st.StepID] = true
				if first == "" {
					first = st.StepID
				}
				break
			}
		}
	}
	return first
}

func (a *attributor) retrieval(r *run.CaseResult) (Failure, bool) {
	var retrieves []*chain.StepTrace
	for i := range r.Trace.Steps {
		st := &r.Trace.Steps[i]
		if a.kind(st) == "retrieve" && !st.Skipped {
			retrieves = append(retrieves, st)
		}
	}
	if len(retrieves) == 0 {
		return Failure{}, false
	}
	for _, st := range retrieves {
		switch {
		case st.Error != "":
			return Failure{Class: ClassRetrieval, RootStep: st.StepID,
				Evidence: fmt.Sprintf("retrieve step %s failed: %s", st.StepID, st.Error)}, true
		case len(st.Retrieved) == 0:
			return Failure{Class: ClassRetrieval, RootStep: st.StepID,
				Evidence: fmt.Sprintf("retrieve step %s returned no passages", st.StepID)}, true
		}
	}
	if gold := a.opts.Gold.Titles(r.Case()); len(gold) > 0 && hasTitles(retrieves) {
		// With several retrieve steps (multi-hop) a title counts as found
		// when any of them found it; the step that found the fewest gold
		// titles is the one to fix.
		found := map[string]bool{}
		var worst *chain.StepTrace
		worstHits := 0
		for _, st := range retrieves {
			got := map[string]bool{}
			for _, d := range st.Retrieved {
				got[normText(d.Title)] = true
			}
			hits := 0
			for _, g := range gold {
				if got[normText(g)] {
					hits++
					found[normText(g)] = true
				}
			}
			if worst == nil || hits < worstHits {
				worst, worstHits = st, hits
			}
		}
		var missing []string
		for _, g := range gold {
			if !found[normText(g)] {
				missing = append(missing, g)
			}
		}
		if len(missing) == 0 {
			return Failure{}, false
		}
		return Failure{Class: ClassRetrieval, RootStep: worst.StepID,
			Evidence: fmt.Sprintf("retrieve step %s missed gold evidence %s (%d of %d gold titles retrieved)",
				worst.StepID, quoteList(missing, 3), len(gold)-len(missing), len(gold))}, true
	}
	// Without gold evidence: if the expected answer's words are not in any
	// retrieved passage, retrieval is the likeliest cause, but only likely.
	answers := answerTexts(r, a.opts.answerFields())
	if len(answers) == 0 {
		return Failure{}, false
	}
	var text strings.Builder
	for _, st := range retrieves {
		for _, d := range st.Retrieved {
			text.WriteString(d.Title)
			text.WriteByte(' ')
			text.WriteString(d.Text)
			text.WriteByte(' ')
		}
	}
	best := 0.0
	for _, ans := range answers {
		best = max(best, coverage(ans, text.String()))
	}
	if best >= minCoverage {
		return Failure{}, false
	}
	st := retrieves[len(retrieves)-1]
	return Failure{Class: ClassRetrieval, RootStep: st.StepID, LowConfidence: true,
		Evidence: fmt.Sprintf("no gold evidence in the case; only %.0f%% of the words of the expected answer %q appear in what step %s retrieved",
			best*100, clip(answers[0], 60), st.StepID)}, true
}

func hasTitles(retrieves []*chain.StepTrace) bool {
	for _, st := range retrieves {
		for _, d := range st.Retrieved {
			if d.Title != "" {
				return true
			}
		}
	}
	return false
}

func (a *attributor) format(r *run.CaseResult) (Failure, bool) {
	for _, st := range r.Trace.Steps {
		if st.Skipped {
			continue
		}
		if st.ParseError != "" {
			return Failure{Class: ClassFormat, RootStep: st.StepID,
				Evidence: fmt.Sprintf("parse step %s could not extract a value: %s", st.StepID, st.ParseError)}, true
		}
		if st.Error != "" && a.kind(&st) == "parse" {
			return Failure{Class: ClassFormat, RootStep: st.StepID,
				Evidence: fmt.Sprintf("parse step %s failed: %s", st.StepID, st.Error)}, true
		}
	}
	out := a.outputStep(&r.Trace)
	if r.ScoreError != "" {
		return Failure{Class: ClassFormat, RootStep: out,
			Evidence: "the scorer could not read the final output: " + r.ScoreError}, true
	}
	if r.ExecError != "" {
		return Failure{}, false
	}
	final := " " + normText(r.Trace.Final) + " "
	for _, ans := range answerTexts(r, a.opts.answerFields()) {
		if n := normText(ans); n != "" && strings.Contains(final, " "+n+" ") {
			return Failure{Class: ClassFormat, RootStep: out,
				Evidence: fmt.Sprintf("the final output %q contains the expected answer %q but scored %.4g", clip(r.Trace.Final, 120), clip(ans, 60), r.Score)}, true
		}
	}
	return Failure{}, false
}

// reasoning blames the last step that called a model before the output: a
// parse step at the end only extracts what that step said.
func (a *attributor) reasoning(r *run.CaseResult, tr *chain.Trace) Failure {
	out := a.outputStep(tr)
	root := out
	for i := range tr.Steps {
		st := &tr.Steps[i]
		if st.Skipped {
			continue
		}
		if k := a.kind(st); k != "retrieve" && k != "parse" {
			root = st.StepID
		}
		if st.StepID == out {
			break
		}
	}
	if st := tr.Step(root); st != nil && st.Error != "" {
		return Failure{Class: ClassReasoning, RootStep: root, Evidence: fmt.Sprintf("step %s failed: %s", root, st.Error)}
	}
	answers := answerTexts(r, a.opts.answerFields())
	if len(answers) == 0 {
		return Failure{Class: ClassReasoning, RootStep: root, Evidence: fmt.Sprintf("the final output %q scored %.4g", clip(tr.Final, 160), r.Score)}
	}
	return Failure{Class: ClassReasoning, RootStep: root,
		Evidence: fmt.Sprintf("step %s answered %q where %q was expected (score %.4g)", root, clip(tr.Final, 120), clip(answers[0], 80), r.Score)}
}

// outputStep is the configured output step, else the last step whose output
// is the final output, else the last step.
func (a *attributor) outputStep(tr *chain.Trace) string {
	if a.opts.OutputStep != "" {
		return a.opts.OutputStep
	}
	for i := len(tr.Steps) - 1; i >= 0; i-- {
		if tr.Final != "" && tr.Steps[i].Output == tr.Final {
			return tr.Steps[i].StepID
		}
	}
	if len(a.steps) > 0 {
		return a.steps[len(a.steps)-1].ID
	}
	if len(tr.Steps) > 0 {
		return tr.Steps[len(tr.Steps)-1].StepID
	}
	return ""
}

const maxExamples = 5

func (a *attributor) cluster(fs []Failure) []Cluster {
	type key struct{ class, step string }
	byKey := map[key]*Cluster{}
	var order []key
	for _, f := range fs {
		k := key{f.Class, f.RootStep}
		c := byKey[k]
		if c == nil {
			c = &Cluster{Class: f.Class, RootStep: f.RootStep, Level: f.Level, Examples: []string{}}
			byKey[k] = c
			order = append(order, k)
		}
		c.Count++
		if f.LowConfidence {
			c.LowConfidence++
		}
		if len(c.Examples) < maxExamples {
			c.Examples = append(c.Examples, f.CaseID)
		}
	}
	out := make([]Cluster, 0, len(order))
	for _, k := range order {
		c := *byKey[k]
		c.Share = float64(c.Count) / float64(len(fs))
		out = append(out, c)
	}
	slices.SortStableFunc(out, func(x, y Cluster) int {
		return cmp.Or(
			cmp.Compare(y.Count, x.Count),
			cmp.Compare(levelRank(x.Level), levelRank(y.Level)),
			cmp.Compare(a.stepRank(x.RootStep), a.stepRank(y.RootStep)),
			cmp.Compare(slices.Index(Classes, x.Class), slices.Index(Classes, y.Class)),
		)
	})
	return out
}

// levelRank orders levels cheapest first; no level (infrastructure) comes
// last, since no variant can act on it.
func levelRank(level variant.Level) int {
	if r := level.Rank(); r >= 0 {
		return r
	}
	return len(variant.Levels)
}

func (a *attributor) stepRank(id string) int {
	if i, ok := a.pos[id]; ok {
		return i
	}
	return len(a.steps)
}
