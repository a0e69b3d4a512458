package run

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSetGCPercent: fapo's target applies unless GOGC is set, which wins.
func TestSetGCPercent(t *testing.T) {
	old := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(old) })
	SetGCPercent(func(string) string { return "" })
	require.Equal(t, GCPercent, debug.SetGCPercent(100))
	SetGCPercent(func(k string) string {
		if k == "GOGC" {
			return "50"
		}
		return ""
	})
	require.Equal(t, 100, debug.SetGCPercent(100), "GOGC set: left alone")
}
