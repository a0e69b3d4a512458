package tenants

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/engine/scoring"
	"github.com/fapo-dev/fapo/engine/tenant"
)

// benchmarkTenants are the example tenants whose data the user imports from
// the public benchmark (fapo import); they ship no cases.
var benchmarkTenants = []string{"banking77", "gsm8k", "hotpotqa", "hover", "ifeval"}

func sharedCases(t *testing.T, name string, n int) []dataset.Case {
	t.Helper()
	dir, err := filepath.Abs(".")
	require.NoError(t, err)
	for {
		p := filepath.Join(dir, "shared", "data", name+".jsonl")
		if _, err := os.Stat(p); err == nil {
			cases, err := dataset.ReadAll(p)
			require.NoError(t, err)
			return cases[:n]
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skipf("SKIPPED LOUDLY: shared/data/%s.jsonl not found; the example tenant %s was not run on real cases", name, name)
		}
		dir = parent
	}
}

type tenantModels struct{ c provider.Client }

func (m tenantModels) Client(string) (provider.Client, string, error) { return m.c, "gpt-4o-mini", nil }

// TestBenchmarkTenantsRun copies each benchmark tenant to a temporary
// workspace, points its model at the chat-completions test double through
// FAPO_BASE_URL (the override every example tenant declares), and runs
// five real cases through the chain and the tenant's scorer.
func TestBenchmarkTenantsRun(t *testing.T) {
	srv := fakellm.New(
		fakellm.WithRule(fakellm.LastUserContains("Labels:"), fakellm.Reply{Content: "card_arrival"}),
		fakellm.WithRule(fakellm.AnyMessageContains("Verdict:"), fakellm.Reply{Content: "The facts hold.\nVerdict: SUPPORTED"}),
		fakellm.WithRule(fakellm.AnyMessageContains("Answer: "), fakellm.Reply{Content: "Step 1...\nAnswer: 18"}),
	)
	defer srv.Close()
	for _, name := range benchmarkTenants {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "tenants", name)
			require.NoError(t, os.CopyFS(dir, os.DirFS(name)))
			tn, err := tenant.Load(dir)
			require.NoError(t, err)
			ch, err := chain.Load(dir)
			require.NoError(t, err)
			// The tenant's own override, not an edit of the pinned file: the
			// operator exports FAPO_BASE_URL, and no key is needed.
			getenv := func(k string) string {
				if k == "FAPO_BASE_URL" {
					return srv.URL()
				}
				return ""
			}
			client, err := provider.New(tn.Config.Model, provider.Options{Getenv: getenv})
			require.NoError(t, err)
			sc, err := scoring.New(tn.Config.Scorer, scoring.Env{Dir: dir})
			require.NoError(t, err)
			for _, c := range sharedCases(t, name, 5) {
				require.Equal(t, tn.Config.TaskType, c.TaskType)
				require.NoError(t, ch.DryRun(c))
				require.NoError(t, sc.Validate(c))
				tr := ch.Run(context.Background(), c, tenantModels{client})
				require.Empty(t, tr.Error, c.CaseID)
				r, err := sc.Score(context.Background(), c, scoring.Output{Final: tr.Final, Trace: tr})
				require.NoError(t, err, c.CaseID)
				require.NoError(t, scoring.CheckResult(r))
			}
		})
	}
}
