package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/variant"
)

// StartSessionIn asks for a session; every value may only tighten what the
// tenant's tenant.toml grants.
type StartSessionIn struct {
	TenantIn
	TargetMin          *float64 `json:"target_min,omitempty" jsonschema:"the composite score to reach on validation (default: tenant.toml's target)"`
	MaxVariants        int      `json:"max_variants,omitempty" jsonschema:"at most this many proposals (default and ceiling: tenant.toml)"`
	MaxValidationEvals int      `json:"max_validation_evals,omitempty" jsonschema:"at most this many validation evaluations (default and ceiling: tenant.toml)"`
	MaxUSD             float64  `json:"max_usd,omitempty" jsonschema:"at most this many dollars of model calls (default and ceiling: tenant.toml)"`
	AllowedLevels      []string `json:"allowed_levels,omitempty" jsonschema:"levels proposals may use, a subset of prompt, parameter, structural"`
}

// StartSession writes the session's scope contract.
func StartSession(d Deps) server.ServerTool {
	return server.ServerTool{
		Tool: mcp.NewTool("start_session",
			mcp.WithDescription("Start the optimization session of a tenant: fixes the target, budget (variants, validation evaluations, dollars), allowed levels and frozen files in an immutable scope contract. A tenant has one session: calling this again returns the existing session unchanged. The result's power says how small a gain the validation split can detect (and warns when the target gain is below it): pass a warning on to the user before spending. compare_charges says what the first compare charges: the incumbent's validation run as well as the candidate's."),
			mcp.WithTitleAnnotation("Start session"),
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(false),
			mcp.WithIdempotentHintAnnotation(true),
			mcp.WithOpenWorldHintAnnotation(false),
			mcp.WithInputSchema[StartSessionIn](),
			mcp.WithOutputSchema[loop.Status](),
		),
		Handler: handle(d, "start_session", func(ctx context.Context, _ mcp.CallToolRequest, in StartSessionIn) (*loop.Status, error) {
			return d.Workspace.StartSession(loop.StartRequest{Tenant: in.Tenant, TargetMin: in.TargetMin, MaxVariants: in.MaxVariants,
				MaxValidationEvals: in.MaxValidationEvals, MaxUSD: in.MaxUSD, AllowedLevels: variant.LevelsOf(in.AllowedLevels)})
		}),
	}
}
