package provider

import "strings"

// Spec is a model block of tenant.toml ([model] and [models.NAME]).
type Spec struct {
	// Provider is "openai", "openai_compatible" or "sagemaker".
	Provider string `toml:"provider"`
	// Name is the model name sent to the provider (e.g. "gpt-4o-mini").
	Name string `toml:"name"`
	// BaseURL points an OpenAI-compatible client at another server.
	BaseURL string `toml:"base_url"`
	// BaseURLEnv and NameEnv name environment variables that, when set,
	// replace BaseURL and Name (see FromEnv): the operator points a tenant
	// at a local server without editing tenant.toml, which is pinned.
	BaseURLEnv string `toml:"base_url_env"`
	NameEnv    string `toml:"name_env"`
	// APIKeyEnv names the environment variable holding the API key; the key
	// itself never appears in a tenant file.
	APIKeyEnv string `toml:"api_key_env"`
	// Region and Endpoint address a SageMaker endpoint.
	Region   string `toml:"region"`
	Endpoint string `toml:"endpoint"`
	// Reasoning forces the reasoning-model request shape (developer role,
	// max_completion_tokens, no sampling params); nil means "detect by name".
	Reasoning *bool `toml:"reasoning"`
	// Concurrency bounds the cases evaluated in parallel with this model.
	Concurrency int `toml:"concurrency"`
	// TimeoutSeconds bounds one call, retries excluded.
	TimeoutSeconds float64 `toml:"timeout_seconds"`
	// MaxRetries bounds retries of 429, 5xx, timeouts and transport errors.
	MaxRetries int `toml:"max_retries"`
	// RequestsPerMinute and TokensPerMinute throttle calls; 0 means unlimited.
	RequestsPerMinute int `toml:"requests_per_minute"`
	TokensPerMinute   int `toml:"tokens_per_minute"`
	// Batch sends validation, test and large train runs through the
	// provider's batch API (OpenAI's Batch API) instead of one call per
	// request: slower to start, cheaper, and the provider does the work.
	Batch bool `toml:"batch"`

	// keyOptional is set by FromEnv when the base URL came from the
	// environment: a local server usually takes no key.
	keyOptional bool
}

// FromEnv returns the spec with the overrides its environment variables
// hold: base_url from BaseURLEnv and name from NameEnv, when set and not
// empty. A base URL from the environment names a server the operator chose,
// usually a local one (Ollama, vLLM) that needs no key, so the API key
// variable may then be empty. Applying FromEnv twice changes nothing more.
func (s Spec) FromEnv(getenv func(string) string) Spec {
	if s.BaseURLEnv != "" {
		if v := getenv(s.BaseURLEnv); v != "" {
			s.BaseURL, s.keyOptional = v, true
		}
	}
	if s.NameEnv != "" {
		if v := getenv(s.NameEnv); v != "" {
			s.Name = v
		}
	}
	return s
}

// Overrides says which of the spec's values FromEnv took from the
// environment, e.g. "base_url from $FAPO_BASE_URL, name from $FAPO_MODEL",
// or "" when none: what the operator sees is the model actually called.
func (s Spec) Overrides(getenv func(string) string) string {
	var parts []string
	if s.BaseURLEnv != "" && getenv(s.BaseURLEnv) != "" {
		parts = append(parts, "base_url from $"+s.BaseURLEnv)
	}
	if s.NameEnv != "" && getenv(s.NameEnv) != "" {
		parts = append(parts, "name from $"+s.NameEnv)
	}
	return strings.Join(parts, ", ")
}

// Price is the cost of a model in dollars per million tokens. Answers of
// the provider's batch API cost BatchInputPerMTok and BatchOutputPerMTok
// when set, else the regular prices less BatchDiscount (a fraction: 0.5 is
// half price); with neither, batch answers are priced as regular ones, an
// overestimate rather than a cost left out.
type Price struct {
	InputPerMTok       float64 `toml:"input_per_mtok" json:"input_per_mtok"`
	OutputPerMTok      float64 `toml:"output_per_mtok" json:"output_per_mtok"`
	BatchInputPerMTok  float64 `toml:"batch_input_per_mtok" json:"batch_input_per_mtok,omitempty"`
	BatchOutputPerMTok float64 `toml:"batch_output_per_mtok" json:"batch_output_per_mtok,omitempty"`
	BatchDiscount      float64 `toml:"batch_discount" json:"batch_discount,omitempty"`
}

// Cost is the price of one answer's tokens in dollars.
func (p Price) Cost(promptTokens, completionTokens int, batch bool) float64 {
	in, out := p.InputPerMTok, p.OutputPerMTok
	if batch {
		off := 1 - min(max(p.BatchDiscount, 0), 1)
		in, out = in*off, out*off
		if p.BatchInputPerMTok > 0 {
			in = p.BatchInputPerMTok
		}
		if p.BatchOutputPerMTok > 0 {
			out = p.BatchOutputPerMTok
		}
	}
	return float64(promptTokens)*in/1e6 + float64(completionTokens)*out/1e6
}
