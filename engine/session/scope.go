package session

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fapo-dev/fapo/engine/internal/pathglob"
	"github.com/fapo-dev/fapo/engine/internal/suggest"
	"github.com/fapo-dev/fapo/engine/variant"
)

// Scope is the contract of a session, fixed when it starts: what counts as
// done, what may be spent, and what may be changed. It is written once,
// read-only, and never edited; a different scope needs a new session.
type Scope struct {
	ID            string          `json:"id"`
	Tenant        string          `json:"tenant"`
	Target        Target          `json:"target"`
	Budget        Budget          `json:"budget"`
	AllowedLevels []variant.Level `json:"allowed_levels"`
	// FrozenFiles are paths relative to the tenant that no proposal may
	// change: exact paths, path.Match patterns, or "dir/**" for a subtree.
	FrozenFiles []string `json:"frozen_files"`
	// Patience is how many consecutive non-improving compares at a level
	// exhaust it and unlock the next one.
	Patience   int        `json:"patience"`
	Acceptance Acceptance `json:"acceptance"`
	Created    time.Time  `json:"created"`
}

// Target is the score the session aims for, e.g. composite_score >= 70.
type Target struct {
	Metric string  `json:"metric"`
	Min    float64 `json:"min"`
}

func (t Target) String() string { return fmt.Sprintf("%s >= %g", t.Metric, t.Min) }

// Budget bounds a session. MaxUSD 0 means no limit on money (a local model).
type Budget struct {
	MaxVariants        int     `json:"max_variants"`
	MaxValidationEvals int     `json:"max_validation_evals"`
	MaxUSD             float64 `json:"max_usd"`
}

// Acceptance is how compare decides; part of the contract so that the rule
// cannot change halfway through.
type Acceptance struct {
	Rule      string `json:"rule"`
	Bootstrap int    `json:"bootstrap"`
	Seed      int64  `json:"seed"`
	// Thresholdout, when set, answers every compare through the reusable
	// holdout with its own budget of answers drawn from validation.
	Thresholdout *Thresholdout `json:"thresholdout,omitempty"`
	// MaxCostRatio and MaxLatencyRatio, when above 0, refuse a candidate
	// whose $ per case, or median latency per case, exceeds the
	// incumbent's by more than that factor on any task model.
	MaxCostRatio    float64 `json:"max_cost_ratio,omitempty"`
	MaxLatencyRatio float64 `json:"max_latency_ratio,omitempty"`
	// TaskModels are the model blocks validation runs on, each its own
	// result; empty means [model] alone. ModelsRule decides across them.
	TaskModels []string `json:"task_models,omitempty"`
	ModelsRule string   `json:"models_rule,omitempty"`
	// Repeats is how many times each validation case is evaluated (0 and
	// 1 mean once); PassK, when above 0, asks for pass^k.
	Repeats int `json:"repeats,omitempty"`
	PassK   int `json:"pass_k,omitempty"`
}

// Models is the task models validation runs on, in order: [""] ([model])
// when none are declared.
func (a Acceptance) Models() []string {
	if len(a.TaskModels) == 0 {
		return []string{""}
	}
	return a.TaskModels
}

// Samples is the number of evaluations of each validation case.
func (a Acceptance) Samples() int { return max(a.Repeats, 1) }

// Defaults filled in when a scope leaves them zero.
const (
	DefaultPatience  = 3
	DefaultBootstrap = 2000
)

// Frozen reports whether rel (relative to the tenant) is frozen by the scope.
func (sc Scope) Frozen(rel string) bool { return pathglob.Match(sc.FrozenFiles, rel) }

