// Package tenant loads and validates a tenant: tenant.toml, its baseline chain
// and prompts, and the paths inside it, which are confined to the tenant
// directory.
package tenant

import (
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/pipeline"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/scoring"
	"github.com/fapo-dev/fapo/engine/variant"
)

// Config is tenant.toml.
type Config struct {
	// Name is required and must equal the tenant directory's name: tenants
	// are found by directory (Resolve, list_tenants) and named by Name in
	// the sealed store and the journal, so the two may never disagree.
	Name        string `toml:"name"`
	Description string `toml:"description"`
	TaskType    string `toml:"task_type"`

	Data DataConfig `toml:"data"`
	// Model is the default model of llm steps.
	Model provider.Spec `toml:"model"`
	// Models are further named models: a judge, a reviewer, a step's model.
	Models map[string]provider.Spec `toml:"models"`
	// Prices maps a provider model name to its price.
	Prices map[string]provider.Price `toml:"prices"`

	Scorer      scoring.Spec      `toml:"scorer"`
	Target      TargetConfig      `toml:"target"`
	Budget      BudgetConfig      `toml:"budget"`
	Review      ReviewConfig      `toml:"review"`
	Escalation  EscalationConfig  `toml:"escalation"`
	Acceptance  AcceptanceConfig  `toml:"acceptance"`
	Attribution AttributionConfig `toml:"attribution"`
	// Oracle maps a step id to the case field holding its gold output,
	// e.g. retrieve = "expected.supporting_facts".
	Oracle map[string]string `toml:"oracle"` // Tools are the tools react steps may call, by name ([tools.NAME]); a
	// chain, and so a variant, may use only these.
	Tools map[string]ToolConfig `toml:"tools"`
	// Pipeline, when set, is the tenant's own program (or HTTP endpoint)
	// that runs the chain; chain.toml then declares its steps, prompts,
	// parameters and switches (engine/pipeline).
	Pipeline *pipeline.Spec `toml:"pipeline"`
}

// DataConfig says how `fapo seal` splits the source dataset.
type DataConfig struct {
	Train      float64 `toml:"train"`
	Validation float64 `toml:"validation"`
	Test       float64 `toml:"test"`
	Seed       int64   `toml:"seed"`
	// Stratify is a case path ("expected.label") whose values keep their
	// proportions in every split; empty means no stratification.
	Stratify string `toml:"stratify"`
}

// Split is the split configuration `fapo seal` hands to the dataset store.
func (d DataConfig) Split() dataset.SplitConfig {
	return dataset.SplitConfig{Train: d.Train, Validation: d.Validation, Test: d.Test, Seed: d.Seed, Stratify: d.Stratify}
}

// TargetConfig is the score the optimization aims for.
type TargetConfig struct {
	Metric string  `toml:"metric"` // "composite_score" or a breakdown key
	Min    float64 `toml:"min"`
	// Gain, when set, is the improvement over the baseline (in score
	// points) the user hopes for; the seal and the session compare it with
	// the smallest gain the validation split can detect. Unset, the gain is
	// the target minus the baseline's train mean, once a train run exists.
	Gain float64 `toml:"gain"`
}

// BudgetConfig bounds one optimization session.
type BudgetConfig struct {
	MaxVariants       int     `toml:"max_variants"`
	MaxValidationEval int     `toml:"max_validation_evals"`
	MaxUSD            float64 `toml:"max_usd"`
}

// ReviewConfig configures the review gate.
type ReviewConfig struct {
	// Model names a [models.NAME] block for the independent LLM reviewer;
	// empty means deterministic checks only.
	Model string `toml:"model"`
	// MaxPromptChars bounds the size of one prompt file of a variant.
	MaxPromptChars int `toml:"max_prompt_chars"`
	// LeakageNgram is the n-gram size of the held-out overlap check.
	LeakageNgram int `toml:"leakage_ngram"`
}

// EscalationConfig governs prompt → parameter → structural.
type EscalationConfig struct {
	// Levels allowed in this tenant, cheapest first.
	Levels []variant.Level `toml:"levels"`
	// Patience is how many consecutive non-improving compares exhaust a level.
	Patience int `toml:"patience"`
}

// AcceptanceConfig is how compare decides.
type AcceptanceConfig struct {
	Rule      string `toml:"rule"` // "improves", "significant" or "significant_adjusted"
	Bootstrap int    `toml:"bootstrap"`
	Seed      int64  `toml:"seed"`
	// Thresholdout, when present, answers compares through the reusable
	// holdout (Dwork et al., Science 2015) instead of exact statistics.
	Thresholdout *ThresholdoutConfig `toml:"thresholdout"`

	// MaxCostRatio, when above 0, refuses a candidate whose $ per
	// validation case exceeds the incumbent's by more than this factor
	// (1.5: at most half as dear again), whatever its score.
	MaxCostRatio float64 `toml:"max_cost_ratio"`
	// MaxLatencyRatio, when above 0, does the same for the median (p50)
	// latency per validation case: the median, because a p95 over a few
	// dozen cases is one or two cases.
	MaxLatencyRatio float64 `toml:"max_latency_ratio"`
	// TaskModels, when set, names the [models.NAME] blocks validation runs
	// on: each takes the place of [model] (the default model of llm steps)
	// for one run, each run is its own result, and ModelsRule decides.
	// Train runs keep [model].
	TaskModels []string `toml:"task_models"`
	// ModelsRule is how several task models decide: "every" (each model's
	// comparison must accept; the default) or "mean" (the comparison of
	// per-case scores averaged over the models must accept).
	ModelsRule string `toml:"models_rule"`
	// Repeats evaluates each validation (and test) case this many times,
	// for pipelines that sample; paired statistics use per-case means.
	Repeats int `toml:"repeats"`
	// PassK, when above 0, reports pass^k: the chance that k repeats of a
	// case all pass (full marks, or attribution.fail_below), estimated
	// without bias from the repeats. It needs repeats >= pass_k.
	PassK int `toml:"pass_k"`
}

// Models rules for several task models.
const (
	ModelsRuleEvery = "every"
	ModelsRuleMean  = "mean"
)

// ThresholdoutConfig is [acceptance.thresholdout], in score points.
type ThresholdoutConfig struct {
	Threshold float64 `toml:"threshold"` // T: train and validation may differ this much
	Sigma     float64 `toml:"sigma"`     // σ: the Laplace noise scale
	Budget    int     `toml:"budget"`    // B: answers that may come from validation
}

// AttributionConfig tunes failure attribution.
type AttributionConfig struct {
	// FailBelow marks a case failed when its composite score is below it;
	// 0 means "below the scorer's maximum".
	FailBelow float64 `toml:"fail_below"`
	// AnalysisModel names a [models.NAME] block that groups reasoning
	// failures into named patterns when attribute is asked to analyze;
	// empty disables the analysis.
	AnalysisModel string `toml:"analysis_model"`
}
