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
	case refusal.CreateTenant:
		return fmt.Sprintf("create one with `fapo init %s --task-type qa`", r.Subject)
	case refusal.Seal:
		return fmt.Sprintf("seal it with `fapo seal %s/%s --source CASES.jsonl`", tenant.TenantsDir, r.Subject)
	case refusal.Reseal:
		return fmt.Sprintf("re-seal with --force to go ahead anyway (`fapo seal %s/%s --source CASES.jsonl --force`): the runs stay on disk, measured on the old split", tenant.TenantsDir, r.Subject)
	case refusal.RunFinal:
		return fmt.Sprintf("run `fapo final --tenant %s` (it continues a test run that did not finish)", r.Subject)
	case refusal.RerunFinal:
		return "pass --force to run it again anyway (this is journaled)"
	case refusal.GoOnline:
		return "run without --offline"
	case refusal.SetHome:
		return "set FAPO_HOME or pass --home"
	case refusal.SetWorkspace:
		return "pass --workspace with the directory that holds tenants/"
	case refusal.Compare:
		return "the agent's comparison of a reviewed candidate with the incumbent answers validation"
	case refusal.Attribute:
		return fmt.Sprintf("run `fapo eval --tenant %s --split train` first: its result carries the attribution", r.Subject)
	}
	return ""
}
