package tools

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/tenant"
)

// everyAction is each next step an engine refusal can name.
func everyAction() []refusal.Action { return refusal.Actions() }

// The agent is told the tool call that takes the next step, never a flag
// of a command it cannot run, and never the neutral sentence meant for
// readers who are neither agent nor operator.
func TestRefusalTextNamesNoCommandLineFlag(t *testing.T) {
	for _, a := range everyAction() {
		r := refusal.New(a, "capitals", "something was refused")
		err := fmt.Errorf("cannot resume run r1: %w", r)
		neutral := strings.TrimPrefix(r.Error(), r.Msg+": ")
		got := refusalText(err)
		require.True(t, strings.HasPrefix(got, "cannot resume run r1: something was refused: "), "action %d keeps the context: %s", a, got)
		require.NotContains(t, got, neutral, "action %d is rendered for the agent", a)
		require.NotContains(t, got, "--", "action %d names a command-line flag: %s", a, got)
	}
	// The run runner's resume hint, which once told the agent "--resume".
	got := refusalText(fmt.Errorf("cannot resume run r1: %w", refusal.New(refusal.NewRun, "", "it ran variant v0000, not v0001: one run never mixes two pipelines")))
	require.Contains(t, got, "call evaluate again")
	// A locked session: the agent is told the step is the operator's.
	got = refusalText(&session.LockedSessionError{Tenant: "capitals", Lock: session.Lock{Reason: "leak."}})
	require.Equal(t, "the session is locked for the operator: leak: stop and report to the user: only the operator can unlock the session (after reviewing the journal) or start a new one; you cannot", got)
	// The engine's former flag hints, each now the agent's own step.
	for a, want := range map[refusal.Action]string{
		refusal.Compare: "call compare", refusal.Attribute: "call attribute", refusal.CreateTenant: "call list_tenants",
		refusal.GoOnline: "ask the user", refusal.RerunFinal: "report to the user", refusal.Seal: "ask the user to run `fapo seal tenants/capitals`",
	} {
		require.Contains(t, refusalText(refusal.New(a, "capitals", "no")), want, "action %d", a)
	}
	got = refusalText(&tenant.PinError{Tenant: "capitals", Unpinned: true})
	require.Contains(t, got, "ask the user to review it and run `fapo pin tenants/capitals`")
}

// handle logs a refusal at Info and any other failure at Error: a disk or
// database failing must not look like the agent being told no.
func TestHandleLogsRefusalsAtInfoAndFailuresAtError(t *testing.T) {
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(prev) })

	tests := []struct {
		name  string
		err   error
		level string
		msg   string
	}{
		{"typed refusal", fmt.Errorf("evaluate: %w", refusal.New(refusal.Review, "v0001", "variant v0001 is pending review")), "INFO", "tool refused"},
		{"budget", &session.BudgetError{Resource: "usd"}, "INFO", "tool refused"},
		{"locked level", &session.LockedError{Level: "parameter"}, "INFO", "tool refused"},
		{"pin", &tenant.PinError{Tenant: "capitals", Unpinned: true}, "INFO", "tool refused"},
		{"locked session", &session.LockedSessionError{Tenant: "capitals"}, "INFO", "tool refused"},
		{"no session", session.ErrNoSession, "INFO", "tool refused"},
		{"infrastructure", errors.New("statedb: disk I/O error"), "ERROR", "tool failed"},
		{"wrapped infrastructure", fmt.Errorf("record run: %w", errors.New("database is locked")), "ERROR", "tool failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			buf.Reset()
			h := handle(Deps{}, "evaluate", func(context.Context, mcp.CallToolRequest, struct{}) (struct{}, error) {
				return struct{}{}, tt.err
			})
			res, err := h(context.Background(), mcp.CallToolRequest{})
			require.NoError(t, err)
			require.True(t, res.IsError)
			line := buf.String()
			require.Contains(t, line, "level="+tt.level, line)
			require.Contains(t, line, `msg="`+tt.msg+`"`, line)
			require.Equal(t, 1, strings.Count(line, "\n"), "one line per failed call")
		})
	}
}
