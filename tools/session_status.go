package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/fapo-dev/fapo/engine/loop"
)

// SessionStatusIn names the tenant.
type SessionStatusIn struct {
	TenantIn
}

// SessionStatus reports where the session stands.
func SessionStatus(d Deps) server.ServerTool {
	return server.ServerTool{
		Tool: mcp.NewTool("session_status",
			mcp.WithDescription("Where the tenant's session stands: incumbent, validation history (aggregates only), proposals and their review and compare outcomes, open and locked levels with what would unlock them, the budget left, the validation split's minimum detectable effect (power), and what to do next."),
			mcp.WithTitleAnnotation("Session status"),
			mcp.WithReadOnlyHintAnnotation(true),
			mcp.WithDestructiveHintAnnotation(false),
			mcp.WithIdempotentHintAnnotation(true),
			mcp.WithOpenWorldHintAnnotation(false),
			mcp.WithInputSchema[SessionStatusIn](),
			mcp.WithOutputSchema[loop.Status](),
		),
		Handler: handle(d, "session_status", func(ctx context.Context, _ mcp.CallToolRequest, in SessionStatusIn) (*loop.Status, error) {
			st, err := d.Workspace.SessionStatus(in.Tenant)
			if err == nil && st.Halt != nil {
				st.Next = []string{refusalText(st.Halt)}
			}
			return st, err
		}),
	}
}
