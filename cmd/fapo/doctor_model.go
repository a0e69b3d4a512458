package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/fapo-dev/fapo/engine/provider"
)

// probeTimeout bounds the doctor's one call per model when the model block
// sets no timeout: long enough for a cold local server, short enough that a
// dead endpoint does not hang the doctor.
const probeTimeout = 60 * time.Second

// checkModel makes one tiny real call per model block, through the raw
// client (no retries, no cache), so that a missing key, an unreachable
// server, a wrong model name or a refused key shows before an evaluation
// spends its time on errored cases. The provider's own error text is shown.
func checkModel(ctx context.Context, st *doctorState) (string, error) {
	if st.tenant == nil {
		return "the tenant did not load", errSkipped
	}
	if st.offline {
		return "not called (--offline)", errSkipped
	}
	cfg := st.tenant.Config
	blocks := []string{""}
	for name := range cfg.Models {
		blocks = append(blocks, name)
	}
	slices.Sort(blocks[1:])
	var oks []string
	for _, name := range blocks {
		spec, label := cfg.Model, "[model]"
		if name != "" {
			spec, label = cfg.Models[name], "[models."+name+"]"
		}
		ok, err := probeModel(ctx, spec, st.env.getenv)
		if err != nil {
			return "", fmt.Errorf("%s %v", label, err)
		}
		oks = append(oks, ok)
	}
	return strings.Join(oks, "; "), nil
}

// probeModel calls one model once and says what answered.
func probeModel(ctx context.Context, spec provider.Spec, getenv func(string) string) (string, error) {
	resolved := spec.FromEnv(getenv)
	where := "at " + resolved.BaseURL
	switch {
	case resolved.Provider == provider.ProviderSageMaker:
		where = "at SageMaker endpoint " + resolved.Endpoint + " (" + resolved.Region + ")"
	case resolved.BaseURL == "":
		where = "at OpenAI's API"
	}
	if o := spec.Overrides(getenv); o != "" {
		where += " (" + o + ")"
	}
	what := fmt.Sprintf("%s %s", resolved.Name, where)
	c, err := provider.New(spec, provider.Options{Getenv: getenv})
	if err != nil {
		if spec.BaseURLEnv != "" {
			return "", fmt.Errorf("%v; or, for a local OpenAI-compatible server (Ollama, vLLM), export %s with its URL", err, spec.BaseURLEnv)
		}
		return "", err
	}
	timeout := probeTimeout
	if spec.TimeoutSeconds > 0 {
		timeout = time.Duration(spec.TimeoutSeconds * float64(time.Second))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	maxTokens := 16
	_, err = c.Complete(ctx, provider.Request{
		Messages: []provider.Message{{Role: "user", Content: "Reply with the single word OK."}},
		Params:   provider.Params{MaxTokens: &maxTokens},
	})
	if err == nil {
		return fmt.Sprintf("%s answered in %s", what, time.Since(start).Round(time.Millisecond)), nil
	}
	var api *provider.APIError
	var ne net.Error
	var ue *url.Error
	switch {
	case errors.As(err, &api):
		// The provider's own words first: they name the bad key or model.
		return "", fmt.Errorf("%s: the server answered: %v", what, err)
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		return "", fmt.Errorf("%s: no answer within %s: %v; is the server up and the model loaded?", what, timeout, err)
	case errors.As(err, &ue) || errors.As(err, &ne):
		return "", fmt.Errorf("%s: cannot reach the server: %v; start it, or fix base_url%s", what, err, envHint(spec))
	}
	return "", fmt.Errorf("%s: %v", what, err)
}

func envHint(spec provider.Spec) string {
	if spec.BaseURLEnv != "" {
		return " (or $" + spec.BaseURLEnv + ")"
	}
	return ""
}
