package main

import (
	"fmt"

	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/tenant"
)

// errorText is an error as the operator should read it: every next step
// the engine names becomes the command that takes it. A step only the
// agent takes (starting a session, reviewing) says it is the agent's, by
// what it does, since no tool is callable from a shell.
func errorText(err error) string { return refusal.Render(err, operatorHint) }

func operatorHint(r *refusal.Refusal) string {
	switch r.Next {
	case refusal.StartSession:
		return "the agent starts one through the MCP server (fapo serve)"
	case refusal.ListTenants:
		return fmt.Sprintf("a tenant is a directory under %s/ with a %s", tenant.TenantsDir, tenant.ConfigFile)
	case refusal.Review:
		return fmt.Sprintf("variant %s must pass the agent's review first", r.Subject)
	case refusal.EvaluateTrain:
		return fmt.Sprintf("run `fapo eval --tenant %s --split train` for a run id", r.Subject)
	case refusal.NewRun:
		return "resume it with the settings it started with, or start a new run without --resume"
	case refusal.Pin:
		return fmt.Sprintf("check the change, then run `fapo pin %s/%s` (it shows the change and records it), or restore the files", tenant.TenantsDir, r.Subject)
	case refusal.PinEndpoint:
		return fmt.Sprintf("check it, then run `fapo pin %s/%s` in the environment the server runs in", tenant.TenantsDir, r.Subject)
	case refusal.Unlock:
		return fmt.Sprintf("review the journal, then run `fapo session unlock --tenant %s --reason TEXT` to continue, or `fapo session new --tenant %s` to start over", r.Subject, r.Subject)
	}
	return ""
}
