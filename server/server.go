package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/prompts"
	"github.com/fapo-dev/fapo/tools"
)

// Instructions are placed in the agent's system prompt by clients that
// support them; they state the loop and that the rules are enforced.
const Instructions = `fapo optimizes multi-step LLM pipelines ("tenants") under server-enforced rules.
Loop: start_session → evaluate (split=train; its result carries the attribution) → inspect_cases on the dominant
failure cluster (cluster=class@step) → propose_variant at the lowest open level that can fix it (prompt → parameter →
structural) → review_variant → compare (validation, aggregate only). Only compare moves the incumbent. Every result's
"next" says what to do now; session_status says where the session stands. You never see validation or test cases;
the test split is run once by a human with fapo final. Refusals say what to do next and what budget is left.
The full playbook: in Claude Code, the slash command /mcp__fapo__optimize <tenant> (the MCP prompt "optimize");
in Codex, or any client that cannot fetch MCP prompts, read the MCP resource fapo://playbook/<tenant>
(read_mcp_resource with server "fapo"); fapo://playbook is the same text for no tenant in particular.`

// Options configure the server.
type Options struct {
	Version string
}

// New assembles the MCP server over a workspace.
func New(ws *loop.Workspace, opts Options) *mcpserver.MCPServer {
	version := opts.Version
	if version == "" {
		version = "devel"
	}
	s := mcpserver.NewMCPServer("fapo", version,
		mcpserver.WithInstructions(Instructions),
		mcpserver.WithToolCapabilities(false),
		mcpserver.WithResourceCapabilities(false, false),
		mcpserver.WithPromptCapabilities(false),
		mcpserver.WithRecovery(),
		mcpserver.WithResourceRecovery(),
	)
	s.AddTools(tools.All(tools.Deps{Workspace: ws})...)
	addResources(s, ws)
	addPrompts(s)
	return s
}

func addResources(s *mcpserver.MCPServer, ws *loop.Workspace) {
	s.AddResource(mcp.NewResource("fapo://tenants", "tenants",
		mcp.WithResourceDescription("The tenants of this workspace (as list_tenants)"), mcp.WithMIMEType("application/json")),
		func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return jsonResource(req.Params.URI, ws.ListTenants())
		})
	s.AddResourceTemplate(mcp.NewResourceTemplate("fapo://tenants/{tenant}", "tenant",
		mcp.WithTemplateDescription("A tenant's tenant.toml (frozen: the scorer, data split, model, budget)"), mcp.WithTemplateMIMEType("application/toml")),
		func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			text, err := ws.TenantConfig(arg(req, "tenant"))
			if err != nil {
				return nil, err
			}
			return []mcp.ResourceContents{mcp.TextResourceContents{URI: req.Params.URI, MIMEType: "application/toml", Text: text}}, nil
		})
	s.AddResourceTemplate(mcp.NewResourceTemplate("fapo://tenants/{tenant}/variants/{variant}", "variant",
		mcp.WithTemplateDescription("A variant's manifest and files (verified)"), mcp.WithTemplateMIMEType("application/json")),
		func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			v, err := ws.GetVariant(arg(req, "tenant"), arg(req, "variant"))
			if err != nil {
				return nil, err
			}
			return jsonResource(req.Params.URI, v)
		})
	s.AddResourceTemplate(mcp.NewResourceTemplate("fapo://tenants/{tenant}/journal", "journal",
		mcp.WithTemplateDescription("The last 200 entries of a tenant's append-only journal"), mcp.WithTemplateMIMEType("application/json")),
		func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			entries, err := ws.Journal(arg(req, "tenant"), 200)
			if err != nil {
				return nil, err
			}
			return jsonResource(req.Params.URI, entries)
		})
	s.AddResourceTemplate(mcp.NewResourceTemplate("fapo://tenants/{tenant}/scope", "scope",
		mcp.WithTemplateDescription("The scope contract of the tenant's session"), mcp.WithTemplateMIMEType("application/json")),
		func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			sc, err := ws.Scope(arg(req, "tenant"))
			if err != nil {
				return nil, err
			}
			return jsonResource(req.Params.URI, sc)
		})
}

