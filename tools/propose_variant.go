package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/fapo-dev/fapo/engine/loop"
)

// ProposeVariantIn is a change to a parent variant.
type ProposeVariantIn struct {
	TenantIn
	Parent        string                    `json:"parent,omitempty" jsonschema:"the variant to change (default: the incumbent)"`
	Level         string                    `json:"level" jsonschema:"prompt, parameter or structural: must match what the change actually touches"`
	Rationale     string                    `json:"rationale" jsonschema:"which failure cluster this addresses and why the change should fix it"`
	TargetCluster string                    `json:"target_cluster,omitempty" jsonschema:"the failure cluster targeted, e.g. format @ answer"`
	Prompts       map[string]string         `json:"prompts,omitempty" jsonschema:"prompt level: new user prompt template per step id"`
	SystemPrompts map[string]string         `json:"system_prompts,omitempty" jsonschema:"prompt level: new system prompt template per step id"`
	Params        map[string]map[string]any `json:"params,omitempty" jsonschema:"parameter level: per step id, parameters to set (temperature, top_p, max_tokens, seed, stop, n, k, model, max_rounds, max_iterations, max_tool_calls)"`
	ChainTOML     string                    `json:"chain_toml,omitempty" jsonschema:"structural level: a whole new chain.toml"`
	Files         map[string]string         `json:"files,omitempty" jsonschema:"files to add or replace by path under prompts/, e.g. the prompt of a step a structural change adds"`
}

// ProposeVariant writes a new immutable variant.
func ProposeVariant(d Deps) server.ServerTool {
	return server.ServerTool{
		Tool: mcp.NewTool("propose_variant",
			mcp.WithDescription("Propose a new immutable variant from a parent: new prompt texts (level prompt), step parameters (level parameter) or a new chain.toml (level structural). The server checks the level against what actually changed, the escalation policy (a higher level unlocks only when the lower one is exhausted or attribution points there), frozen files and the variant budget. Next: review_variant."),
			mcp.WithTitleAnnotation("Propose a variant"),
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(false),
			mcp.WithIdempotentHintAnnotation(false),
			mcp.WithOpenWorldHintAnnotation(false),
			mcp.WithInputSchema[ProposeVariantIn](),
			mcp.WithOutputSchema[loop.ProposeResult](),
		),
		Handler: handle(d, "propose_variant", func(ctx context.Context, _ mcp.CallToolRequest, in ProposeVariantIn) (*loop.ProposeResult, error) {
			return d.Workspace.Propose(ctx, loop.ProposeRequest{Tenant: in.Tenant, Parent: in.Parent, Level: in.Level,
				Rationale: in.Rationale, TargetCluster: in.TargetCluster, Prompts: in.Prompts, SystemPrompts: in.SystemPrompts,
				Params: in.Params, ChainTOML: in.ChainTOML, Files: in.Files})
		}),
	}
}