// normalize fills defaults and checks every field, so a bad contract is
// refused before it is written and can never be fixed afterwards.
func (sc *Scope) normalize() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if strings.TrimSpace(sc.Tenant) == "" {
		bad("scope: tenant is empty: name the tenant the session optimizes")
	}
	if strings.TrimSpace(sc.Target.Metric) == "" {
		bad("scope: target.metric is empty: name the score to reach, e.g. composite_score")
	}
	if sc.Budget.MaxVariants <= 0 {
		bad("scope: budget.max_variants is %d: allow at least one variant", sc.Budget.MaxVariants)
	}
	if sc.Budget.MaxValidationEvals <= 0 {
		bad("scope: budget.max_validation_evals is %d: allow at least one validation evaluation", sc.Budget.MaxValidationEvals)
	}
	if sc.Budget.MaxUSD < 0 {
		bad("scope: budget.max_usd is %g: use a positive amount, or 0 for no limit", sc.Budget.MaxUSD)
	}
	if len(sc.AllowedLevels) == 0 {
		bad("scope: allowed_levels is empty: allow at least %q", variant.LevelPrompt)
	}
	seen := map[variant.Level]bool{}
	for _, l := range sc.AllowedLevels {
		if _, err := variant.ParseLevel(string(l)); err != nil {
			bad("scope: allowed %v", err)
		}
		if seen[l] {
			bad("scope: allowed level %q is listed twice", l)
		}
		seen[l] = true
	}
	// Cheapest first, whatever order the caller used: escalation walks it.
	slices.SortStableFunc(sc.AllowedLevels, func(a, b variant.Level) int { return a.Rank() - b.Rank() })
	for _, f := range sc.FrozenFiles {
		if err := pathglob.Check(f); err != nil {
			bad("scope: frozen file %q: %v", f, err)
		}
	}
	if sc.Patience == 0 {
		sc.Patience = DefaultPatience
	}
	if sc.Patience < 0 {
		bad("scope: patience is %d: use a positive number of non-improving compares", sc.Patience)
	}
	if sc.Acceptance.Rule == "" {
		sc.Acceptance.Rule = RuleImproves
	}
	if !slices.Contains(Rules, sc.Acceptance.Rule) {
		bad("scope: acceptance rule %q is unknown: use %s%s", sc.Acceptance.Rule, strings.Join(Rules, " or "), suggest.Hint(sc.Acceptance.Rule, Rules))
	}
	if sc.Acceptance.Bootstrap == 0 {
		sc.Acceptance.Bootstrap = DefaultBootstrap
	}
	if sc.Acceptance.Bootstrap < MinResamples {
		bad("scope: acceptance bootstrap is %d: use at least %d resamples", sc.Acceptance.Bootstrap, MinResamples)
	}
	if a := sc.Acceptance; a.MaxCostRatio < 0 || a.MaxLatencyRatio < 0 || a.Repeats < 0 || a.PassK < 0 || a.PassK > a.Samples() {
		bad("scope: acceptance bounds must be positive and pass_k at most repeats (max_cost_ratio %v, max_latency_ratio %v, repeats %d, pass_k %d)",
			a.MaxCostRatio, a.MaxLatencyRatio, a.Repeats, a.PassK)
	}
	if len(sc.Acceptance.TaskModels) > 0 && sc.Acceptance.ModelsRule == "" {
		sc.Acceptance.ModelsRule = ModelsRuleEvery
	}
	if r := sc.Acceptance.ModelsRule; r != "" && !slices.Contains(ModelsRules, r) {
		bad("scope: models rule %q is unknown: use %s%s", r, strings.Join(ModelsRules, " or "), suggest.Hint(r, ModelsRules))
	}
	if th := sc.Acceptance.Thresholdout; th != nil {
		if err := th.Valid(); err != nil {
			bad("scope: acceptance %v", err)
		}
	}
	return errors.Join(errs...)
}

var sessionIDPattern = regexp.MustCompile(`^s[0-9]{4,9}$`)

// ParseSessionID validates a session id ("s" and four digits, e.g. s0003);
// ids name mirror directories and appear in URLs, so nothing else is
// accepted.
func ParseSessionID(s string) (string, error) {
	if !sessionIDPattern.MatchString(s) {
		return "", fmt.Errorf("invalid session id %q: want \"s\" followed by four digits, e.g. s0001", s)
	}
	n, _ := strconv.Atoi(s[1:])
	if canon := formatSessionID(n); canon != s {
		return "", fmt.Errorf("invalid session id %q: did you mean %s?", s, canon)
	}
	return s, nil
}

func formatSessionID(n int) string { return fmt.Sprintf("s%04d", n) }
