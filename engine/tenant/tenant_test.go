package tenant

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/variant"
)

// minimal is the smallest valid tenant.toml; every other key takes its default.
const minimal = `
name = "demo"
task_type = "qa"

[model]
provider = "openai"
name = "gpt-4o-mini"

[scorer]
kind = "exact_match"
`

func parseProblems(t *testing.T, src, dirName string) []Problem {
	t.Helper()
	_, err := Parse([]byte(src), dirName)
	if err == nil {
		return nil
	}
	var le *LoadError
	require.ErrorAs(t, err, &le)
	return le.Problems
}

func TestParseDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimal), "demo")
	require.NoError(t, err)
	require.Equal(t, DataConfig{Train: 0.6, Validation: 0.2, Test: 0.2, Seed: 42}, cfg.Data)
	require.Equal(t, 8, cfg.Model.Concurrency)
	require.Equal(t, 60.0, cfg.Model.TimeoutSeconds)
	require.Equal(t, 4, cfg.Model.MaxRetries)
	require.Equal(t, "composite_score", cfg.Target.Metric)
	require.Equal(t, BudgetConfig{MaxVariants: 20, MaxValidationEval: 12}, cfg.Budget)
	require.Equal(t, EscalationConfig{Levels: []variant.Level{"prompt", "parameter", "structural"}, Patience: 3}, cfg.Escalation)
	require.Equal(t, AcceptanceConfig{Rule: "improves", Bootstrap: 2000, Seed: 7, ModelsRule: "every", Repeats: 1}, cfg.Acceptance)
	require.Equal(t, 20000, cfg.Review.MaxPromptChars)
	require.Equal(t, 8, cfg.Review.LeakageNgram)
}

func TestParseKeepsExplicitZeros(t *testing.T) {
	src := minimal + `
[data]
seed = 0
[acceptance]
seed = 0
`
	src = strings.Replace(src, `name = "gpt-4o-mini"`, "name = \"gpt-4o-mini\"\nmax_retries = 0", 1)
	cfg, err := Parse([]byte(src), "demo")
	require.NoError(t, err)
	require.Zero(t, cfg.Data.Seed)
	require.Zero(t, cfg.Acceptance.Seed)
	require.Zero(t, cfg.Model.MaxRetries)
	require.Equal(t, 0.6, cfg.Data.Train, "ratios default when none is given")
}

func TestParseModelsDefaults(t *testing.T) {
	src := minimal + `
[models.judge]
provider = "openai_compatible"
name = "llama"
base_url = "http://localhost:8000/v1"
concurrency = 2
`
	cfg, err := Parse([]byte(src), "demo")
	require.NoError(t, err)
	require.Equal(t, 2, cfg.Models["judge"].Concurrency)
	require.Equal(t, 60.0, cfg.Models["judge"].TimeoutSeconds)
	require.Equal(t, 4, cfg.Models["judge"].MaxRetries)
}