// arg reads a template variable; mcp-go passes them as []string.
func arg(req mcp.ReadResourceRequest, name string) string {
	switch v := req.Params.Arguments[name].(type) {
	case []string:
		if len(v) > 0 {
			return v[0]
		}
	case string:
		return v
	}
	return ""
}

func jsonResource(uri string, v any) ([]mcp.ResourceContents, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return []mcp.ResourceContents{mcp.TextResourceContents{URI: uri, MIMEType: "application/json", Text: string(b)}}, nil
}

// playbook is the optimize playbook for a tenant and a target: one text,
// served as the MCP prompt and as a resource for clients without prompts.
func playbook(tenant, target string) string {
	if target == "" {
		target = "the tenant's target"
	}
	return strings.NewReplacer("{{tenant}}", tenant, "{{target}}", target).Replace(prompts.MustText(prompts.Optimize))
}

func addPlaybook(s *mcpserver.MCPServer) {
	text := func(uri, tenant string) []mcp.ResourceContents {
		return []mcp.ResourceContents{mcp.TextResourceContents{URI: uri, MIMEType: "text/markdown", Text: playbook(tenant, "")}}
	}
	s.AddResource(mcp.NewResource("fapo://playbook", "playbook",
		mcp.WithResourceDescription("The optimization playbook (the MCP prompt optimize as a resource, for clients that cannot fetch prompts)"),
		mcp.WithMIMEType("text/markdown")),
		func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			return text(req.Params.URI, "the tenant you were asked to optimize"), nil
		})
	s.AddResourceTemplate(mcp.NewResourceTemplate("fapo://playbook/{tenant}", "tenant playbook",
		mcp.WithTemplateDescription("The optimization playbook for one tenant (the MCP prompt optimize as a resource)"),
		mcp.WithTemplateMIMEType("text/markdown")),
		func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			tenant := arg(req, "tenant")
			if tenant == "" {
				return nil, fmt.Errorf("fapo://playbook/{tenant} needs a tenant name: call list_tenants for the names")
			}
			return text(req.Params.URI, tenant), nil
		})
}

func addPrompts(s *mcpserver.MCPServer) {
	addPlaybook(s)
	s.AddPrompt(mcp.NewPrompt("optimize",
		mcp.WithPromptDescription("The optimization playbook: the loop, the levels and the rules, for one tenant"),
		mcp.WithArgument("tenant", mcp.ArgumentDescription("the tenant to optimize"), mcp.RequiredArgument()),
		mcp.WithArgument("target", mcp.ArgumentDescription("the goal, e.g. composite_score >= 70 (default: the tenant's target)")),
	), func(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		tenant := req.Params.Arguments["tenant"]
		if tenant == "" {
			return nil, fmt.Errorf("the optimize prompt needs a tenant argument: call list_tenants for the names")
		}
		text := playbook(tenant, req.Params.Arguments["target"])
		return mcp.NewGetPromptResult("Optimize tenant "+tenant, []mcp.PromptMessage{
			mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent(text)),
		}), nil
	})
	s.AddPrompt(mcp.NewPrompt("scaffold",
		mcp.WithPromptDescription("Turn a task description into the files of a new tenant"),
		mcp.WithArgument("description", mcp.ArgumentDescription("what the pipeline should do, its inputs and the expected outputs"), mcp.RequiredArgument()),
	), func(ctx context.Context, req mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
		desc := req.Params.Arguments["description"]
		if strings.TrimSpace(desc) == "" {
			return nil, fmt.Errorf("the scaffold prompt needs a description argument")
		}
		text := strings.ReplaceAll(prompts.MustText(prompts.Scaffold), "{{description}}", desc)
		return mcp.NewGetPromptResult("Scaffold a tenant", []mcp.PromptMessage{
			mcp.NewPromptMessage(mcp.RoleUser, mcp.NewTextContent(text)),
		}), nil
	})
}
