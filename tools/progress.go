package tools

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/fapo-dev/fapo/engine/run"
)

// progressReporter sends MCP progress notifications for a long tool call
// when the client asked for them (a progress token in _meta), at most once
// per percent so a 2,000-case run does not flood the client. scores says
// whether the running mean may be shown: only for train runs, since on a
// held-out split it would reveal every case's score as it completes. A
// held-out run also reports only every tenth of its cases: the time between
// notifications would otherwise tell how long each held-out case took.
func progressReporter(ctx context.Context, req mcp.CallToolRequest, what string, scores bool) func(run.Progress) {
	if req.Params.Meta == nil || req.Params.Meta.ProgressToken == nil {
		return nil
	}
	token := req.Params.Meta.ProgressToken
	srv := server.ServerFromContext(ctx)
	if srv == nil {
		return nil
	}
	var mu sync.Mutex
	lastPct := -1
	step := 1
	if !scores {
		step = 10
	}
	return func(p run.Progress) {
		pct := 0
		if p.Total > 0 {
			pct = p.Done * 100 / p.Total / step * step
		}
		mu.Lock()
		if pct == lastPct && p.Done != p.Total {
			mu.Unlock()
			return
		}
		lastPct = pct
		mu.Unlock()
		msg := fmt.Sprintf("%s: %d cases done", what, p.Done)
		if scores {
			msg += fmt.Sprintf(", mean %.1f so far", p.ScoreMean)
		}
		params := map[string]any{"progressToken": token, "progress": p.Done, "message": msg}
		if p.Total > 0 {
			params["total"] = p.Total
		}
		if err := srv.SendNotificationToClient(ctx, "notifications/progress", params); err != nil {
			slog.Debug("progress notification not sent", "err", err)
		}
	}
}
