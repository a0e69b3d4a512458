package tools

import (
	"context"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/fapo-dev/fapo/engine/loop"
)

// CompareIn names the candidate.
type CompareIn struct {
	TenantIn
	Candidate string `json:"candidate" jsonschema:"a reviewed variant id to compare against the incumbent"`
}

// Compare decides on validation whether the candidate replaces the incumbent.
func Compare(d Deps) server.ServerTool {
	return server.ServerTool{
		Tool: mcp.NewTool("compare",
			mcp.WithDescription("Compare a reviewed candidate with the incumbent on the same validation cases (each variant's validation run is charged once, when its result is recorded, then cached; a run where cases hit provider errors is no result: the compare is refused, nothing is charged, and the next call continues it): mean delta, paired bootstrap 95% CI, sign-test p-value, wins/losses/ties and the number of comparisons so far. Accepts by the session's rule (improves or significant); this is the only way the incumbent moves. Per task model it also reports both variants' $ per case (cache hits priced like calls), tokens per case and latency p50/p95 per case (and pass^k when the tenant asks for repeats); a candidate above the tenant's max_cost_ratio or max_latency_ratio is rejected whatever its score, and the reason says which bound and by how much. While the incumbent has no validation run (the first compare of a session), the compare charges its run as well as the candidate's. caution says when the evidence is weak (fewer than 30 paired cases, or a confidence interval that includes 0); next says what to do now. Aggregates only."),
			mcp.WithTitleAnnotation("Compare with the incumbent"),
			mcp.WithReadOnlyHintAnnotation(false),
			mcp.WithDestructiveHintAnnotation(false),
			mcp.WithIdempotentHintAnnotation(false),
			mcp.WithOpenWorldHintAnnotation(true),
			mcp.WithInputSchema[CompareIn](),
			mcp.WithOutputSchema[loop.CompareResult](),
		),
		Handler: handle(d, "compare", func(ctx context.Context, req mcp.CallToolRequest, in CompareIn) (*loop.CompareResult, error) {
			return d.Workspace.Compare(ctx, in.Tenant, in.Candidate, progressReporter(ctx, req, "compare on validation", false))
		}),
	}
}
