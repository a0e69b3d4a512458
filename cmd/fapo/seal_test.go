package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/provider/fakellm"
)

// cliRun runs fapo in-process and returns the exit code, stdout and stderr.
func cliRun(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := runCLI(context.Background(), &cliEnv{
		stdin:  strings.NewReader(""),
		stdout: &out,
		stderr: &errb,
		getenv: func(k string) string { return env[k] },
	}, args)
	return code, out.String(), errb.String()
}

// sealWorkspace is a workspace with tenants/demo and a store home outside it.
type sealWorkspace struct {
	ws, tenant, home, source string
	env                      map[string]string
}

func newSealWorkspace(t *testing.T, stratify string, lines []string) sealWorkspace {
	t.Helper()
	root := t.TempDir()
	w := sealWorkspace{ws: filepath.Join(root, "ws"), home: filepath.Join(root, "home"), source: filepath.Join(root, "cases.jsonl")}
	w.tenant = filepath.Join(w.ws, "tenants", "demo")
	// The model is the chat-completions test double, reached the way an
	// operator points a tenant at a local server.
	llm := fakellm.New()
	t.Cleanup(llm.Close)
	w.env = map[string]string{"FAPO_HOME": w.home, "FAPO_BASE_URL": llm.URL()}
	require.NoError(t, os.MkdirAll(w.tenant, 0o755))
	toml := `name = "demo"
task_type = "qa"

[data]
train = 0.6
validation = 0.2
test = 0.2
seed = 5
stratify = "` + stratify + `"

[model]
provider = "openai"
name = "gpt-4o-mini"
base_url_env = "FAPO_BASE_URL"
name_env = "FAPO_MODEL"

[scorer]
kind = "exact_match"
`
	require.NoError(t, os.WriteFile(filepath.Join(w.tenant, "tenant.toml"), []byte(toml), 0o644))
	// A one-step chain whose template reads no field, so it renders on any case.
	require.NoError(t, os.WriteFile(filepath.Join(w.tenant, "chain.toml"), []byte("[[steps]]\nid = \"answer\"\nkind = \"llm\"\nprompt = \"prompts/answer.md\"\n"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(w.tenant, "prompts"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(w.tenant, "prompts", "answer.md"), []byte("Case {{.case_token}}: answer it.\n"), 0o644))
	if lines != nil {
		require.NoError(t, os.WriteFile(w.source, []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	}
	return w
}

var facts = []string{
	"the observatory on the hill was closed for repairs after the storm in march",
	"an old ferry carried passengers across the strait twice a day until nineteen sixty",
	"the bakery on the corner sells rye bread made with a starter kept for decades",
	"migrating cranes stop at the marsh every autumn before crossing the mountains",
}

// qaLines makes n cases whose questions share words but no run of five:
// templated questions would be grouped as near-duplicates by the seal.
func qaLines(n int) []string {
	var vocab []string
	for _, f := range facts {
		vocab = append(vocab, strings.Fields(f)...)
	}
	out := make([]string, n)
	for i := range out {
		words := make([]string, 10)
		for k := range words {
			words[k] = vocab[(i*7+k*k*13+k*i*3)%len(vocab)]
		}
		q := fmt.Sprintf("question %d: is it true that %s as record %d states", i, strings.Join(words, " "), i*31)
		out[i] = fmt.Sprintf(`{"case_id":"q%03d","task_type":"qa","context":{"question":%q},"expected":{"label":"L%d"}}`, i, q, i%2)
	}
	return out
}

func TestSealCommand(t *testing.T) {
	w := newSealWorkspace(t, "expected.label", qaLines(40))
	code, out, errs := cliRun(t, w.env, "seal", w.tenant, "--source", w.source)
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "sealed tenant demo: 40 cases")
	require.Regexp(t, `train\s+24\s+0\.60`, out)
	require.Regexp(t, `validation\s+8\s+0\.20`, out)
	require.Regexp(t, `test\s+8\s+0\.20`, out)
	require.Contains(t, out, "strata of expected.label")
	require.Regexp(t, `L0\s+12\s+4\s+4`, out)
	require.Contains(t, out, filepath.Join(w.home, "tenants", "demo", "manifest.json"))
	require.FileExists(t, filepath.Join(w.tenant, "data", "train.jsonl"))

	// Flags may also come first; --home overrides FAPO_HOME.
	other := filepath.Join(t.TempDir(), "other-home")
	code, _, errs = cliRun(t, w.env, "seal", "--home", other, "--source", w.source, w.tenant)
	require.Equal(t, 0, code, errs)
	require.FileExists(t, filepath.Join(other, "tenants", "demo", "manifest.json"))

	// A tenant with runs needs --force, and the refusal says why.
	require.NoError(t, os.MkdirAll(filepath.Join(w.tenant, "runs", "r20250101T000000Z-000000"), 0o755))
	code, _, errs = cliRun(t, w.env, "seal", w.tenant, "--source", w.source)
	require.Equal(t, 1, code)
	require.Contains(t, errs, "already has 1 runs")
	require.Contains(t, errs, "--force")
	code, _, errs = cliRun(t, w.env, "seal", w.tenant, "--source", w.source, "--force")
	require.Equal(t, 0, code, errs)
}

// TestSealReportsDuplicatesAndPower: a case planted again under another id
// (exactly, and with a few words changed) is reported as merged, and the
// validation split's minimum detectable effect is the bound before any run:
// 2.8016 × 100 / √9 = 93.4 points with 9 validation cases.
func TestSealReportsDuplicatesAndPower(t *testing.T) {
	lines := qaLines(40)
	lines = append(lines,
		strings.Replace(strings.Replace(lines[3], `"q003"`, `"copy-of-q003"`, 1), "question 3:", "QUESTION 3 -", 1),
		strings.Replace(strings.Replace(lines[5], `"q005"`, `"near-q005"`, 1), "is it true that", "was it so that", 1))
	w := newSealWorkspace(t, "", lines)
	code, out, errs := cliRun(t, w.env, "seal", w.tenant, "--source", w.source)
	require.Equal(t, 0, code, errs)
	require.Contains(t, out, "contamination check: 2 groups of near-duplicate cases merged, 4 cases in all (exact copies: 1), each kept in one split")
	require.Regexp(t, `power: with 9 validation cases a paired comparison detects a true gain of about 93\.4 points 80% of the time`, out)
	require.Contains(t, out, "worst case for scores in [0, 100]")

	code, out, errs = cliRun(t, w.env, "doctor", "--offline", w.tenant)
	require.Equal(t, 0, code, out+errs)
	require.Regexp(t, `ok\s+sealed store\s+.*contamination check: 2 groups of near-duplicate cases merged, 4 cases in all`, out)
}

func TestSealCommandErrors(t *testing.T) {
	w := newSealWorkspace(t, "expected.label", qaLines(10))
	notDir := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(notDir, []byte("x"), 0o644))
	badSrc := filepath.Join(t.TempDir(), "bad.jsonl")
	require.NoError(t, os.WriteFile(badSrc, []byte(qaLines(1)[0]+"\n{oops\n"), 0o644))
	tests := []struct {
		name string
		env  map[string]string
		args []string
		code int
		want string
	}{
		{"no tenant", w.env, []string{"seal", "--source", w.source}, 2, "missing the tenant directory"},
		{"two tenants", w.env, []string{"seal", w.tenant, w.tenant, "--source", w.source}, 2, "want one tenant directory"},
		{"no source", w.env, []string{"seal", w.tenant}, 2, "--source is required"},
		{"unknown flag", w.env, []string{"seal", w.tenant, "--sauce", w.source}, 2, "flag provided but not defined"},
		{"not a tenant", w.env, []string{"seal", t.TempDir(), "--source", w.source}, 1, "not a tenant"},
		{"missing source", w.env, []string{"seal", w.tenant, "--source", w.source + ".nope"}, 1, "no such file"},
		{"bad source line", w.env, []string{"seal", w.tenant, "--source", badSrc}, 1, badSrc + ":2: invalid JSON"},
		{"home is a file", w.env, []string{"seal", w.tenant, "--source", w.source, "--home", notDir}, 1, "is a file, not a directory"},
		{"no home at all", map[string]string{}, []string{"seal", w.tenant, "--source", w.source}, 1, "set FAPO_HOME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errs := cliRun(t, tt.env, tt.args...)
			require.Equal(t, tt.code, code, errs)
			require.Contains(t, errs, tt.want)
		})
	}
}

func TestSealAndDoctorHelp(t *testing.T) {
	for _, cmd := range []string{"seal", "doctor"} {
		code, out, _ := cliRun(t, nil, cmd, "--help")
		require.Equal(t, 0, code)
		require.Contains(t, out, "Usage: fapo "+cmd+" tenants/NAME")
		require.Contains(t, out, "-home")
	}
}

// TestSealWarnsWhenTheGuardPredatesTheSource: register --write lists the
// sources sealed when it ran; sealing another afterwards says to run it
// again, since the new source holds the held-out cases in plain text.
func TestSealWarnsWhenTheGuardPredatesTheSource(t *testing.T) {
	w := newSealWorkspace(t, "", qaLines(40))
	settings := filepath.Join(w.ws, ".claude", "settings.json")
	require.NoError(t, os.MkdirAll(filepath.Dir(settings), 0o755))
	require.NoError(t, os.WriteFile(settings, []byte(`{"permissions": {"deny": ["Read(//home/u/.local/share/fapo/**)"]}, "mcpServers": {"fapo": {}}}`), 0o644))
	code, _, errs := cliRun(t, w.env, "seal", w.tenant, "--source", w.source)
	require.Equal(t, 0, code, errs)
	require.Contains(t, errs, "does not deny "+w.source)
	require.Contains(t, errs, "run fapo register claude --write again")

	require.NoError(t, os.WriteFile(settings, []byte(`{"permissions": {"deny": ["Read(/`+w.source+`)"]}, "fapo": true}`), 0o644))
	code, _, errs = cliRun(t, w.env, "seal", w.tenant, "--source", w.source, "--force")
	require.Equal(t, 0, code, errs)
	require.NotContains(t, errs, "does not deny")
}
