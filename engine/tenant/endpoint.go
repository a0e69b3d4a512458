package tenant

import (
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/refusal"
)

// Endpoints returns where each model block of the config sends requests
// under getenv, its environment overrides (base_url_env, name_env)
// applied: by block, "model" and "models.NAME". Whoever sets the server's
// environment chooses these, so they are recorded when the operator seals
// or pins, and a held-out run is refused when they differ (see
// EndpointChanges).
func (c Config) Endpoints(getenv func(string) string) map[string]dataset.Endpoint {
	out := map[string]dataset.Endpoint{}
	for block, spec := range c.modelBlocks() {
		s := spec.FromEnv(getenv)
		out[block] = dataset.Endpoint{BaseURL: s.BaseURL, Name: s.Name}
	}
	return out
}

func (c Config) modelBlocks() map[string]provider.Spec {
	out := map[string]provider.Spec{"model": c.Model}
	for name, s := range c.Models {
		out["models."+name] = s
	}
	return out
}

// EndpointChange is one model endpoint value that differs from the pinned
// one.
type EndpointChange struct {
	// Block is "model" or "models.NAME"; Field is "base_url" or "name".
	Block string `json:"block"`
	Field string `json:"field"`
	// Env is the environment variable the current value came from ("" when
	// it is tenant.toml's own value).
	Env string `json:"env,omitempty"`
	Old string `json:"old"`
	New string `json:"new"`
}

// String renders the change: "FAPO_BASE_URL: http://a → http://b".
func (c EndpointChange) String() string {
	what := "[" + c.Block + "] " + c.Field
	if c.Env != "" {
		what = c.Env
	}
	return fmt.Sprintf("%s: %s → %s", what, shownValue(c.Old), shownValue(c.New))
}

// shownValue is a value for a message: a URL's password is never shown,
// "" reads as the provider's default.
func shownValue(v string) string {
	if v == "" {
		return "(the provider's default)"
	}
	if u, err := url.Parse(v); err == nil && u.User != nil {
		return u.Redacted()
	}
	return v
}

// EndpointChanges compares the endpoints the config makes under getenv
// with the pinned ones. A manifest that recorded none (pinned before fapo
// kept them) is compared with tenant.toml's own values: what the pinned
// file says, no environment override.
func (c Config) EndpointChanges(pinned map[string]dataset.Endpoint, getenv func(string) string) []EndpointChange {
	if pinned == nil {
		pinned = c.Endpoints(func(string) string { return "" })
	}
	cur := c.Endpoints(getenv)
	blocks := c.modelBlocks()
	var out []EndpointChange
	for _, block := range slices.Sorted(maps.Keys(cur)) {
		was, now := pinned[block], cur[block]
		spec := blocks[block]
		env := func(name string) string {
			if name != "" && getenv(name) != "" {
				return name
			}
			return ""
		}
		if was.BaseURL != now.BaseURL {
			out = append(out, EndpointChange{Block: block, Field: "base_url", Env: env(spec.BaseURLEnv), Old: was.BaseURL, New: now.BaseURL})
		}
		if was.Name != now.Name {
			out = append(out, EndpointChange{Block: block, Field: "name", Env: env(spec.NameEnv), Old: was.Name, New: now.Name})
		}
	}
	return out
}

// EndpointError refuses a held-out run whose model endpoint differs from
// the one recorded when the operator sealed or pinned the tenant: every
// validation and test prompt would go there. Train runs follow the
// environment.
type EndpointError struct {
	Tenant  string
	Changes []EndpointChange
}

// What lists the changes.
func (e *EndpointError) What() string {
	parts := make([]string, len(e.Changes))
	for i, c := range e.Changes {
		parts[i] = c.String()
	}
	return strings.Join(parts, "; ")
}

func (e *EndpointError) Error() string { return e.Refusal().Error() }

// Refusal says what changed; only the operator can accept it.
func (e *EndpointError) Refusal() *refusal.Refusal {
	return refusal.New(refusal.PinEndpoint, e.Tenant, fmt.Sprintf("tenant %s: the model endpoint changed since the tenant was pinned (%s), and a held-out run would send every validation or test prompt there; nothing was run",
		e.Tenant, e.What()))
}
