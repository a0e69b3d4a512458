package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset/datasettest"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
)

func heldOutCases(t *testing.T, home string) []dataset.Case {
	t.Helper()
	var out []dataset.Case
	store := dataset.OpenStore(home)
	for _, sp := range []dataset.Split{dataset.Validation, dataset.Test} {
		require.NoError(t, store.ReadSplit(context.Background(), "demo", sp, func(c dataset.Case) error {
			out = append(out, c)
			return nil
		}))
	}
	return out
}

func TestDoctor(t *testing.T) {
	w := newSealWorkspace(t, "expected.label", qaLines(40))

	// Before sealing: the store check fails and the leak scan is skipped.
	code, out, errs := cliRun(t, w.env, "doctor", w.tenant)
	require.Equal(t, 1, code)
	require.Regexp(t, `ok\s+tenant\s+demo loads`, out)
	require.Regexp(t, `problem\s+train split\s+.*train.jsonl is missing: run fapo seal`, out)
	require.Regexp(t, `problem\s+sealed store\s+tenant demo is not sealed`, out)
	require.Regexp(t, `skipped\s+leak scan`, out)
	require.Regexp(t, `ok\s+model\s+gpt-4o-mini at http://127.0.0.1:\d+/v1 \(base_url from \$FAPO_BASE_URL\) answered`, out)
	require.Contains(t, errs, "2 of 7 checks failed, 2 skipped")

	code, _, errs = cliRun(t, w.env, "seal", w.tenant, "--source", w.source)
	require.Equal(t, 0, code, errs)
	code, out, errs = cliRun(t, w.env, "doctor", w.tenant)
	require.Equal(t, 0, code, out+errs)
	require.Regexp(t, `ok\s+train split\s+24 cases`, out)
	require.Regexp(t, `ok\s+sealed store\s+sealed .* train 24, validation 8, test 8`, out)
	require.Regexp(t, `ok\s+pins\s+2 frozen files match`, out)
	require.Regexp(t, `ok\s+leak scan\s+no held-out content in `+regexp.QuoteMeta(w.ws), out)

	// A held-out case dropped into the workspace is flagged without its text.
	held := heldOutCases(t, w.home)
	b, err := json.Marshal(held[0])
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(w.ws, "scratch.md"), append([]byte("# notes\n"), b...), 0o644))
	code, out, errs = cliRun(t, w.env, "doctor", w.tenant)
	require.Equal(t, 1, code)
	require.Regexp(t, `problem\s+leak scan\s+held-out cases found in 1 file under `, out)
	require.Contains(t, out, "scratch.md: 1 held-out case")
	require.NotContains(t, out+errs, held[0].Context["question"])
	require.Contains(t, errs, "1 of 7 checks failed\n")

	// --workspace narrows the scan.
	code, out, _ = cliRun(t, w.env, "doctor", "--workspace", w.tenant, w.tenant)
	require.Equal(t, 0, code, out)

	// An edited train split no longer matches the seal.
	train := filepath.Join(w.tenant, "data", "train.jsonl")
	orig, err := os.ReadFile(train)
	require.NoError(t, err)
	lines := strings.SplitAfter(string(orig), "\n")
	require.NoError(t, os.WriteFile(train, []byte(strings.Join(lines[1:], "")), 0o644))
	code, out, _ = cliRun(t, w.env, "doctor", "--workspace", w.tenant, w.tenant)
	require.Equal(t, 1, code)
	require.Regexp(t, `problem\s+sealed store\s+data/train.jsonl is not the train split sealed on .* \(23 cases now, 24 sealed\)`, out)

	require.NoError(t, os.WriteFile(train, append([]byte("{broken\n"), orig...), 0o644))
	code, out, _ = cliRun(t, w.env, "doctor", "--workspace", w.tenant, w.tenant)
	require.Equal(t, 1, code)
	require.Regexp(t, `problem\s+train split\s+.*train.jsonl:1: invalid JSON`, out)
}

func TestDoctorErrors(t *testing.T) {
	w := newSealWorkspace(t, "", qaLines(10))
	tests := []struct {
		name string
		args []string
		code int
		out  []string
		errs string
	}{
		{"no tenant", []string{"doctor"}, 2, nil, "missing the tenant directory"},
		{"unknown flag", []string{"doctor", w.tenant, "--nope"}, 2, nil, "flag provided but not defined"},
		{"not a tenant", []string{"doctor", t.TempDir()}, 1, []string{`problem\s+tenant\s+.*not a tenant`, `skipped\s+train split`, `skipped\s+sealed store`, `skipped\s+model`, `skipped\s+leak scan`}, "1 of 7 checks failed, 6 skipped"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := cliRun(t, w.env, tt.args...)
			require.Equal(t, tt.code, code, out+errs)
			for _, re := range tt.out {
				require.Regexp(t, re, out)
			}
			require.Contains(t, errs, tt.errs)
		})
	}
}

