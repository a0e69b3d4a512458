package provider

import (
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/fapo-dev/fapo/engine/internal/suggest"
)

// Provider names accepted in Spec.Provider.
const (
	ProviderOpenAI           = "openai"
	ProviderOpenAICompatible = "openai_compatible"
	ProviderSageMaker        = "sagemaker"
)

var providers = []string{ProviderOpenAI, ProviderOpenAICompatible, ProviderSageMaker}

// Options are what a raw client takes from its environment rather than from
// tenant.toml. The zero value reads the process environment and uses a
// shared HTTP client sized for concurrent evaluation.
type Options struct {
	// Getenv looks up the API key variable; nil means os.Getenv.
	Getenv func(string) string
	// HTTPClient carries every call; nil means a shared pooled client.
	HTTPClient *http.Client
	// AWS overrides the SageMaker endpoint URL and credentials.
	AWS AWSOptions
	// BatchPoll is how often a batch's status is polled; 0 means 15 s.
	BatchPoll time.Duration
}

func (o Options) getenv() func(string) string {
	if o.Getenv != nil {
		return o.Getenv
	}
	return os.Getenv
}

// defaultHTTP keeps enough idle connections per host for a concurrent run:
// net/http's default of 2 would reopen a connection for most calls.
var defaultHTTP = sync.OnceValue(func() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 128
	return &http.Client{Transport: t}
})

func (o Options) httpClient() *http.Client {
	if o.HTTPClient != nil {
		return o.HTTPClient
	}
	return defaultHTTP()
}

// New builds the raw client of a model block, without retries, limits or
// cache (see Stack for those). Requests with an empty Model go to
// spec.Name.
func New(spec Spec, opts Options) (Client, error) {
	opts.Getenv = opts.getenv()
	spec = spec.FromEnv(opts.Getenv)
	switch spec.Provider {
	case ProviderOpenAI, ProviderOpenAICompatible:
		if spec.Name == "" {
			return nil, fmt.Errorf("%s model: name is empty: set name in the model block (e.g. \"gpt-4o-mini\")", spec.Provider)
		}
		return newOpenAI(spec, opts)
	case ProviderSageMaker:
		return newSageMaker(spec, opts)
	case "":
		return nil, fmt.Errorf("model %q: provider is empty: set provider to one of %v", spec.Name, providers)
	}
	return nil, fmt.Errorf("model %q: unknown provider %q%s: use one of %v",
		spec.Name, spec.Provider, suggest.Hint(spec.Provider, providers), providers)
}
