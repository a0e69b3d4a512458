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
	case refusal.CreateTenant:
		return "only the operator creates tenants (with fapo init); call list_tenants for the ones that exist"
	case refusal.Seal:
		return fmt.Sprintf("only the operator can seal a tenant: ask the user to run `fapo seal %s/%s`; you cannot", tenant.TenantsDir, r.Subject)
	case refusal.Reseal:
		return "only the operator can decide to re-seal (it makes the recorded runs incomparable with new ones): stop and report to the user"
	case refusal.RunFinal:
		return "the test split is the operator's final evaluation (fapo final), not yours: stop and report to the user"
	case refusal.RerunFinal:
		return "only the operator can decide on a second look at the test split: stop and report to the user"
	case refusal.GoOnline:
		return "the server answers only from its response cache: ask the user to run it online once"
	case refusal.SetHome:
		return "the server has no sealed store: ask the user to set FAPO_HOME where the server starts"
	case refusal.SetWorkspace:
		return "the server was started on the wrong workspace: ask the user to start it in the directory that holds tenants/"
	case refusal.Compare:
		return "call compare with a reviewed candidate"
	case refusal.Attribute:
		return "call evaluate with split train (its result carries the attribution) or call attribute"
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