// TestValidation has one row per rule: the edit applied to a valid file and
// the key and message fragment of the problem it must produce.
func TestValidation(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		dirName string
		key     string
		msg     string
	}{
		{"name missing", strings.Replace(minimal, `name = "demo"`, "", 1), "demo", "name", `missing; set name = "demo"`},
		{"name uppercase", strings.Replace(minimal, `name = "demo"`, `name = "Demo"`, 1), "Demo", "name", "not a valid tenant name"},
		{"name with space", strings.Replace(minimal, `name = "demo"`, `name = "my demo"`, 1), "", "name", "not a valid tenant name"},
		{"name differs from dir", minimal, "other", "name", `does not match the directory name "other"`},
		{"task_type missing", strings.Replace(minimal, `task_type = "qa"`, "", 1), "demo", "task_type", "missing"},
		{"task_type blank", strings.Replace(minimal, `task_type = "qa"`, `task_type = "  "`, 1), "demo", "task_type", "missing"},
		{"ratio above 1", minimal + "[data]\ntrain = 1.5\nvalidation = -0.7\ntest = 0.2\n", "demo", "data.train", "between 0 and 1"},
		{"ratio below 0", minimal + "[data]\ntrain = 1.5\nvalidation = -0.7\ntest = 0.2\n", "demo", "data.validation", "between 0 and 1"},
		{"ratio sum", minimal + "[data]\ntrain = 0.7\nvalidation = 0.2\ntest = 0.2\n", "demo", "data", "must sum to 1"},
		{"ratio nan", minimal + "[data]\ntrain = nan\nvalidation = 0.2\ntest = 0.2\n", "demo", "data.train", "between 0 and 1"},
		{"test zero", minimal + "[data]\ntrain = 0.8\nvalidation = 0.2\ntest = 0.0\n", "demo", "data.test", "must be above 0"},
		{"validation zero", minimal + "[data]\ntrain = 0.8\nvalidation = 0.0\ntest = 0.2\n", "demo", "data.validation", "must be above 0"},
		{"train zero", minimal + "[data]\ntrain = 0.0\nvalidation = 0.8\ntest = 0.2\n", "demo", "data.train", "must be above 0"},
		{"stratify prefix", minimal + "[data]\nstratify = \"label\"\n", "demo", "data.stratify", "must be a case path"},
		{"stratify empty rest", minimal + "[data]\nstratify = \"expected.\"\n", "demo", "data.stratify", "must be a case path"},
		{"provider missing", strings.Replace(minimal, `provider = "openai"`, "", 1), "demo", "model.provider", "missing"},
		{"provider typo", strings.Replace(minimal, `provider = "openai"`, `provider = "opnai"`, 1), "demo", "model.provider", `did you mean "openai"?`},
		{"model name missing", strings.Replace(minimal, `name = "gpt-4o-mini"`, "", 1), "demo", "model.name", "missing"},
		{"compatible needs base_url", strings.Replace(minimal, `provider = "openai"`, `provider = "openai_compatible"`, 1), "demo", "model.base_url", "missing"},
		{"base_url not a url", strings.Replace(minimal, `name = "gpt-4o-mini"`, "name = \"m\"\nbase_url = \"localhost:8000\"", 1), "demo", "model.base_url", "not an http(s) URL"},
		{"sagemaker region", strings.Replace(minimal, `provider = "openai"`, "provider = \"sagemaker\"\nendpoint = \"e\"", 1), "demo", "model.region", "missing"},
		{"sagemaker endpoint", strings.Replace(minimal, `provider = "openai"`, "provider = \"sagemaker\"\nregion = \"us-east-1\"", 1), "demo", "model.endpoint", "missing"},
		{"api key pasted", strings.Replace(minimal, `name = "gpt-4o-mini"`, "name = \"m\"\napi_key_env = \"sk-abc123\"", 1), "demo", "model.api_key_env", "never the key itself"},
		{"concurrency zero", strings.Replace(minimal, `name = "gpt-4o-mini"`, "name = \"m\"\nconcurrency = 0", 1), "demo", "model.concurrency", "at least 1"},
		{"timeout negative", strings.Replace(minimal, `name = "gpt-4o-mini"`, "name = \"m\"\ntimeout_seconds = -1", 1), "demo", "model.timeout_seconds", "above 0"},
		{"retries negative", strings.Replace(minimal, `name = "gpt-4o-mini"`, "name = \"m\"\nmax_retries = -1", 1), "demo", "model.max_retries", "0 or more"},
		{"rpm negative", strings.Replace(minimal, `name = "gpt-4o-mini"`, "name = \"m\"\nrequests_per_minute = -1", 1), "demo", "model.requests_per_minute", "0 (unlimited)"},
		{"tpm negative", strings.Replace(minimal, `name = "gpt-4o-mini"`, "name = \"m\"\ntokens_per_minute = -1", 1), "demo", "model.tokens_per_minute", "0 (unlimited)"},
		{"models block checked", minimal + "[models.judge]\nprovider = \"sagemaker\"\nregion = \"r\"\n", "demo", "models.judge.endpoint", "missing"},
		{"models name", minimal + "[models.\"my-judge\"]\nprovider = \"openai\"\nname = \"m\"\n", "demo", "models.my-judge", "identifier"},
		{"price negative", minimal + "[prices.\"gpt-4o-mini\"]\ninput_per_mtok = -1\noutput_per_mtok = 0.6\n", "demo", "prices.gpt-4o-mini.input_per_mtok", "non-negative"},
		{"price output negative", minimal + "[prices.m]\noutput_per_mtok = -0.5\n", "demo", "prices.m.output_per_mtok", "non-negative"},
		{"scorer kind typo", strings.Replace(minimal, `kind = "exact_match"`, `kind = "exat_match"`, 1), "demo", "scorer.kind", `unknown "exat_match"; did you mean "exact_match"?`},
		{"scorer kind missing", strings.Replace(minimal, `kind = "exact_match"`, "", 1), "demo", "scorer.kind", "missing"},
		{"scorer model undeclared", strings.Replace(minimal, `kind = "exact_match"`, "kind = \"llm_judge\"\nmodel = \"judge\"\nrubric = \"r\"", 1), "demo", "scorer.model", "no [models.judge] block"},
		{"scorer model typo", strings.Replace(minimal, `kind = "exact_match"`, "kind = \"llm_judge\"\nmodel = \"jugde\"\nrubric = \"r\"", 1) + "[models.judge]\nprovider = \"openai\"\nname = \"m\"\n", "demo", "scorer.model", `did you mean "judge"?`},
		{"cost ratio negative", minimal + "[acceptance]\nmax_cost_ratio = -1\n", "demo", "acceptance.max_cost_ratio", "positive factor"},
		{"latency ratio nan", minimal + "[acceptance]\nmax_latency_ratio = nan\n", "demo", "acceptance.max_latency_ratio", "positive factor"},
		{"task model undeclared", minimal + "[acceptance]\ntask_models = [\"cheap\"]\n", "demo", "acceptance.task_models", "not a [models.cheap] block"},
		{"models rule typo", minimal + "[acceptance]\nmodels_rule = \"evry\"\n", "demo", "acceptance.models_rule", `did you mean "every"?`},
		{"repeats zero", minimal + "[acceptance]\nrepeats = -2\n", "demo", "acceptance.repeats", "at least 1"},
		{"pass_k above repeats", minimal + "[acceptance]\nrepeats = 2\npass_k = 3\n", "demo", "acceptance.pass_k", "between 1 and acceptance.repeats (2)"},
		{"review model undeclared", minimal + "[review]\nmodel = \"reviewer\"\n", "demo", "review.model", `names model "reviewer"`},
		{"review chars zero", minimal + "[review]\nmax_prompt_chars = 0\n", "demo", "review.max_prompt_chars", "at least 1"},
		{"review ngram zero", minimal + "[review]\nleakage_ngram = 0\n", "demo", "review.leakage_ngram", "at least 1"},
		{"target metric syntax", minimal + "[target]\nmetric = \"composite score\"\n", "demo", "target.metric", "not a metric name"},
		{"target min range", minimal + "[target]\nmin = 101\n", "demo", "target.min", "between 0 and 100"},
		{"target gain range", minimal + "[target]\ngain = -2\n", "demo", "target.gain", "between 0 and 100"},
		{"target composite component", strings.Replace(minimal, `kind = "exact_match"`, "kind = \"composite\"\n[[scorer.components]]\nname = \"em\"\nweight = 1.0\n[scorer.components.scorer]\nkind = \"exact_match\"\n", 1) + "[target]\nmetric = \"eem\"\n", "demo", "target.metric", `did you mean "em"?`},
		{"budget variants", minimal + "[budget]\nmax_variants = 0\n", "demo", "budget.max_variants", "at least 1"},
		{"budget evals", minimal + "[budget]\nmax_validation_evals = -2\n", "demo", "budget.max_validation_evals", "at least 1"},
		{"budget usd", minimal + "[budget]\nmax_usd = -1.0\n", "demo", "budget.max_usd", "non-negative"},
		{"levels empty", minimal + "[escalation]\nlevels = []\n", "demo", "escalation.levels", "empty"},
		{"levels unknown", minimal + "[escalation]\nlevels = [\"promt\"]\n", "demo", "escalation.levels", `did you mean "prompt"?`},
		{"levels order", minimal + "[escalation]\nlevels = [\"parameter\", \"prompt\"]\n", "demo", "escalation.levels", "out of order"},
		{"levels repeated", minimal + "[escalation]\nlevels = [\"prompt\", \"prompt\"]\n", "demo", "escalation.levels", "out of order or repeated"},
		{"patience zero", minimal + "[escalation]\npatience = 0\n", "demo", "escalation.patience", "at least 1"},
		{"rule typo", minimal + "[acceptance]\nrule = \"improve\"\n", "demo", "acceptance.rule", `did you mean "improves"?`},
		{"bootstrap zero", minimal + "[acceptance]\nbootstrap = 0\n", "demo", "acceptance.bootstrap", "at least 1"},
		{"fail_below range", minimal + "[attribution]\nfail_below = 150.0\n", "demo", "attribution.fail_below", "between 0 and 100"},
		{"oracle step id", minimal + "[oracle]\n\"2nd-step\" = \"expected.facts\"\n", "demo", "oracle.2nd-step", "not a step id"},
		{"oracle path", minimal + "[oracle]\nretrieve = \"context.paragraphs\"\n", "demo", "oracle.retrieve", "path into the expected values"},
		{"unknown top key", "tasktype = \"qa\"\n" + minimal, "demo", "tasktype", `unknown key; did you mean "task_type"?`},
		{"unknown nested key", strings.Replace(minimal, `kind = "exact_match"`, "kind = \"exact_match\"\nnormalise = [\"lower\"]", 1), "demo", "scorer.normalise", `did you mean "normalize"?`},
		{"unknown models key", minimal + "[models.j]\nprovider = \"openai\"\nname = \"m\"\nbaseurl = \"http://x\"\n", "demo", "models.j.baseurl", `did you mean "base_url"?`},
		{"unknown component key", strings.Replace(minimal, `kind = "exact_match"`, "kind = \"composite\"\n[[scorer.components]]\nname = \"em\"\nweigth = 1.0\n[scorer.components.scorer]\nkind = \"exact_match\"\n", 1), "demo", "scorer.components.weigth", `did you mean "weight"?`},
		{"unknown key far off", "zzzzzzzz = 1\n" + minimal, "demo", "zzzzzzzz", "known keys here:"},
		{"unknown table", minimal + "[extra]\na = 1\nb = 2\n", "demo", "extra", "unknown key"},
		{"syntax error", minimal + "[data\n", "demo", "scorer", "expected '.' or ']'"},
		{"type error", minimal + "[data]\ntrain = \"lots\"\n", "demo", "data.train", "incompatible types"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := parseProblems(t, tt.src, tt.dirName)
			require.NotEmpty(t, ps, "expected a problem")
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
				if p.Key == tt.key && strings.Contains(p.Msg, tt.msg) {
					return
				}
			}
			t.Fatalf("no problem %s: ...%s...; got:\n%s", tt.key, tt.msg, strings.Join(got, "\n"))
		})
	}
}

