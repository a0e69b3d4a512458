package server_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAgentToldOnlyTheOperatorCanPin: a tool refused for a changed frozen
// file tells the agent what changed and that the operator, not it, must
// pin; list_tenants shows the tenant as changed rather than failing.
func TestAgentToldOnlyTheOperatorCanPin(t *testing.T) {
	h := newHarness(t)
	h.mustCall(t, "start_session", map[string]any{"tenant": tenant})
	cfg := filepath.Join(h.f.TenantDir(), "tenant.toml")
	b, err := os.ReadFile(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(cfg, []byte(strings.Replace(string(b), `kind = "exact_match"`, `kind = "contains"`, 1)), 0o644))

	_, errText := h.call(t, "evaluate", map[string]any{"tenant": tenant, "split": "validation"})
	require.Contains(t, errText, "tenant.toml changed since it was sealed (scorer.kind)")
	require.Contains(t, errText, "nothing was run")
	require.NotContains(t, errText, "--", "the agent is told no flag of a command it cannot run")
	require.Contains(t, errText, "ask the user to review it and run `fapo pin tenants/capitals`")
	require.Contains(t, errText, "you cannot pin")
	require.Zero(t, h.f.LLM.Count())

	out := h.mustCall(t, "list_tenants", map[string]any{})
	require.Contains(t, out["tenants"].([]any)[0].(map[string]any)["problems"], "changed since sealed: tenant.toml (scorer.kind); the operator must review the change and run fapo pin tenants/capitals")
}
