package tools

import (
	"context"
	"errors"
	"fmt"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/tenant"
	"github.com/fapo-dev/fapo/engine/variant"
)

// refusalText is an error as the agent should read it: every next step
// the engine names becomes the tool call that takes it, and a step that is
// the operator's says so, since the agent cannot take it (it has no
// command line of fapo's to run, and must not pin or unlock for itself).
func refusalText(err error) string { return refusal.Render(err, agentHint) }

func agentHint(r *refusal.Refusal) string {
	switch r.Next {
	case refusal.StartSession:
		return "call start_session first (it fixes the target, budget and allowed levels)"
	case refusal.ListTenants:
		return "call list_tenants for the names"
	case refusal.Review:
		return fmt.Sprintf("call review_variant for %s first", r.Subject)
	case refusal.EvaluateTrain:
		return "call evaluate with split train for a run id"
	case refusal.NewRun:
		return "call evaluate again: the server starts a new run with the settings of this call"
	case refusal.Pin:
		return fmt.Sprintf("nothing was run. Only the operator can accept such a change: ask the user to review it and run `fapo pin %s/%s`, or to restore the files; you cannot pin, and frozen files are not yours to edit",
			tenant.TenantsDir, r.Subject)
	case refusal.PinEndpoint:
		return fmt.Sprintf("train runs still work. Only the operator can accept the endpoint: ask the user to check it and run `fapo pin %s/%s`; you cannot pin",
			tenant.TenantsDir, r.Subject)
	case refusal.Unlock:
		return "stop and report to the user: only the operator can unlock the session (after reviewing the journal) or start a new one; you cannot"
	}
	return ""
}

// refused says whether err is the engine saying no (a guardrail, a budget,
// a pin, a lock, a bad variant) rather than failing. Refusals are the
// agent's to act on and are logged at Info; everything else, a disk, a
// database or a provider failing included, is logged at Error, so an
// operator reading the log sees an outage as one. An error nobody typed
// counts as a failure: a refusal mistaken for one is noise, a failure
// mistaken for a refusal hides an outage.
func refused(err error) bool {
	if _, ok := refusal.Of(err); ok {
		return true
	}
	var (
		budget   *session.BudgetError
		level    *session.LockedError
		tampered *variant.TamperedError
		missing  *variant.NotFoundError
		partial  *variant.IncompleteError
		invalid  *chain.ValidationError
		load     *tenant.LoadError
	)
	switch {
	case errors.As(err, &budget), errors.As(err, &level), errors.As(err, &tampered), errors.As(err, &missing),
		errors.As(err, &partial), errors.As(err, &invalid), errors.As(err, &load):
		return true
	case errors.Is(err, session.ErrHoldoutSpent), errors.Is(err, run.ErrRunBusy), errors.Is(err, dataset.ErrNotSealed),
		errors.Is(err, context.Canceled):
		return true
	}
	return false
}
