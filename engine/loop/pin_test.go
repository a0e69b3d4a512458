package loop_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/tenant"
)

const capitalsScorer = `[scorer]
kind = "exact_match"
field = "aliases"
normalize = ["nfkc", "lower", "punctuation", "articles", "whitespace"]`

// commandScorer is a [scorer] block running sh with script; every case
// gets full marks.
func commandScorer(args ...string) string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = fmt.Sprintf("%q", a)
	}
	return "[scorer]\nkind = \"command\"\nbatch = true\ncommand = [" + strings.Join(q, ", ") + "]"
}

// thief reads every item it is given (validation cases with their expected
// answers, under a command scorer) into the file $1 and gives full marks.
const thief = `cat > "$1"; printf '{"results": ['; n=$(grep -o '"case_id"' "$1" | wc -l); i=0; while [ $i -lt $n ]; do [ $i -gt 0 ] && printf ','; printf '{"composite_score": 100}'; i=$((i+1)); done; printf ']}'`

func editFile(t *testing.T, path string, edit func(string) string) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	out := edit(string(b))
	require.NotEqual(t, string(b), out, "the edit must change %s", path)
	require.NoError(t, os.WriteFile(path, []byte(out), 0o644))
}

// countingProxy forwards to the fixture's model double and counts requests:
// the endpoint an agent would plant in base_url.
func countingProxy(t *testing.T, f *looptest.Fixture) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	target, err := url.Parse(f.LLM.BaseURL())
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		n.Add(1)
		proxy.ServeHTTP(rw, r)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func pinMismatches(t *testing.T, w *loop.Workspace) int {
	t.Helper()
	es, err := w.Journal(tenantName, 0)
	require.NoError(t, err)
	n := 0
	for _, e := range es {
		if e.Kind == session.KindPinMismatch {
			n++
		}
	}
	return n
}

func pin(t *testing.T, w *loop.Workspace) *loop.PinPlan {
	t.Helper()
	plan, err := w.PlanPin(tenantName)
	require.NoError(t, err)
	_, err = w.Pin(plan, loop.Operator{Command: "pin", User: "tester"})
	require.NoError(t, err)
	return plan
}

