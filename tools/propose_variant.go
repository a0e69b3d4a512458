package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/variant"
)

// ProposeVariantIn is a change to a parent variant.
type ProposeVariantIn struct {
	TenantIn
	Parent        string                    `json:"parent,omitempty" jsonschema:"the variant to change (default: the incumbent)"`
	Level         string                    `json:"level" jsonschema:"prompt, parameter or structural: must match what the change actually touches"`
	Rationale     string                    `json:"rationale" jsonschema:"which failure cluster this addresses and why the change should fix it"`
	TargetCluster string                    `json:"target_cluster,omitempty" jsonschema:"the failure cluster targeted: class@step as the latest attribution names it (e.g. format@classify), or none"`
	Prompts       map[string]string         `json:"prompts,omitempty" jsonschema:"prompt level: new user prompt template per step id (Go text/template: {{.context.FIELD}}, {{.steps.STEP.output}})"`
	SystemPrompts map[string]string         `json:"system_prompts,omitempty" jsonschema:"prompt level: new system prompt template per step id"`
	Params        map[string]map[string]any `json:"params,omitempty" jsonschema:"parameter level: per step id, parameters to set: temperature, top_p (numbers), max_tokens, seed, n, k, max_rounds, max_iterations, max_tool_calls (whole numbers), model (a string), stop (a list of strings)"`
	ChainTOML     string                    `json:"chain_toml,omitempty" jsonschema:"a whole new chain.toml (structural changes; the declared level must match what it changes)"`
	Files         map[string]string         `json:"files,omitempty" jsonschema:"files to add or replace by path under prompts/, e.g. the prompt of a step a structural change adds"`
}

// ProposeVariant writes a new immutable variant.
func ProposeVariant(d Deps) server.ServerTool {
	return server.ServerTool{
		Tool: mcp.NewTool("propose_variant",
			mcp.WithDescription("Propose a new immutable variant from a parent: new prompt texts (level prompt: prompts/system_prompts), step parameters (level parameter: params, e.g. {\"summarize\": {\"max_tokens\": 64}}; only those lines of chain.toml change, numbers take the key's type) or a new chain.toml (chain_toml, level structural, plus files for new prompts). "+
				"Templates are Go text/template: {{.context.FIELD}} reads a case input, {{.steps.STEP.output}} an earlier step's output, {{.case_token}} an opaque per-run id; .expected, .case_id, .metadata, print and printf are refused; {FIELD} is plain text, and a prompt that reads none of its parent's inputs fails review. "+
				"Every proposal is dry-run first (loaded and rendered on train cases, no model call): one that does not load or render is refused and costs nothing. The server checks the level against what actually changed, the escalation policy (a higher level opens when the lower one is exhausted or attribution points there, and stays open), frozen files, target_cluster (a cluster of the latest attribution, class@step, or none) and the variant budget. Next: review_variant."),
			mcp.WithTitleAnnotation("Propose a variant"),
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(false),
			mcp.WithIdempotentHintAnnotation(false),
			mcp.WithOpenWorldHintAnnotation(false),
			mcp.WithInputSchema[ProposeVariantIn](),
			mcp.WithOutputSchema[loop.ProposeResult](),
		),
		Handler: handle(d, "propose_variant", func(ctx context.Context, _ mcp.CallToolRequest, in ProposeVariantIn) (*loop.ProposeResult, error) {
			return d.Workspace.Propose(ctx, loop.ProposeRequest{Tenant: in.Tenant, Parent: in.Parent, Level: variant.Level(in.Level),
				Rationale: in.Rationale, TargetCluster: in.TargetCluster, Prompts: in.Prompts, SystemPrompts: in.SystemPrompts,
				Params: in.Params, ChainTOML: in.ChainTOML, Files: in.Files})
		}),
	}
}
