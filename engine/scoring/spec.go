package scoring

// Spec is the [scorer] block of tenant.toml (and each component of a
// composite scorer). Which fields apply depends on Kind.
type Spec struct {
	// Kind is one of Kinds.
	Kind string `toml:"kind"`
	// Field is the expected field compared against, as a path into the case
	// ("answer" means expected.answer; "a.b" and "items.0" reach inside).
	// Default "answer" ("label" for the label scorer). When the value is a
	// list, each element is a gold answer and the best match counts.
	Field string `toml:"field"`
	// Step scores the output of the named chain step, read from the trace,
	// instead of the chain's final output (pipeline-aware scoring).
	Step string `toml:"step"`
	// Normalize lists normalizers applied to both sides, in order: lower,
	// strip, punctuation, articles, whitespace, nfkc. Unset, f1 uses SQuAD's
	// normalization (lower, punctuation, articles, whitespace), label uses
	// strip and lower, and the other text scorers use strip; an explicit
	// empty list means none.
	Normalize []string `toml:"normalize"`
	// Pattern is the regular expression of the regex scorer; when it has a
	// named group "answer" that group is compared to the expected field,
	// otherwise a match is full marks.
	Pattern string `toml:"pattern"`
	// Tolerance is the absolute tolerance of the numeric scorer.
	Tolerance float64 `toml:"tolerance"`
	// Labels is the allowed label set of the label scorer; LabelsField reads
	// it from the case instead (e.g. "context.labels").
	Labels      []string `toml:"labels"`
	LabelsField string   `toml:"labels_field"`
	// Path selects a value inside a JSON output (json_field), e.g. "answer"
	// or "result.items.0"; Inner scores the selected value.
	Path  string `toml:"path"`
	Inner *Spec  `toml:"inner"`
	// Command is the executable and arguments of a command scorer, run in the
	// tenant directory and spoken to as in command-protocol.md; Batch sends
	// all cases in one process; TimeoutSeconds bounds one process (default 60).
	Command        []string `toml:"command"`
	Batch          bool     `toml:"batch"`
	TimeoutSeconds float64  `toml:"timeout_seconds"`
	// Model names a [models.NAME] block of the tenant (llm_judge); Rubric or
	// RubricFile holds the judging instructions.
	Model      string `toml:"model"`
	Rubric     string `toml:"rubric"`
	RubricFile string `toml:"rubric_file"`
	// Order is how a trajectory scorer compares the tools called with the
	// expected ones: "any" (default: each expected tool called) or
	// "in_order" (the expected tools called in that order).
	Order string `toml:"order"`
	// RedundancyPenalty is the points a trajectory scorer takes off per
	// repeated tool call (same tool, same arguments); default 0.
	RedundancyPenalty float64 `toml:"redundancy_penalty"`
	// Components are the weighted parts of a composite scorer.
	Components []Component `toml:"components"`
}

// Component is one weighted, named part of a composite scorer.
type Component struct {
	Name   string  `toml:"name"`
	Weight float64 `toml:"weight"`
	Spec   Spec    `toml:"scorer"`
}

// Kinds lists every scorer kind, for validation and suggestions.
var Kinds = []string{
	"exact_match", "f1", "contains", "regex", "numeric", "label", "json_field",
	"command", "llm_judge", "composite", "trajectory", "ifeval",
}

// Normalizers lists every normalizer name.
var Normalizers = []string{"lower", "strip", "punctuation", "articles", "whitespace", "nfkc"}

// ExpectedFields lists the expected values spec compares outputs with, as
// case paths ("expected.label"), every component of a composite and the
// inner scorer of json_field included, in order and without repeats.
// Attribution reads them to tell a format failure (the expected value is
// in the output) from a wrong answer. Scorers that compare with no
// expected field (command, llm_judge, trajectory, ifeval) add none.
func ExpectedFields(spec Spec) []string {
	var out []string
	var walk func(Spec)
	walk = func(s Spec) {
		def := ""
		switch s.Kind {
		case "exact_match", "f1", "contains", "regex", "numeric":
			def = "answer"
		case "label":
			def = "label"
		case "json_field":
			if s.Inner != nil {
				walk(*s.Inner)
			}
		case "composite":
			for _, c := range s.Components {
				walk(c.Spec)
			}
		}
		if def == "" {
			return
		}
		p := "expected." + expectedPath(s.Field, def)
		for _, q := range out {
			if q == p {
				return
			}
		}
		out = append(out, p)
	}
	walk(spec)
	return out
}
