package tenant

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider"
)

func TestEndpointChanges(t *testing.T) {
	cfg := Config{
		Model:  provider.Spec{Name: "m", BaseURL: "http://pinned/v1", BaseURLEnv: "URL", NameEnv: "NAME"},
		Models: map[string]provider.Spec{"judge": {Name: "j"}},
	}
	pinned := cfg.Endpoints(func(string) string { return "" })
	require.Equal(t, map[string]dataset.Endpoint{"model": {BaseURL: "http://pinned/v1", Name: "m"}, "models.judge": {Name: "j"}}, pinned)
	for _, tc := range []struct {
		name   string
		pinned map[string]dataset.Endpoint
		env    map[string]string
		want   []string
	}{
		{"same environment", pinned, nil, nil},
		{"no record: tenant.toml's own values", nil, nil, nil},
		{"base url moved", pinned, map[string]string{"URL": "http://elsewhere/v1"}, []string{"URL: http://pinned/v1 → http://elsewhere/v1"}},
		{"no record, overridden", nil, map[string]string{"NAME": "x"}, []string{"NAME: m → x"}},
		{"credentials never shown", pinned, map[string]string{"URL": "http://user:secret@evil/v1"}, []string{"URL: http://pinned/v1 → http://user:xxxxx@evil/v1"}},
		{"pinned override gone", map[string]dataset.Endpoint{"model": {BaseURL: "http://env/v1", Name: "m"}, "models.judge": {Name: "j"}}, nil,
			[]string{"[model] base_url: http://env/v1 → http://pinned/v1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, c := range cfg.EndpointChanges(tc.pinned, func(k string) string { return tc.env[k] }) {
				got = append(got, c.String())
			}
			require.Equal(t, tc.want, got)
		})
	}
}