func TestValidAlternatives(t *testing.T) {
	tests := []struct{ name, extra string }{
		{"stratify", "[data]\nstratify = \"expected.label\"\n"},
		{"ratios given", "[data]\ntrain = 0.5\nvalidation = 0.25\ntest = 0.25\n"},
		{"levels subsequence", "[escalation]\nlevels = [\"prompt\", \"structural\"]\n"},
		{"significant", "[acceptance]\nrule = \"significant\"\n"},
		{"oracle", "[oracle]\nretrieve = \"expected.supporting_facts\"\n"},
		{"review model", "[review]\nmodel = \"rev\"\n[models.rev]\nprovider = \"sagemaker\"\nregion = \"us-east-1\"\nendpoint = \"e\"\n"},
		{"prices", "[prices.\"gpt-4o-mini\"]\ninput_per_mtok = 0.15\noutput_per_mtok = 0.6\n"},
		{"breakdown metric", "[target]\nmetric = \"f1\"\nmin = 70\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Empty(t, parseProblems(t, minimal+tt.extra, "demo"))
		})
	}
}

func TestParseReportsEveryProblem(t *testing.T) {
	src := strings.NewReplacer(`kind = "exact_match"`, `kind = "exat_match"`, `provider = "openai"`, `provider = "opnai"`).Replace(minimal) + "[budget]\nmax_variants = 0\n"
	_, err := Parse([]byte(src), "demo")
	var le *LoadError
	require.ErrorAs(t, err, &le)
	msg := err.Error()
	require.Contains(t, msg, `tenant.toml: scorer.kind: unknown "exat_match"; did you mean "exact_match"?`)
	require.Contains(t, msg, `tenant.toml: model.provider: unknown "opnai"`)
	require.Contains(t, msg, "tenant.toml: budget.max_variants: 0: must be at least 1")
	require.Len(t, strings.Split(msg, "\n"), len(le.Problems))
}