func TestDefaultWorkspace(t *testing.T) {
	root := t.TempDir()
	got, err := defaultWorkspace(filepath.Join(root, "tenants", "demo"))
	require.NoError(t, err)
	require.Equal(t, root, got)
	cwd, err := os.Getwd()
	require.NoError(t, err)
	got, err = defaultWorkspace(filepath.Join(root, "elsewhere", "demo"))
	require.NoError(t, err)
	require.Equal(t, cwd, got)
}

// TestSealDoctorSharedData is the acceptance run through the CLI on
// real datasets: seal, doctor passes, a copied held-out case is flagged.
func TestSealDoctorSharedData(t *testing.T) {
	for _, tt := range []struct{ file, taskType, field string }{
		{"hover.jsonl", "claim", "claim"},
		{"banking77.jsonl", "classification", "text"},
	} {
		t.Run(tt.file, func(t *testing.T) {
			src := datasettest.SharedFile(t, tt.file)
			w := newSealWorkspace(t, "expected.label", nil)
			toml, err := os.ReadFile(filepath.Join(w.tenant, "tenant.toml"))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(w.tenant, "tenant.toml"), []byte(strings.Replace(string(toml), `task_type = "qa"`, `task_type = "`+tt.taskType+`"`, 1)), 0o644))

			code, out, errs := cliRun(t, w.env, "seal", w.tenant, "--source", src)
			require.Equal(t, 0, code, errs)
			require.Contains(t, out, "strata of expected.label")
			code, out, errs = cliRun(t, w.env, "doctor", w.tenant)
			require.Equal(t, 0, code, out+errs)

			held := heldOutCases(t, w.home)
			var picked dataset.Case
			for _, c := range held {
				if len(strings.Fields(c.Context[tt.field].(string))) >= 10 {
					picked = c
					break
				}
			}
			require.NotEmpty(t, picked.CaseID)
			b, err := json.Marshal(picked)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(w.tenant, "prompts-draft.md"), b, 0o644))
			code, out, _ = cliRun(t, w.env, "doctor", w.tenant)
			require.Equal(t, 1, code)
			require.Contains(t, out, filepath.Join("tenants", "demo", "prompts-draft.md")+": 1 held-out case")
			require.NotContains(t, out, picked.Context[tt.field])
		})
	}
}

// TestDoctorModel: the model check makes one real call and reports what went
// wrong in the provider's own words: a refused key (the test double's 401
// body), a refused connection, a missing key; --offline skips it.
func TestDoctorModel(t *testing.T) {
	w := newSealWorkspace(t, "", qaLines(10))
	code, _, errs := cliRun(t, w.env, "seal", w.tenant, "--source", w.source)
	require.Equal(t, 0, code, errs)

	unauthorized := fakellm.New(fakellm.WithDefault(func(fakellm.Request) fakellm.Reply {
		return fakellm.Reply{Fault: fakellm.Status(401)}
	}))
	defer unauthorized.Close()
	// A port that was listening a moment ago and is closed now refuses.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := "http://" + l.Addr().String() + "/v1"
	require.NoError(t, l.Close())

	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want []string
	}{
		{"a working server", w.env, nil, 0, []string{`ok\s+model\s+gpt-4o-mini at http://127.0.0.1:\d+/v1 \(base_url from \$FAPO_BASE_URL\) answered in`}},
		{"the override names the model", map[string]string{"FAPO_HOME": w.home, "FAPO_BASE_URL": w.env["FAPO_BASE_URL"], "FAPO_MODEL": "llama3.2"}, nil, 0,
			[]string{`ok\s+model\s+llama3.2 at http://\S+ \(base_url from \$FAPO_BASE_URL, name from \$FAPO_MODEL\) answered`}},
		{"401 with the provider's text", map[string]string{"FAPO_HOME": w.home, "FAPO_BASE_URL": unauthorized.URL()}, nil, 1,
			[]string{`problem\s+model\s+\[model\] gpt-4o-mini at http://\S+ \(base_url from \$FAPO_BASE_URL\): the server answered: .*401 Unauthorized: ` + regexp.QuoteMeta(fakellm.Fingerprint) + `: injected 401`}},
		{"connection refused", map[string]string{"FAPO_HOME": w.home, "FAPO_BASE_URL": refused}, nil, 1,
			[]string{`problem\s+model\s+\[model\] gpt-4o-mini at ` + regexp.QuoteMeta(refused) + ` .*cannot reach the server: .*connection refused; start it, or fix base_url \(or \$FAPO_BASE_URL\)`}},
		{"no key for OpenAI", map[string]string{"FAPO_HOME": w.home}, nil, 1,
			[]string{`problem\s+model\s+\[model\] .*OPENAI_API_KEY is empty: export it`}},
		{"offline skips the call", map[string]string{"FAPO_HOME": w.home}, []string{"--offline"}, 0,
			[]string{`skipped\s+model\s+not called \(--offline\)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := cliRun(t, tt.env, append([]string{"doctor", w.tenant}, tt.args...)...)
			require.Equal(t, tt.code, code, out+errs)
			for _, re := range tt.want {
				require.Regexp(t, re, out)
			}
			if tt.code != 0 {
				require.Contains(t, errs, "1 of 7 checks failed")
			}
		})
	}
	require.Equal(t, 1, unauthorized.Count(), "one tiny call, no retries")
}
