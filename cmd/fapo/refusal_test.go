package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/tools"
)

// The operator is told the command that takes the next step, never an MCP
// tool it cannot call from a shell.
func TestErrorTextNamesNoTool(t *testing.T) {
	var names []string
	for _, st := range tools.All(tools.Deps{}) {
		names = append(names, st.Tool.Name)
	}
	require.NotEmpty(t, names)
	for _, a := range refusal.Actions() {
		r := refusal.New(a, "capitals", "something was refused")
		neutral := strings.TrimPrefix(r.Error(), r.Msg+": ")
		got := errorText(fmt.Errorf("cannot resume run r1: %w", r))
		require.True(t, strings.HasPrefix(got, "cannot resume run r1: something was refused: "), got)
		require.NotContains(t, got, neutral, "action %d is rendered for the operator", a)
		for _, n := range names {
			require.NotContains(t, got, n, "action %d names the MCP tool %s: %s", a, n, got)
		}
	}
	got := errorText(fmt.Errorf("cannot resume run r1: %w", refusal.New(refusal.NewRun, "", "it ran each case once, not 3 times")))
	require.Contains(t, got, "start a new run without --resume")
	// The flags the engine once named itself are the operator's to pass.
	for a, want := range map[refusal.Action]string{
		refusal.GoOnline: "--offline", refusal.SetHome: "--home", refusal.SetWorkspace: "--workspace", refusal.RerunFinal: "--force",
		refusal.Reseal: "--force", refusal.CreateTenant: "`fapo init capitals --task-type qa`", refusal.RunFinal: "`fapo final --tenant capitals`",
		refusal.Seal: "`fapo seal tenants/capitals --source CASES.jsonl`",
	} {
		require.Contains(t, errorText(refusal.New(a, "capitals", "no")), want, "action %d", a)
	}
}