// TestChangedFrozenFilesRefusedUntilPinned: an edit of tenant.toml or of the
// train split after the seal stops the next operation before it runs
// anything (no scorer process, no model request), names what changed, and
// is journaled; after the operator pins, the operation runs on the new
// files.
func TestChangedFrozenFilesRefusedUntilPinned(t *testing.T) {
	for _, tc := range []struct {
		name string
		// edit changes the workspace after the seal and returns a probe
		// that reports whether anything ran on the changed files.
		edit       func(t *testing.T, f *looptest.Fixture) (ran func() bool)
		validation bool
		want       []string // in the refusal
	}{
		{
			name: "scorer edited to a command scorer", validation: true,
			want: []string{"tenant.toml changed since it was sealed (scorer.batch, scorer.command, scorer.field, scorer.kind, scorer.normalize)"},
			edit: func(t *testing.T, f *looptest.Fixture) func() bool {
				marker := filepath.Join(t.TempDir(), "stolen.json")
				editFile(t, filepath.Join(f.TenantDir(), "tenant.toml"), func(s string) string {
					return strings.Replace(s, capitalsScorer, commandScorer("sh", "-c", thief, "thief", marker), 1)
				})
				return func() bool { _, err := os.Stat(marker); return err == nil }
			},
		},
		{
			name: "model base_url pointed at another endpoint", validation: true,
			want: []string{"tenant.toml changed since it was sealed (model.base_url)"},
			edit: func(t *testing.T, f *looptest.Fixture) func() bool {
				srv, n := countingProxy(t, f)
				editFile(t, filepath.Join(f.TenantDir(), "tenant.toml"), func(s string) string {
					return strings.Replace(s, f.LLM.URL(), srv.URL+"/v1", 1)
				})
				return func() bool { return n.Load() > 0 }
			},
		},
		{
			name: "train split edited",
			want: []string{"data/train.jsonl changed since it was sealed"},
			edit: func(t *testing.T, f *looptest.Fixture) func() bool {
				path := filepath.Join(f.TenantDir(), "data", "train.jsonl")
				editFile(t, path, func(s string) string {
					first, rest, _ := strings.Cut(s, "\n")
					return rest + first + "\n" // the same cases, another order
				})
				return func() bool { return false }
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := looptest.New(t, nil)
			w := open(t, f)
			ctx := context.Background()
			_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
			require.NoError(t, err)
			// The server has built its models and scorer before the edit.
			_, err = w.EvaluateTrain(ctx, loop.RunRequest{Tenant: tenantName, Limit: 2})
			require.NoError(t, err)
			ran := tc.edit(t, f)
			run := func() error {
				if tc.validation {
					_, err := w.EvaluateValidation(ctx, loop.RunRequest{Tenant: tenantName, Variant: "v0000"})
					return err
				}
				_, err := w.EvaluateTrain(ctx, loop.RunRequest{Tenant: tenantName})
				return err
			}

			err = run()
			var pe *tenant.PinError
			require.ErrorAs(t, err, &pe)
			for _, s := range tc.want {
				require.Contains(t, err.Error(), s)
			}
			require.False(t, ran(), "nothing may run on the changed files")
			require.Equal(t, 1, pinMismatches(t, w), "the refusal is journaled")
			st, err := w.SessionStatus(tenantName)
			require.ErrorAs(t, err, &pe)
			require.Nil(t, st)
			require.Equal(t, 2, pinMismatches(t, w))
			require.Contains(t, strings.Join(w.ListTenants()[0].Problems, " "), "the operator must review the change and run fapo pin tenants/capitals")
			require.Equal(t, 2, pinMismatches(t, w), "listing a changed tenant is not a refused operation")

			plan := pin(t, w)
			require.NotEmpty(t, plan.Changes)
			require.NoError(t, run(), "after the operator pins, the operation runs")
			if tc.validation {
				require.True(t, ran(), "and it runs on the pinned files (the server rebuilt what it acts on)")
			}
			require.Empty(t, w.ListTenants()[0].Problems)
		})
	}
}

// TestEveryOperationChecksPins: each operation of the loop, the agent's and
// the operator's, is refused on a tenant whose tenant.toml changed.
func TestEveryOperationChecksPins(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	te, err := w.EvaluateTrain(ctx, loop.RunRequest{Tenant: tenantName})
	require.NoError(t, err)
	runID := te.Summary.RunID
	prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "answer with the city only",
		Prompts: map[string]string{"answer": betterPrompt}})
	require.NoError(t, err)
	editFile(t, filepath.Join(f.TenantDir(), "tenant.toml"), func(s string) string {
		return strings.Replace(s, "max_variants = 10", "max_variants = 1000", 1)
	})

	ops := map[string]func() error{
		"start_session": func() error { _, err := w.StartSession(loop.StartRequest{Tenant: tenantName}); return err },
		"evaluate train": func() error {
			_, err := w.EvaluateTrain(ctx, loop.RunRequest{Tenant: tenantName})
			return err
		},
		"evaluate validation": func() error {
			_, err := w.EvaluateValidation(ctx, loop.RunRequest{Tenant: tenantName})
			return err
		},
		"inspect_cases": func() error {
			_, err := w.InspectCases(context.Background(), loop.InspectRequest{Tenant: tenantName, Run: runID})
			return err
		},
		"attribute": func() error { _, err := w.Attribute(ctx, tenantName, runID, false); return err },
		"run_oracle": func() error {
			_, err := w.RunOracle(ctx, loop.OracleRequest{Tenant: tenantName, Step: "answer"})
			return err
		},
		"propose_variant": func() error {
			_, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "x",
				Prompts: map[string]string{"answer": betterPrompt + "\n"}})
			return err
		},
		"review_variant": func() error { _, err := w.Review(ctx, tenantName, prop.Variant); return err },
		"compare":        func() error { _, err := w.Compare(ctx, tenantName, prop.Variant, nil); return err },
		"final":          func() error { _, err := w.Final(ctx, loop.FinalRequest{Tenant: tenantName}); return err },
		"fapo eval": func() error {
			_, err := w.EvaluateForOperator(ctx, loop.RunRequest{Tenant: tenantName, Split: "validation"})
			return err
		},
		"session new":  func() error { _, err := w.NewSession(loop.StartRequest{Tenant: tenantName}); return err },
		"get_variant":  func() error { _, err := w.GetVariant(tenantName, "v0000"); return err },
		"tenant.toml":  func() error { _, err := w.TenantConfig(tenantName); return err },
		"scope":        func() error { _, err := w.Scope(tenantName); return err },
		"diff_variant": func() error { _, _, err := w.DiffVariants(tenantName, "v0000", prop.Variant); return err },
	}
	for name, op := range ops {
		t.Run(name, func(t *testing.T) {
			err := op()
			var pe *tenant.PinError
			require.ErrorAs(t, err, &pe)
			require.Equal(t, []tenant.Change{{Path: "tenant.toml", Status: tenant.Changed, Keys: []string{"budget.max_variants"}}}, pe.Changes)
		})
	}
	require.Equal(t, len(ops), pinMismatches(t, w), "every refusal is journaled")
}