func TestSyntaxErrorKeepsPosition(t *testing.T) {
	_, err := Parse([]byte("name = \"demo\"\ntask_type = \n"), "demo")
	var le *LoadError
	require.ErrorAs(t, err, &le)
	require.Len(t, le.Problems, 1)
	require.Equal(t, 2, le.Problems[0].Line)
	require.Positive(t, le.Problems[0].Col)
	require.True(t, strings.HasPrefix(err.Error(), "tenant.toml:2:"), err.Error())
}

func TestParseAcceptsBOM(t *testing.T) {
	_, err := Parse([]byte("\ufeff"+minimal), "demo")
	require.NoError(t, err)
}

func writeTenant(t *testing.T, ws, name, src string) string {
	t.Helper()
	dir := filepath.Join(ws, TenantsDir, name)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ConfigFile), []byte(src), 0o644))
	return dir
}

func named(name string) string {
	return strings.Replace(minimal, `name = "demo"`, `name = "`+name+`"`, 1)
}

func TestLoad(t *testing.T) {
	ws := t.TempDir()
	dir := writeTenant(t, ws, "demo", minimal)
	tn, err := Load(dir)
	require.NoError(t, err)
	require.Equal(t, dir, tn.Dir)
	require.Equal(t, "demo", tn.Name())
	require.Equal(t, filepath.Join(dir, "data", "train.jsonl"), tn.TrainPath())
	require.Equal(t, filepath.Join(dir, "chain.toml"), tn.ChainPath())
	require.Equal(t, filepath.Join(dir, "prompts"), tn.PromptsDir())
	require.Equal(t, filepath.Join(dir, "runs"), tn.RunsDir())
	require.Equal(t, filepath.Join(dir, "variants"), tn.VariantsDir())
	require.Equal(t, filepath.Join(dir, "journal.jsonl"), tn.JournalPath())
}

