package explorer_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/server/explorer"
)

// chromiumPath is Debian's chromium, which .ci/run installs;
// FAPO_CHROMIUM points elsewhere.
func chromiumPath() string {
	if p := os.Getenv("FAPO_CHROMIUM"); p != "" {
		return p
	}
	return "/usr/bin/chromium"
}

// artifactsDir is where screenshots go: $FAPO_TEST_ARTIFACTS/explorer, or a
// temporary directory.
func artifactsDir(t *testing.T) string {
	dir := os.Getenv("FAPO_TEST_ARTIFACTS")
	if dir == "" {
		return t.TempDir()
	}
	dir = filepath.Join(dir, "explorer")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	return dir
}

// TestBrowser drives a real chromium through the Explorer of a scripted
// session: the dashboard, a tenant, a variant's diff, a run and a case's
// trace, asserting on the text a person would see. Set
// FAPO_EXPLORER_SCREENSHOT=1 to refresh testdata/explorer-tenant.png, the
// README's screenshot.
func TestBrowser(t *testing.T) {
	exe := chromiumPath()
	if _, err := os.Stat(exe); err != nil {
		msg := fmt.Sprintf("SKIP: TestBrowser: no chromium at %s (%v): install it with .ci/run or apt-get install chromium, or set FAPO_CHROMIUM", exe, err)
		fmt.Fprintln(os.Stderr, msg)
		t.Skip(msg)
	}
	s := newScripted(t)
	srv := s.server(t, explorer.Options{})
	shots := artifactsDir(t)

	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(exe),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 1000),
	)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		require.NoError(t, err, sel)
		return s
	}
	shot := func(name string) []byte {
		t.Helper()
		b, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		require.NoError(t, err)
		p := filepath.Join(shots, name+".png")
		require.NoError(t, os.WriteFile(p, b, 0o644))
		t.Logf("screenshot %s", p)
		return b
	}
	location := func() string {
		t.Helper()
		u, err := chromedp.Run(ctx, chromedp.Location())
		require.NoError(t, err)
		return u
	}

	// Dashboard.
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible(chromedp.ID("tenants"))))
	dash := text("#tenants")
	require.Contains(t, dash, "capitals")
	require.Contains(t, dash, "v0001")
	require.Contains(t, dash, "met")
	shot("dashboard")

	// Tenant: the chart, the validation history.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#tenants a[href="/tenants/capitals"]`)),
		chromedp.WaitVisible(chromedp.ID("score-chart"))))
	require.Contains(t, text("#validation"), "accepted")
	require.Contains(t, text("#validation"), "rejected")
	chart, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("score-chart"))) // SVG has no innerText
	require.NoError(t, err)
	require.Contains(t, chart, "target composite_score >= 95")
	tenantPNG := shot("tenant")
	if os.Getenv("FAPO_EXPLORER_SCREENSHOT") == "1" {
		require.NoError(t, os.WriteFile(filepath.Join("testdata", "explorer-tenant.png"), tenantPNG, 0o644))
	}

	// The Pareto scatter: score against $ per case, every validation
	// result a point, the front the cheapest way to each score.
	pareto, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("pareto-chart")))
	require.NoError(t, err)
	require.Contains(t, pareto, "$ per case")
	for _, v := range []string{"v0000", "v0001", "v0002"} {
		require.Contains(t, pareto, v)
	}
	points, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("#pareto-chart circle.pt").length`))
	require.NoError(t, err)
	require.Equal(t, 3, points, "one point per validation result")
	front, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`[...document.querySelectorAll("#pareto-chart circle.on-front")].map(c => c.parentNode.querySelector("text").textContent)`))
	require.NoError(t, err)
	require.Equal(t, []string{"v0001"}, front, "v0001 is cheaper and better than both others")
	paretoPNG, err := chromedp.Run(ctx, chromedp.Screenshot(chromedp.ID("pareto-chart")))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(shots, "pareto.png"), paretoPNG, 0o644))
	if os.Getenv("FAPO_EXPLORER_SCREENSHOT") == "1" {
		require.NoError(t, os.WriteFile(filepath.Join("testdata", "explorer-pareto.png"), paretoPNG, 0o644))
	}

	// Lineage, then the rejected variant's diff against its parent.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`nav.crumbs a[href$="/variants"]`)),
		chromedp.WaitVisible(chromedp.ID("lineage"))))
	lineage := text("#lineage")
	require.Contains(t, lineage, "review passed")
	require.Contains(t, lineage, "a friendlier tone might help")
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#lineage a[href$="/variants/v0002"]`)),
		chromedp.WaitVisible(chromedp.CSS(".diff table.sbs"))))
	diff := text(".diff")
	require.Contains(t, diff, "prompts/answer.md")
	require.Contains(t, diff, "Answer in one friendly sentence")
	require.Contains(t, diff, "Answer with only the city name")
	require.Contains(t, text("h2"), "Diff against v0001")
	shot("variant-diff")

	// The baseline's train run, sorted by score through the URL, then a
	// failed case's trace.
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`nav.crumbs a[href="/tenants/capitals"]`)),
		chromedp.WaitVisible(chromedp.ID("runs")),
		chromedp.Click(chromedp.CSS(`#runs a[href$="/runs/`+s.BaselineRun+`"]`)),
		chromedp.WaitVisible(chromedp.ID("clusters"))))
	clusters, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID("clusters")))
	require.NoError(t, err)
	require.Contains(t, clusters, "format@answer")
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#cases th a[href*="sort=score"]`)),
		chromedp.WaitVisible(chromedp.ID("cases"))))
	require.Contains(t, location(), "sort=score", "the table's state is in the URL")
	shot("run")
	require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`#cases a[href$="/cases/`+s.FailedCase+`"]`)),
		chromedp.WaitVisible(chromedp.CSS("section.step"))))
	step := text("section.step")
	require.Contains(t, step, "Rendered prompt")
	require.Contains(t, step, "What is the capital of")
	require.Contains(t, step, "The capital of")
	require.Contains(t, step, "cache hits")
	require.Contains(t, text("#failure"), "format")
	shot("case")
	require.Empty(t, s.LeakedMarkers(text("body")))
}
