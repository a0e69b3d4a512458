package provider

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/provider/fakellm"
)

// TestEnvOverridePointsAtLocalServer: a tenant's base_url_env and name_env
// send its calls to the server and model the operator exported, with no API
// key, and the response cache keeps those answers apart from the original
// model's.
func TestEnvOverridePointsAtLocalServer(t *testing.T) {
	local := fakellm.New()
	defer local.Close()
	spec := Spec{Provider: "openai", Name: "gpt-4o-mini", APIKeyEnv: "OPENAI_API_KEY",
		BaseURLEnv: "FAPO_BASE_URL", NameEnv: "FAPO_MODEL", TimeoutSeconds: 10}
	cache := openTestCache(t)

	tests := []struct {
		name      string
		getenv    func(string) string
		wantModel string
		wantErr   string
		overrides string
	}{
		{"no override, no key: the key is required", env(), "", "OPENAI_API_KEY is empty", ""},
		{"base url only: the tenant's model name, no key", env("FAPO_BASE_URL", local.URL()), "gpt-4o-mini", "", "base_url from $FAPO_BASE_URL"},
		{"base url and model", env("FAPO_BASE_URL", local.URL(), "FAPO_MODEL", "llama3.2"), "llama3.2", "", "base_url from $FAPO_BASE_URL, name from $FAPO_MODEL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.overrides, spec.Overrides(tt.getenv))
			before := local.Count()
			c, err := Stack(spec, StackOptions{Options: Options{Getenv: tt.getenv}, Cache: cache})
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			resp, err := c.Complete(trainCtx, userReq("capital of France?"))
			require.NoError(t, err)
			require.Equal(t, "echo: capital of France?", resp.Content)
			// Each model is its own cache entry: the second case must call the
			// server although the first cached the same messages.
			require.Equal(t, before+1, local.Count())
			rec := local.Requests()[local.Count()-1]
			require.Equal(t, tt.wantModel, rec.Chat.Model)
			require.Empty(t, rec.Header.Get("Authorization"))
		})
	}
}