func TestLoadErrors(t *testing.T) {
	ws := t.TempDir()
	_, err := Load(filepath.Join(ws, "nothing"))
	require.ErrorIs(t, err, fs.ErrNotExist)
	r, ok := refusal.Of(err)
	require.True(t, ok, "a missing tenant.toml is a refusal")
	require.Equal(t, refusal.CreateTenant, r.Next)
	require.NotContains(t, err.Error(), "fapo init", "the engine names no command")

	dir := writeTenant(t, ws, "bad", minimal) // name "demo" in directory "bad"
	_, err = Load(dir)
	var le *LoadError
	require.ErrorAs(t, err, &le)
	require.Equal(t, filepath.Join(dir, ConfigFile), le.File)
	require.Contains(t, err.Error(), filepath.Join(dir, ConfigFile)+": name:")
}

func TestPathConfined(t *testing.T) {
	ws := t.TempDir()
	dir := writeTenant(t, ws, "demo", minimal)
	tn, err := Load(dir)
	require.NoError(t, err)
	p, err := tn.Path("prompts/answer.md")
	require.NoError(t, err)
	require.Equal(t, filepath.Join(dir, "prompts", "answer.md"), p)

	outside := t.TempDir()
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "link")))
	for _, rel := range []string{"../other/tenant.toml", "/etc/passwd", "", "link/secret"} {
		_, err := tn.Path(rel)
		require.Error(t, err, rel)
		if rel != "" {
			require.Contains(t, err.Error(), "tenant demo")
		}
	}
}

func TestList(t *testing.T) {
	ws := t.TempDir()
	writeTenant(t, ws, "zeta", named("zeta"))
	writeTenant(t, ws, "alpha", named("alpha"))
	writeTenant(t, ws, "broken", named("broken")+"[scorer.x\n")
	require.NoError(t, os.MkdirAll(filepath.Join(ws, TenantsDir, "notatenant"), 0o755))
	writeTenant(t, ws, ".elsewhere/linked", named("linked"))
	require.NoError(t, os.Symlink(".elsewhere/linked", filepath.Join(ws, TenantsDir, "linked")))

	ts, errs := List(ws)
	require.Len(t, ts, 2)
	require.Equal(t, "alpha", ts[0].Name())
	require.Equal(t, "zeta", ts[1].Name())
	require.Len(t, errs, 2)
	require.Contains(t, errs[0].Error(), "broken")
	require.ErrorAs(t, errs[1], new(*LinkedDirError), "a tenant directory that is a link is reported, not listed")

	ts, errs = List(t.TempDir())
	require.Empty(t, ts)
	require.Empty(t, errs)
}