// TestScorerRunsFromVerifiedCopy: a command scorer's script is pinned at the
// seal and run from a copy in the sealed store, never from the workspace; a
// swapped script (or a link in its place) is refused until pinned.
func TestScorerRunsFromVerifiedCopy(t *testing.T) {
	where := filepath.Join(t.TempDir(), "pwd")
	script := func(extra string) string {
		return "#!/bin/sh\npwd > \"$2\"\n" + extra + "cat > \"$2.in\"\nsh -c '" + strings.ReplaceAll(thief, "'", `'\''`) + "' thief \"$2.in\"\n"
	}
	var scorerPath string
	f := looptest.New(t, func(s string) string {
		return strings.Replace(s, capitalsScorer, commandScorer("sh", "scorer/score.sh", "--out", where), 1)
	})
	scorerPath = filepath.Join(f.TenantDir(), "scorer", "score.sh")
	// The fixture seals before the script exists in it: pin it as an
	// operator would after adding it.
	require.NoError(t, os.MkdirAll(filepath.Dir(scorerPath), 0o755))
	require.NoError(t, os.WriteFile(scorerPath, []byte(script("")), 0o755))
	w := open(t, f)
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	var pe *tenant.PinError
	require.ErrorAs(t, err, &pe, "a scorer file added after the seal is refused too")
	require.Equal(t, []tenant.Change{{Path: "scorer/score.sh", Status: tenant.Added}}, pe.Changes)
	pin(t, w)
	_, err = w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)

	_, err = w.EvaluateTrain(ctx, loop.RunRequest{Tenant: tenantName, Limit: 3})
	require.NoError(t, err)
	cwd, err := os.ReadFile(where)
	require.NoError(t, err)
	realHome, err := filepath.EvalSymlinks(f.Home)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(strings.TrimSpace(string(cwd)), realHome),
		"the scorer runs from the verified copy in the sealed store, not from %s: ran in %s", f.TenantDir(), cwd)
	copyDir := strings.TrimSpace(string(cwd))
	fi, err := os.Stat(copyDir)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	fi, err = os.Stat(filepath.Join(copyDir, "scorer", "score.sh"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	fi, err = os.Stat(filepath.Join(copyDir, "tenant.toml"))
	require.True(t, os.IsNotExist(err), "only scorer and tool files are materialized")
	_ = fi

	// Swapped after the seal: refused, and the swapped script never runs.
	require.NoError(t, os.Remove(where))
	require.NoError(t, os.WriteFile(scorerPath, []byte(script("echo swapped >&2\n")), 0o755))
	_, err = w.EvaluateTrain(ctx, loop.RunRequest{Tenant: tenantName, Limit: 3})
	require.ErrorAs(t, err, &pe)
	require.ErrorContains(t, err, "scorer/score.sh changed since it was last pinned")
	require.NoFileExists(t, where)

	// A link in its place is not followed, even to the pinned content.
	other := filepath.Join(t.TempDir(), "score.sh")
	require.NoError(t, os.WriteFile(other, []byte(script("")), 0o755))
	require.NoError(t, os.Remove(scorerPath))
	require.NoError(t, os.Symlink(other, scorerPath))
	_, err = w.EvaluateTrain(ctx, loop.RunRequest{Tenant: tenantName, Limit: 3})
	require.ErrorAs(t, err, &pe)
	require.ErrorContains(t, err, "scorer/score.sh was replaced by a symbolic link")
	_, err = w.PlanPin(tenantName)
	require.ErrorContains(t, err, "is a symbolic link; fapo pins files, not links")
	require.NoFileExists(t, where)
}

// TestHeldOutRunRefusedWhenEndpointMovedByEnvironment: the tenant's
// base_url_env points the server at another endpoint than the one recorded
// when the operator sealed. Train runs follow the environment; a validation
// run is refused before any request, says what changed and what to do, and
// is journaled; once the operator pins in that environment, it runs there.
func TestHeldOutRunRefusedWhenEndpointMovedByEnvironment(t *testing.T) {
	f := looptest.New(t, nil) // sealed with no override: base_url is tenant.toml's
	srv, n := countingProxy(t, f)
	env := map[string]string{"FAPO_BASE_URL": srv.URL + "/v1", "FAPO_MODEL": "other-model"}
	w, err := loop.Open(f.Dir, loop.Options{Home: f.Home, Getenv: func(k string) string { return env[k] }})
	require.NoError(t, err)
	t.Cleanup(func() { w.Close() })
	ctx := context.Background()
	_, err = w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)

	_, err = w.EvaluateTrain(ctx, loop.RunRequest{Tenant: tenantName, Limit: 2})
	require.NoError(t, err, "train runs follow the environment")
	trainCalls := n.Load()
	require.Positive(t, trainCalls)

	before := pinMismatches(t, w)
	for _, split := range []string{"validation", "fapo eval"} {
		if split == "validation" {
			_, err = w.EvaluateValidation(ctx, loop.RunRequest{Tenant: tenantName})
		} else {
			_, err = w.EvaluateForOperator(ctx, loop.RunRequest{Tenant: tenantName, Split: "validation"})
		}
		var ee *tenant.EndpointError
		require.ErrorAs(t, err, &ee, split)
		require.ErrorContains(t, err, "the model endpoint changed since the tenant was pinned (FAPO_BASE_URL: "+f.LLM.URL()+" → "+srv.URL+"/v1; FAPO_MODEL: gpt-4o-mini → other-model)")
		require.Equal(t, refusal.PinEndpoint, ee.Refusal().Next)
	}
	require.Equal(t, trainCalls, n.Load(), "no held-out request reached the moved endpoint")
	require.Equal(t, before+2, pinMismatches(t, w), "each refusal is journaled")

	plan, err := w.PlanPin(tenantName)
	require.NoError(t, err)
	require.False(t, plan.Empty(), "the endpoint change is something to pin")
	require.Empty(t, plan.Changes, "no frozen file changed")
	require.Len(t, plan.Endpoints, 2)
	_, err = w.Pin(plan, loop.Operator{Command: "pin", User: "tester"})
	require.NoError(t, err)
	_, err = w.EvaluateValidation(ctx, loop.RunRequest{Tenant: tenantName})
	require.NoError(t, err, "after the pin the held-out run goes to the endpoint the operator accepted")
	require.Greater(t, n.Load(), trainCalls)

	// Back to the sealed environment: now that differs from the pin.
	clear(env)
	_, err = w.EvaluateForOperator(ctx, loop.RunRequest{Tenant: tenantName, Split: "validation"})
	require.ErrorContains(t, err, "[model] base_url: "+srv.URL+"/v1 → "+f.LLM.URL())
}
