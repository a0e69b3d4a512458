package chain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/provider"
)

// TestSavedByCacheMS: calls issued together are waited for together, so
// what hits among them saved is the slowest call as first asked less the
// slowest as answered, never the sum of the hits' savings.
func TestSavedByCacheMS(t *testing.T) {
	ms := time.Millisecond
	hit := func(was, is time.Duration) provider.Response {
		return provider.Response{CacheHit: true, OriginalLatency: was, Latency: is}
	}
	call := func(is time.Duration) provider.Response { return provider.Response{Latency: is} }
	for _, tc := range []struct {
		name  string
		resps []provider.Response
		want  float64
	}{
		{"one call", []provider.Response{call(40 * ms)}, 0},
		{"one hit", []provider.Response{hit(40*ms, ms)}, 39},
		{"a hit stored before latencies were kept", []provider.Response{hit(0, ms)}, 0},
		{"three samples, all hits", []provider.Response{hit(40*ms, ms), hit(50*ms, ms), hit(30*ms, 2*ms)}, 48},
		{"a slower call among them hides the hits", []provider.Response{hit(40*ms, ms), call(60 * ms)}, 0},
		{"a slower hit among them shows past the call", []provider.Response{hit(90*ms, ms), call(60 * ms)}, 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.InDelta(t, tc.want, chain.SavedByCacheMS(tc.resps...), 1e-9)
		})
	}
}
