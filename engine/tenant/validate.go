package tenant

import (
	"fmt"
	"maps"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/fapo-dev/fapo/engine/internal/suggest"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/scoring"
	"github.com/fapo-dev/fapo/engine/variant"
)

// Documented defaults of tenant.toml; a key left out takes these values.
const (
	DefaultTrain              = 0.6
	DefaultValidation         = 0.2
	DefaultTest               = 0.2
	DefaultDataSeed           = 42
	DefaultConcurrency        = 8
	DefaultTimeoutSeconds     = 60
	DefaultMaxRetries         = 4
	DefaultTargetMetric       = "composite_score"
	DefaultMaxVariants        = 20
	DefaultMaxValidationEvals = 12
	DefaultPatience           = 3
	DefaultRule               = "improves"
	DefaultBootstrap          = 2000
	DefaultAcceptanceSeed     = 7
	DefaultMaxPromptChars     = 20000
	DefaultLeakageNgram       = 8
)

// Known values of enumerated keys (the levels are variant.Levels).
var (
	Providers       = []string{"openai", "openai_compatible", "sagemaker"}
	AcceptanceRules = []string{"improves", "significant", "significant_adjusted"}
	CasePrefixes    = []string{"context.", "expected.", "metadata."}
)

var (
	// A tenant name is also its directory name and appears in URLs and
	// journal lines, so it is kept to characters that need no quoting.
	nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	// A step id is referenced from templates as .steps.ID, so it must be a
	// Go template identifier.
	stepIDRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// An environment variable name; a pasted API key ("sk-...") fails this.
	envRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	// A case path segment sequence after its prefix: "label", "answer.text".
	pathRestRE = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

// ValidName reports whether name may name a tenant.
func ValidName(name string) bool { return len(name) <= 64 && nameRE.MatchString(name) }

// applyDefaults fills what the file left out. Keys where zero is a real
// choice (a seed, zero retries) are filled only when absent, which is why
// the metadata is needed and not just the zero value.
func applyDefaults(c *Config, md toml.MetaData) {
	d := &c.Data
	if !md.IsDefined("data", "train") && !md.IsDefined("data", "validation") && !md.IsDefined("data", "test") {
		d.Train, d.Validation, d.Test = DefaultTrain, DefaultValidation, DefaultTest
	}
	if !md.IsDefined("data", "seed") {
		d.Seed = DefaultDataSeed
	}
	modelDefaults(&c.Model, md, "model")
	for name, m := range c.Models {
		modelDefaults(&m, md, "models", name)
		c.Models[name] = m
	}
	if c.Target.Metric == "" {
		c.Target.Metric = DefaultTargetMetric
	}
	if !md.IsDefined("budget", "max_variants") {
		c.Budget.MaxVariants = DefaultMaxVariants
	}
	if !md.IsDefined("budget", "max_validation_evals") {
		c.Budget.MaxValidationEval = DefaultMaxValidationEvals
	}
	if !md.IsDefined("escalation", "levels") {
		c.Escalation.Levels = slices.Clone(variant.Levels)
	}
	if !md.IsDefined("escalation", "patience") {
		c.Escalation.Patience = DefaultPatience
	}
	if c.Acceptance.Rule == "" {
		c.Acceptance.Rule = DefaultRule
	}
	if !md.IsDefined("acceptance", "bootstrap") {
		c.Acceptance.Bootstrap = DefaultBootstrap
	}
	if !md.IsDefined("acceptance", "seed") {
		c.Acceptance.Seed = DefaultAcceptanceSeed
	}
	if c.Acceptance.Repeats == 0 {
		c.Acceptance.Repeats = 1
	}
	if c.Acceptance.ModelsRule == "" {
		c.Acceptance.ModelsRule = ModelsRuleEvery
	}
	if !md.IsDefined("review", "max_prompt_chars") {
		c.Review.MaxPromptChars = DefaultMaxPromptChars
	}
	if !md.IsDefined("review", "leakage_ngram") {
		c.Review.LeakageNgram = DefaultLeakageNgram
	}
}

func modelDefaults(m *provider.Spec, md toml.MetaData, key ...string) {
	def := func(k string) bool { return md.IsDefined(append(slices.Clone(key), k)...) }
	if !def("concurrency") {
		m.Concurrency = DefaultConcurrency
	}
	if !def("timeout_seconds") {
		m.TimeoutSeconds = DefaultTimeoutSeconds
	}
	if !def("max_retries") {
		m.MaxRetries = DefaultMaxRetries
	}
}

// validate checks a decoded, defaulted config. dirName is the base name of
// the tenant directory, which the tenant name must equal: Resolve and
// list_tenants find a tenant by directory, and a second spelling in the file
// would let two names point at one tenant or one name at two.
func validate(c *Config, dirName string) []Problem {
	var ps problems

	switch {
	case c.Name == "":
		ps.add("name", "missing; set name = %q (the directory name)", dirName)
	case !ValidName(c.Name):
		ps.add("name", "%q is not a valid tenant name: use lowercase letters, digits, '_' and '-', starting with a letter or digit, at most 64 characters", c.Name)
	case dirName != "" && c.Name != dirName:
		ps.add("name", "%q does not match the directory name %q; rename the directory or set name = %q", c.Name, dirName, dirName)
	}
	if strings.TrimSpace(c.TaskType) == "" {
		ps.add("task_type", "missing; set the kind of task, e.g. task_type = \"qa\" (it must match the task_type of the cases)")
	}

	validateData(&ps, c.Data)
	validateModel(&ps, "model", c.Model)
	for _, name := range slices.Sorted(maps.Keys(c.Models)) {
		key := "models." + name
		if !stepIDRE.MatchString(name) {
			ps.add(key, "model name %q must be an identifier (letters, digits, '_')", name)
		}
		validateModel(&ps, key, c.Models[name])
	}
	for _, name := range slices.Sorted(maps.Keys(c.Prices)) {
		p := c.Prices[name]
		if bad(p.InputPerMTok) || p.InputPerMTok < 0 {
			ps.add("prices."+name+".input_per_mtok", "%v: must be a non-negative number of dollars per million tokens", p.InputPerMTok)
		}
		if bad(p.OutputPerMTok) || p.OutputPerMTok < 0 {
			ps.add("prices."+name+".output_per_mtok", "%v: must be a non-negative number of dollars per million tokens", p.OutputPerMTok)
		}
	}

	validateScorer(&ps, c)
	if c.Attribution.AnalysisModel != "" {
		ps.modelRef("attribution.analysis_model", c.Attribution.AnalysisModel, c.Models)
	}
	if c.Review.Model != "" {
		ps.modelRef("review.model", c.Review.Model, c.Models)
	}

	validateTarget(&ps, c)
	if c.Budget.MaxVariants <= 0 {
		ps.add("budget.max_variants", "%d: must be at least 1", c.Budget.MaxVariants)
	}
	if c.Budget.MaxValidationEval <= 0 {
		ps.add("budget.max_validation_evals", "%d: must be at least 1", c.Budget.MaxValidationEval)
	}
	if bad(c.Budget.MaxUSD) || c.Budget.MaxUSD < 0 {
		ps.add("budget.max_usd", "%v: must be a non-negative number of dollars (0 means no dollar limit)", c.Budget.MaxUSD)
	}
	if c.Review.MaxPromptChars <= 0 {
		ps.add("review.max_prompt_chars", "%d: must be at least 1", c.Review.MaxPromptChars)
	}
	if c.Review.LeakageNgram <= 0 {
		ps.add("review.leakage_ngram", "%d: must be at least 1", c.Review.LeakageNgram)
	}

	validateLevels(&ps, c.Escalation.Levels)
	if c.Escalation.Patience < 1 {
		ps.add("escalation.patience", "%d: must be at least 1 (compares without improvement before the next level opens)", c.Escalation.Patience)
	}
	if !slices.Contains(AcceptanceRules, c.Acceptance.Rule) {
		ps.add("acceptance.rule", "unknown %q%s; use one of %s", c.Acceptance.Rule, suggest.Hint(c.Acceptance.Rule, AcceptanceRules), strings.Join(AcceptanceRules, ", "))
	}
	if c.Acceptance.Bootstrap <= 0 {
		ps.add("acceptance.bootstrap", "%d: must be at least 1 resample", c.Acceptance.Bootstrap)
	}
	if th := c.Acceptance.Thresholdout; th != nil {
		if bad(th.Threshold) || th.Threshold <= 0 {
			ps.add("acceptance.thresholdout.threshold", "%v: must be above 0 (score points train and validation may differ, e.g. 4)", th.Threshold)
		}
		if bad(th.Sigma) || th.Sigma <= 0 {
			ps.add("acceptance.thresholdout.sigma", "%v: must be above 0 (the noise scale in score points, e.g. 1)", th.Sigma)
		}
		if th.Budget < 1 {
			ps.add("acceptance.thresholdout.budget", "%d: must be at least 1 (answers that may come from validation)", th.Budget)
		}
	}
	validateAcceptanceExtras(&ps, c)
	if f := c.Attribution.FailBelow; bad(f) || f < 0 || f > scoring.MaxScore {
		ps.add("attribution.fail_below", "%v: must be between 0 and %v", f, scoring.MaxScore)
	}

	validateTools(&ps, c.Tools)
	if c.Pipeline != nil {
		for _, msg := range c.Pipeline.Validate() {
			ps.add("pipeline", "%s", msg)
		}
	}
	for _, step := range slices.Sorted(maps.Keys(c.Oracle)) {
		key := "oracle." + step
		if !stepIDRE.MatchString(step) {
			ps.add(key, "%q is not a step id: use letters, digits and '_', not starting with a digit", step)
		}
		if v := c.Oracle[step]; !casePath(v, "expected.") {
			ps.add(key, "%q: must be a path into the expected values, e.g. \"expected.supporting_facts\"", v)
		}
	}
	return ps
}

func validateData(ps *problems, d DataConfig) {
	for _, r := range []struct {
		key string
		v   float64
	}{{"data.train", d.Train}, {"data.validation", d.Validation}, {"data.test", d.Test}} {
		if bad(r.v) || r.v < 0 || r.v > 1 {
			ps.add(r.key, "%v: must be a fraction between 0 and 1", r.v)
		}
	}
	if sum := d.Train + d.Validation + d.Test; !bad(sum) && math.Abs(sum-1) > 1e-9 {
		ps.add("data", "train + validation + test = %v; the three fractions must sum to 1", sum)
	}
	if !(d.Train > 0) {
		ps.add("data.train", "%v: must be above 0, the agent needs training cases to study", d.Train)
	}
	if !(d.Validation > 0) {
		ps.add("data.validation", "%v: must be above 0, acceptance is decided on validation", d.Validation)
	}
	if !(d.Test > 0) {
		ps.add("data.test", "%v: must be above 0, the final evaluation needs a test split", d.Test)
	}
	if d.Stratify != "" && !casePath(d.Stratify, CasePrefixes...) {
		ps.add("data.stratify", "%q: must be a case path starting with %s, e.g. \"expected.label\"", d.Stratify, strings.Join(CasePrefixes, ", "))
	}
}

func validateModel(ps *problems, key string, m provider.Spec) {
	switch m.Provider {
	case "":
		ps.add(key+".provider", "missing; use one of %s", strings.Join(Providers, ", "))
	case "openai", "openai_compatible":
		if m.Name == "" {
			ps.add(key+".name", "missing; set the model name sent to the provider, e.g. name = \"gpt-4o-mini\"")
		}
		if m.Provider == "openai_compatible" && m.BaseURL == "" && m.BaseURLEnv == "" {
			ps.add(key+".base_url", "missing; an openai_compatible provider needs the server's URL, e.g. base_url = \"http://localhost:8000/v1\"")
		}
		if m.BaseURL != "" {
			if u, err := url.Parse(m.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				ps.add(key+".base_url", "%q is not an http(s) URL, e.g. \"http://localhost:8000/v1\"", m.BaseURL)
			}
		}
	case "sagemaker":
		if m.Region == "" {
			ps.add(key+".region", "missing; a sagemaker model needs its AWS region, e.g. region = \"us-east-1\"")
		}
		if m.Endpoint == "" {
			ps.add(key+".endpoint", "missing; a sagemaker model needs its endpoint name")
		}
	default:
		ps.add(key+".provider", "unknown %q%s; use one of %s", m.Provider, suggest.Hint(m.Provider, Providers), strings.Join(Providers, ", "))
	}
	for _, kv := range [][2]string{{"base_url_env", m.BaseURLEnv}, {"name_env", m.NameEnv}} {
		if kv[1] != "" && !envRE.MatchString(kv[1]) {
			ps.add(key+"."+kv[0], "%q is not an environment variable name, e.g. \"FAPO_BASE_URL\"", kv[1])
		}
	}
	if m.APIKeyEnv != "" && !envRE.MatchString(m.APIKeyEnv) {
		ps.add(key+".api_key_env", "%q is not an environment variable name; name the variable that holds the key (e.g. \"OPENAI_API_KEY\"), never the key itself", m.APIKeyEnv)
	}
	if m.Concurrency < 1 {
		ps.add(key+".concurrency", "%d: must be at least 1", m.Concurrency)
	}
	if bad(m.TimeoutSeconds) || m.TimeoutSeconds <= 0 {
		ps.add(key+".timeout_seconds", "%v: must be above 0", m.TimeoutSeconds)
	}
	if m.MaxRetries < 0 {
		ps.add(key+".max_retries", "%d: must be 0 or more", m.MaxRetries)
	}
	if m.RequestsPerMinute < 0 {
		ps.add(key+".requests_per_minute", "%d: must be 0 (unlimited) or more", m.RequestsPerMinute)
	}
	if m.TokensPerMinute < 0 {
		ps.add(key+".tokens_per_minute", "%d: must be 0 (unlimited) or more", m.TokensPerMinute)
	}
}

// validateScorer checks the scorer block and that every model it names is
// declared.
func validateScorer(ps *problems, c *Config) {
	for _, err := range scoring.ValidateSpec(c.Scorer) {
		msg := err.Error()
		// ValidateSpec starts each message with the full key path.
		if key, rest, ok := strings.Cut(msg, ": "); ok && strings.HasPrefix(key, "scorer") && !strings.Contains(key, " ") {
			ps.add(key, "%s", rest)
		} else {
			ps.add("scorer", "%s", msg)
		}
	}
	walkSpec(c.Scorer, "scorer", func(key string, s scoring.Spec) {
		if s.Model != "" {
			ps.modelRef(key+".model", s.Model, c.Models)
		}
	})
}

// walkSpec visits s and every nested scorer spec with its key path.
func walkSpec(s scoring.Spec, key string, visit func(string, scoring.Spec)) {
	visit(key, s)
	if s.Inner != nil {
		walkSpec(*s.Inner, key+".inner", visit)
	}
	for i, comp := range s.Components {
		walkSpec(comp.Spec, fmt.Sprintf("%s.components[%d].scorer", key, i), visit)
	}
}

func (ps *problems) modelRef(key, name string, models map[string]provider.Spec) {
	if _, ok := models[name]; ok {
		return
	}
	names := slices.Sorted(maps.Keys(models))
	if len(names) == 0 {
		ps.add(key, "names model %q but there is no [models.%s] block; declare it", name, name)
		return
	}
	ps.add(key, "names model %q, which is not declared%s; declared: %s", name, suggest.Hint(name, names), strings.Join(names, ", "))
}

func validateTarget(ps *problems, c *Config) {
	metric := c.Target.Metric
	if c.Scorer.Kind == "composite" && metric != DefaultTargetMetric {
		var names []string
		for _, comp := range c.Scorer.Components {
			names = append(names, comp.Name)
		}
		if !slices.Contains(names, metric) {
			known := append([]string{DefaultTargetMetric}, names...)
			ps.add("target.metric", "unknown %q%s; use one of %s", metric, suggest.Hint(metric, known), strings.Join(known, ", "))
		}
	} else if !stepIDRE.MatchString(metric) {
		ps.add("target.metric", "%q is not a metric name; use %q or a key of the score breakdown", metric, DefaultTargetMetric)
	}
	if m := c.Target.Min; bad(m) || m < 0 || m > scoring.MaxScore {
		ps.add("target.min", "%v: must be between 0 and %v", m, scoring.MaxScore)
	}
	if g := c.Target.Gain; bad(g) || g < 0 || g > scoring.MaxScore {
		ps.add("target.gain", "%v: must be between 0 and %v score points (or left out)", g, scoring.MaxScore)
	}
}

func validateLevels(ps *problems, levels []variant.Level) {
	all := variant.JoinLevels(variant.Levels)
	if len(levels) == 0 {
		ps.add("escalation.levels", "empty; allow at least one of %s", all)
		return
	}
	next := 0 // rank the next entry may start at
	for _, l := range levels {
		i := l.Rank()
		switch {
		case i < 0:
			names := variant.LevelNames(variant.Levels)
			ps.add("escalation.levels", "unknown level %q%s; use %s, cheapest first", l, suggest.Hint(string(l), names), all)
			return
		case i < next:
			ps.add("escalation.levels", "%q is out of order or repeated; list levels cheapest first: %s", l, all)
			return
		}
		next = i + 1
	}
}

// casePath reports whether p starts with one of prefixes and names a field
// after it.
func casePath(p string, prefixes ...string) bool {
	for _, pre := range prefixes {
		if rest, ok := strings.CutPrefix(p, pre); ok {
			return pathRestRE.MatchString(rest)
		}
	}
	return false
}

func bad(f float64) bool { return math.IsNaN(f) || math.IsInf(f, 0) }

// validateAcceptanceExtras checks the cost and latency bounds, the task
// models and the repeats of [acceptance].
func validateAcceptanceExtras(ps *problems, c *Config) {
	a := c.Acceptance
	for i, r := range []float64{a.MaxCostRatio, a.MaxLatencyRatio} {
		key := []string{"acceptance.max_cost_ratio", "acceptance.max_latency_ratio"}[i]
		if math.IsNaN(r) || math.IsInf(r, 0) || r < 0 {
			ps.add(key, "%v: must be a positive factor (1.5 allows half as much again), or left out for no bound", r)
		}
	}
	seen := map[string]bool{}
	for _, m := range a.TaskModels {
		if _, ok := c.Models[m]; !ok {
			ps.add("acceptance.task_models", "%q is not a [models.%s] block: declare it, or list only declared blocks%s", m, m, suggest.Hint(m, slices.Sorted(maps.Keys(c.Models))))
		}
		if seen[m] {
			ps.add("acceptance.task_models", "%q is listed twice", m)
		}
		seen[m] = true
	}
	if rules := []string{ModelsRuleEvery, ModelsRuleMean}; !slices.Contains(rules, a.ModelsRule) {
		ps.add("acceptance.models_rule", "unknown %q%s; use every or mean", a.ModelsRule, suggest.Hint(a.ModelsRule, rules))
	}
	if len(a.TaskModels) > 1 && a.Thresholdout != nil {
		ps.add("acceptance.task_models", "several task models cannot answer through [acceptance.thresholdout], whose train side runs on [model] alone: drop one of the two")
	}
	if a.Repeats < 1 {
		ps.add("acceptance.repeats", "%d: must be at least 1 (evaluations of each validation case)", a.Repeats)
	}
	if a.PassK < 0 || a.PassK > a.Repeats {
		ps.add("acceptance.pass_k", "%d: must be between 1 and acceptance.repeats (%d), or left out", a.PassK, a.Repeats)
	}
}
