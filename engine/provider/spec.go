package provider

// Spec is a model block of tenant.toml ([model] and [models.NAME]).
type Spec struct {
	// Provider is "openai", "openai_compatible" or "sagemaker".
	Provider string `toml:"provider"`
	// Name is the model name sent to the provider (e.g. "gpt-4o-mini").
	Name string `toml:"name"`
	// BaseURL points an OpenAI-compatible client at another server.
	BaseURL string `toml:"base_url"`
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
}

// Price is the cost of a model in dollars per million tokens.
type Price struct {
	InputPerMTok  float64 `toml:"input_per_mtok" json:"input_per_mtok"`
	OutputPerMTok float64 `toml:"output_per_mtok" json:"output_per_mtok"`
}
