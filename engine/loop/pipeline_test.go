package loop_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/pipeline/pipelinetest"
	"github.com/fapo-dev/fapo/engine/variant"
)

// TestExternalPipelineStructuralProposals: through the loop API, a
// structural proposal to a tenant whose chain is its own program is refused
// without charge unless it only sets the values of the switches the program
// declares; the refusal says why and what may change.
func TestExternalPipelineStructuralProposals(t *testing.T) {
	f := pipelinetest.New(t, func(s string) string {
		// Structural first, so the escalation policy is not what refuses.
		return strings.Replace(s, `levels = ["prompt", "parameter", "structural"]`, `levels = ["structural"]`, 1)
	})
	w, err := loop.Open(f.Dir, loop.Options{Home: f.Home, Getenv: func(string) string { return "" }})
	require.NoError(t, err)
	t.Cleanup(func() { w.Close() })
	ctx := context.Background()
	const name = pipelinetest.Tenant
	_, err = w.StartSession(loop.StartRequest{Tenant: name})
	require.NoError(t, err)
	b, err := os.ReadFile(filepath.Join(f.TenantDir(), "chain.toml"))
	require.NoError(t, err)
	base := string(b)
	left := func() int {
		st, err := w.SessionStatus(name)
		require.NoError(t, err)
		return st.Budget.Variants
	}
	start := left()
	for _, tc := range []struct{ name, chain, why string }{
		{"add a step", base + "\n[[steps]]\nid = \"verify\"\nkind = \"llm\"\n", "changes its steps"},
		{"drop a step", strings.Replace(base, "[[steps]]\nid = \"final\"\nkind = \"parse\"\n", "", 1), "changes its steps"},
		{"undeclared switch", strings.Replace(base, "reflect = false", "reflect = false\nrerank = true", 1), `switch "rerank" is not one the program declares`},
		{"remove the switch", strings.Replace(base, "[switches]\nreflect = false\n", "", 1), `removes switch "reflect"`},
	} {
		_, err := w.Propose(ctx, loop.ProposeRequest{Tenant: name, Level: "structural", Rationale: tc.name, ChainTOML: tc.chain})
		require.Error(t, err, tc.name)
		require.ErrorContains(t, err, tc.why, tc.name)
		require.ErrorContains(t, err, "whose steps fapo cannot change", tc.name)
		require.ErrorContains(t, err, "only change the switches it declares in chain.toml [switches] (reflect)", tc.name)
		require.Equal(t, start, left(), "%s: a refused proposal is not charged", tc.name)
	}
	prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: name, Level: "structural", Rationale: "turn the reflection step on",
		ChainTOML: strings.Replace(base, "reflect = false", "reflect = true", 1)})
	require.NoError(t, err)
	require.Equal(t, variant.LevelStructural, prop.Level)
	require.Equal(t, start-1, left())
}