func TestResolve(t *testing.T) {
	ws := t.TempDir()
	dir := writeTenant(t, ws, "capitals", named("capitals"))
	for _, arg := range []string{"capitals", "tenants/capitals", "./tenants/capitals/", dir} {
		tn, err := Resolve(ws, arg)
		require.NoError(t, err, arg)
		require.Equal(t, dir, tn.Dir)
	}

	outside := t.TempDir()
	require.NoError(t, os.Symlink(outside, filepath.Join(ws, TenantsDir, "escape")))
	// A link that stays inside the workspace is refused too: it could be
	// repointed between two reads of the tenant.
	writeTenant(t, ws, ".elsewhere/alias", named("alias"))
	require.NoError(t, os.Symlink(".elsewhere/alias", filepath.Join(ws, TenantsDir, "alias")))
	tests := []struct{ arg, msg string }{
		{"", "no tenant given"},
		{"..", "not a tenant of workspace"},
		{"tenants/", "not a tenant of workspace"},
		{"tenants/capitals/prompts", "not a tenant of workspace"},
		{"tenants/../capitals", "not a tenant of workspace"},
		{"other/capitals", "not a tenant of workspace"},
		{"/etc", "not a tenant of workspace"},
		{"Capitals", "not a valid tenant name"},
		{"escape", "symlink"},
		{"missing", "not a tenant (no tenant.toml)"},
		{"alias", "is a symbolic link; fapo works only on a tenant directory itself"},
	}
	for _, tt := range tests {
		t.Run(tt.arg, func(t *testing.T) {
			_, err := Resolve(ws, tt.arg)
			require.ErrorContains(t, err, tt.msg)
		})
	}
}

func TestResolveDirWithoutTenantsDir(t *testing.T) {
	ws := t.TempDir()
	dir, err := ResolveDir(ws, "tenants/new")
	require.NoError(t, err)
	require.Equal(t, filepath.Join(ws, "tenants", "new"), dir)
}

func TestLoadErrorFormat(t *testing.T) {
	e := &LoadError{File: "t.toml", Problems: []Problem{{Key: "a", Msg: "bad"}, {Msg: "syntax", Line: 3, Col: 4}, {Msg: "x", Line: 2}}}
	require.Equal(t, "t.toml: a: bad\nt.toml:3:4: syntax\nt.toml:2: x", e.Error())
	require.Equal(t, "t.toml: invalid", (&LoadError{File: "t.toml"}).Error())
	require.True(t, errors.As(error(e), new(*LoadError)))
}

func FuzzLoadTenant(f *testing.F) {
	f.Add([]byte(minimal))
	f.Add([]byte(minimal + "[data]\ntrain = nan\n[[scorer.components]]\nname = \"x\"\n"))
	f.Add([]byte("[models.a]\n[models.b.c]\nx = 1\n[oracle]\n\"\" = \"\"\n"))
	f.Add([]byte("\ufeff[scorer.inner.inner.inner]\nkind = 3\n"))
	f.Add([]byte("a = [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data, "demo")
		if err != nil {
			var le *LoadError
			if errors.As(err, &le) {
				require.NotEmpty(t, le.Problems)
				_ = le.Error()
			}
			return
		}
		require.Equal(t, "demo", cfg.Name)
	})
}

func TestDataSplit(t *testing.T) {
	d := DataConfig{Train: 0.5, Validation: 0.3, Test: 0.2, Seed: 9, Stratify: "expected.label"}
	s := d.Split()
	require.Equal(t, []any{0.5, 0.3, 0.2, int64(9), "expected.label"}, []any{s.Train, s.Validation, s.Test, s.Seed, s.Stratify})
}

// A tenant.toml that is a symbolic link is never followed: it could name
// any file the server can read, and list_tenants would show what it holds.
func TestLoadRefusesLinkedConfig(t *testing.T) {
	ws := t.TempDir()
	outside := filepath.Join(t.TempDir(), "elsewhere.toml")
	require.NoError(t, os.WriteFile(outside, []byte(named("demo")), 0o644))
	dir := filepath.Join(ws, TenantsDir, "demo")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, ConfigFile)))
	_, err := Load(dir)
	require.ErrorIs(t, err, errSymlink)
	ts, errs := List(ws)
	require.Empty(t, ts)
	require.Len(t, errs, 1)
}

// TestLoadRefusesALinkedDirectory: Load itself refuses a tenant directory
// that is a link, so that one swapped in after ResolveDir checked the path
// is not followed.
func TestLoadRefusesALinkedDirectory(t *testing.T) {
	ws := t.TempDir()
	real := filepath.Join(ws, "elsewhere")
	require.NoError(t, os.MkdirAll(real, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(real, ConfigFile), []byte(named("linked")), 0o644))
	link := filepath.Join(ws, "tenants", "linked")
	require.NoError(t, os.MkdirAll(filepath.Dir(link), 0o755))
	require.NoError(t, os.Symlink(real, link))
	_, err := Load(link)
	var le *LinkedDirError
	require.ErrorAs(t, err, &le)
	_, err = ReadFrozen(link, nil)
	require.ErrorAs(t, err, &le)
}
