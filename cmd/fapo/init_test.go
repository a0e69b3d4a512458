package main

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/engine/tenant"
	"github.com/fapo-dev/fapo/tenants"
)

func TestInitScaffoldsEveryTaskType(t *testing.T) {
	for _, tt := range tenants.TaskTypes() {
		t.Run(tt, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "tenants", "demo")
			code, out, errOut := cliRun(t, nil, "init", dir, "--task-type", tt)
			require.Equal(t, 0, code, errOut)
			require.Contains(t, out, "created tenant demo")
			require.Contains(t, out, "fapo seal "+dir+" --source")
			tn, err := tenant.Load(dir)
			require.NoError(t, err)
			require.Equal(t, "demo", tn.Config.Name)
			require.Equal(t, tt, tn.Config.TaskType)
			require.FileExists(t, tn.ChainPath())
			require.DirExists(t, tn.PromptsDir())
			require.NoDirExists(t, filepath.Join(dir, "data"), "a scaffold has no data until it is sealed")
		})
	}
}

// TestInitDocumentsEveryAcceptanceKey: the scaffold's [acceptance] table
// has a line for each of its keys (tenant.AcceptanceConfig's toml tags),
// set or commented out, with what it does beside it on the same line.
func TestInitDocumentsEveryAcceptanceKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tenants", "demo")
	code, _, errOut := cliRun(t, nil, "init", dir, "--task-type", "qa")
	require.Equal(t, 0, code, errOut)
	b, err := os.ReadFile(filepath.Join(dir, "tenant.toml"))
	require.NoError(t, err)
	_, table, ok := strings.Cut(string(b), "\n[acceptance]\n")
	require.True(t, ok)
	table, _, _ = strings.Cut(table, "\n[") // up to the next table
	typ := reflect.TypeFor[tenant.AcceptanceConfig]()
	for i := range typ.NumField() {
		key := typ.Field(i).Tag.Get("toml")
		if typ.Field(i).Type.Kind() == reflect.Pointer {
			continue // a subtable, [acceptance.thresholdout], documented as one
		}
		line := regexp.MustCompile(`(?m)^(# )?` + key + ` = \S.*#\s*\S.*$`)
		require.Regexp(t, line, table, "[acceptance] %s has no documented line in the scaffold", key)
	}
	tn, err := tenant.Load(dir)
	require.NoError(t, err)
	require.Equal(t, 1, tn.Config.Acceptance.Repeats, "the keys set are the defaults")
	require.Zero(t, tn.Config.Acceptance.PassK)
}

func TestInitFlagsAfterOrBeforeDir(t *testing.T) {
	ws := t.TempDir()
	dir := filepath.Join(ws, "tenants", "early")
	code, _, errOut := cliRun(t, nil, "init", "--task-type", "math", dir)
	require.Equal(t, 0, code, errOut)
	_, err := tenant.Load(dir)
	require.NoError(t, err)
}

func TestInitRefusesExistingTenant(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tenants", "demo")
	code, _, errOut := cliRun(t, nil, "init", dir, "--task-type", "qa")
	require.Equal(t, 0, code, errOut)
	edited := []byte("# my edits\n")
	prompt := filepath.Join(dir, "prompts", "answer.md")
	require.NoError(t, os.WriteFile(prompt, edited, 0o644))

	code, _, errOut = cliRun(t, nil, "init", dir, "--task-type", "qa")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "already holds a tenant (prompts/answer.md); pass --force")
	got, err := os.ReadFile(prompt)
	require.NoError(t, err)
	require.Equal(t, edited, got, "a refused init must not touch the tenant")

	code, _, errOut = cliRun(t, nil, "init", dir, "--task-type", "qa", "--force")
	require.Equal(t, 0, code, errOut)
	got, err = os.ReadFile(prompt)
	require.NoError(t, err)
	require.NotEqual(t, edited, got)
}

func TestInitIntoEmptyExistingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tenants", "demo")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	code, _, errOut := cliRun(t, nil, "init", dir, "--task-type", "claim")
	require.Equal(t, 0, code, errOut)
}

func TestInitErrors(t *testing.T) {
	root := t.TempDir()
	file := filepath.Join(root, "tenants", "afile")
	require.NoError(t, os.MkdirAll(filepath.Dir(file), 0o755))
	require.NoError(t, os.WriteFile(file, nil, 0o644))
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"no dir", []string{"init", "--task-type", "qa"}, 2, "missing the tenant directory"},
		{"two dirs", []string{"init", "a/x", "a/y", "--task-type", "qa"}, 2, "want one tenant directory"},
		{"no task type", []string{"init", filepath.Join(root, "tenants", "x")}, 2, "--task-type is required"},
		{"unknown task type", []string{"init", filepath.Join(root, "tenants", "x"), "--task-type", "qna"}, 2, `no scaffold for task type "qna"`},
		{"bad name", []string{"init", filepath.Join(root, "tenants", "My Tenant"), "--task-type", "qa"}, 2, "cannot name a tenant"},
		{"unknown example", []string{"init", filepath.Join(root, "tenants", "x"), "--example", "capitol"}, 2, `no example tenant "capitol"`},
		{"example task type mismatch", []string{"init", filepath.Join(root, "tenants", "x"), "--example", "capitals", "--task-type", "math"}, 2, "example capitals is a qa tenant, not math"},
		{"dir is a file", []string{"init", file, "--task-type", "qa"}, 1, "is a file, not a directory"},
		{"unknown flag", []string{"init", filepath.Join(root, "tenants", "x"), "--tasktype", "qa"}, 2, "flag provided but not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := cliRun(t, nil, tt.args...)
			require.Equal(t, tt.code, code, errOut)
			require.Contains(t, errOut, tt.msg)
		})
	}
	require.NoDirExists(t, filepath.Join(root, "tenants", "x"), "a refused init writes nothing")
}

func TestInitHelp(t *testing.T) {
	code, out, _ := cliRun(t, nil, "init", "--help")
	require.Equal(t, 0, code)
	require.Contains(t, out, "Usage: fapo init tenants/NAME --task-type TYPE")
	require.Contains(t, out, "-example")
}

func TestInitExampleCopiesAndSeals(t *testing.T) {
	for _, ex := range tenants.Examples() {
		t.Run(ex, func(t *testing.T) {
			root := t.TempDir()
			ws := filepath.Join(root, "ws")
			home := filepath.Join(root, "home")
			dir := filepath.Join(ws, "tenants", ex)
			env := map[string]string{"FAPO_HOME": home}

			code, out, errOut := cliRun(t, env, "init", dir, "--example", ex)
			require.Equal(t, 0, code, errOut)
			require.Contains(t, out, "sealed tenant "+ex)
			require.Contains(t, out, "example "+ex+" (embedded in fapo)")
			require.Contains(t, out, "fapo doctor "+dir)

			tn, err := tenant.Load(dir)
			require.NoError(t, err)
			train, err := dataset.ReadAll(tn.TrainPath())
			require.NoError(t, err)
			m, err := dataset.OpenStore(home).Manifest(ex)
			require.NoError(t, err)
			require.Equal(t, m.Counts.Train, len(train))
			require.Positive(t, m.Counts.Validation)
			require.Positive(t, m.Counts.Test)

			// Only the train split may be in the workspace: no file there holds
			// a held-out case id, and no source file was left behind.
			_, source, err := tenants.Example(ex)
			require.NoError(t, err)
			trainIDs := map[string]bool{}
			for _, c := range train {
				trainIDs[c.CaseID] = true
			}
			var heldOut []string
			for _, line := range strings.Split(strings.TrimSpace(string(source)), "\n") {
				id := strings.SplitN(strings.SplitN(line, `"case_id": "`, 2)[1], `"`, 2)[0]
				if !trainIDs[id] {
					heldOut = append(heldOut, `"`+id+`"`)
				}
			}
			require.Len(t, heldOut, m.Counts.Validation+m.Counts.Test)
			require.NoError(t, filepath.WalkDir(ws, func(p string, d os.DirEntry, err error) error {
				require.NoError(t, err)
				if d.IsDir() {
					return nil
				}
				b, err := os.ReadFile(p)
				require.NoError(t, err)
				for _, id := range heldOut {
					require.NotContains(t, string(b), id, "%s leaks a held-out case", p)
				}
				return nil
			}))

			// A second init of the unchanged example needs no --force and
			// re-seals to the same split; once a file is edited it is refused
			// without --force, and with --force re-seals to the same split.
			code, _, errOut = cliRun(t, env, "init", dir, "--example", ex)
			require.Equal(t, 0, code, errOut)
			m1, err := dataset.OpenStore(home).Manifest(ex)
			require.NoError(t, err)
			require.Equal(t, m.TrainSHA256, m1.TrainSHA256)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "chain.toml"), []byte("# edited\n"), 0o644))
			code, _, errOut = cliRun(t, env, "init", dir, "--example", ex)
			require.Equal(t, 1, code)
			require.Contains(t, errOut, "already holds a tenant (chain.toml); pass --force")
			code, _, errOut = cliRun(t, env, "init", dir, "--example", ex, "--force")
			require.Equal(t, 0, code, errOut)
			m2, err := dataset.OpenStore(home).Manifest(ex)
			require.NoError(t, err)
			require.Equal(t, m.TrainSHA256, m2.TrainSHA256)
		})
	}
}

func TestInitExampleUnderAnotherName(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "ws", "tenants", "caps2")
	code, _, errOut := cliRun(t, map[string]string{"FAPO_HOME": filepath.Join(root, "home")}, "init", dir, "--example", "capitals", "--task-type", "qa")
	require.Equal(t, 0, code, errOut)
	tn, err := tenant.Load(dir)
	require.NoError(t, err)
	require.Equal(t, "caps2", tn.Config.Name)
	require.Equal(t, "gpt-4o-mini", tn.Config.Model.Name, "only the tenant's name is rewritten, not the model's")
}

func TestInitExampleSealFailureSaysWhatToDo(t *testing.T) {
	root := t.TempDir()
	home := filepath.Join(root, "home")
	require.NoError(t, os.WriteFile(home, nil, 0o644)) // the store path is a file
	dir := filepath.Join(root, "ws", "tenants", "software")
	code, _, errOut := cliRun(t, map[string]string{"FAPO_HOME": home}, "init", dir, "--example", "software")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "tenant files written, but the dataset is not sealed")
	require.Contains(t, errOut, "--example software --force")
}

func TestInitBareNameMeansTenantsDir(t *testing.T) {
	ws := t.TempDir()
	t.Chdir(ws)
	code, out, errOut := cliRun(t, nil, "init", "demo", "--task-type", "qa")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, filepath.Join("tenants", "demo", "tenant.toml"))
	_, err := tenant.Load(filepath.Join(ws, "tenants", "demo"))
	require.NoError(t, err)
}

// TestInitExamplePassesDoctor is the promise of --example: a tenant ready
// for a session, sealed, with nothing held out in the workspace;
// hotpotqa-python's program runs in doctor's chain check.
func TestInitExamplePassesDoctor(t *testing.T) {
	for _, ex := range []string{"capitals", "hotpotqa-python"} {
		t.Run(ex, func(t *testing.T) {
			root := t.TempDir()
			llm := fakellm.New()
			defer llm.Close()
			env := map[string]string{"FAPO_HOME": filepath.Join(root, "home"), "FAPO_BASE_URL": llm.URL()}
			dir := filepath.Join(root, "ws", "tenants", ex)
			code, _, errOut := cliRun(t, env, "init", dir, "--example", ex)
			require.Equal(t, 0, code, errOut)
			code, out, errOut := cliRun(t, env, "doctor", dir)
			require.Equal(t, 0, code, out+errOut)
			if ex == "hotpotqa-python" {
				require.Contains(t, out, "external program answered train case")
			}
		})
	}
}

// TestInitWritesGitignoreAndAgentText: init keeps data/ and runs/ out of
// git (adding to a .gitignore, never duplicating), and --agent writes the
// workspace's CLAUDE.md or AGENTS.md, which are this repository's own files.
func TestInitWritesGitignoreAndAgentText(t *testing.T) {
	repoClaude, err := os.ReadFile(filepath.Join("..", "..", "CLAUDE.md"))
	require.NoError(t, err)
	repoAgents, err := os.ReadFile(filepath.Join("..", "..", "AGENTS.md"))
	require.NoError(t, err)
	require.Equal(t, string(repoClaude), fapo.ClaudeMD)
	require.Equal(t, string(repoAgents), fapo.AgentsMD)

	ws := t.TempDir()
	t.Chdir(ws)
	require.NoError(t, os.WriteFile(".gitignore", []byte("node_modules/"), 0o644))
	code, out, errOut := cliRun(t, nil, "init", "demo", "--task-type", "qa", "--agent", "claude")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, filepath.Join(ws, ".gitignore")+" (updated: ignores /tenants/*/data/ /tenants/*/runs/)")
	require.Contains(t, out, filepath.Join(ws, "CLAUDE.md"))
	got, err := os.ReadFile(".gitignore")
	require.NoError(t, err)
	require.Equal(t, "node_modules/\n# fapo: train splits and run traces, regenerated by fapo seal and fapo eval\n/tenants/*/data/\n/tenants/*/runs/\n", string(got))
	claude, err := os.ReadFile("CLAUDE.md")
	require.NoError(t, err)
	require.Equal(t, repoClaude, claude)

	// The same init again: nothing differs, so no --force, and no line twice.
	code, out, errOut = cliRun(t, nil, "init", "demo", "--task-type", "qa", "--agent", "claude")
	require.Equal(t, 0, code, errOut)
	require.NotContains(t, out, ".gitignore")
	again, err := os.ReadFile(".gitignore")
	require.NoError(t, err)
	require.Equal(t, got, again)

	code, _, errOut = cliRun(t, nil, "init", "other", "--task-type", "math", "--agent", "codex")
	require.Equal(t, 0, code, errOut)
	agents, err := os.ReadFile("AGENTS.md")
	require.NoError(t, err)
	require.Equal(t, repoAgents, agents)

	// The operator's own CLAUDE.md is not replaced without --force, and a
	// refused init writes nothing.
	require.NoError(t, os.WriteFile("CLAUDE.md", []byte("# my notes\n"), 0o644))
	code, _, errOut = cliRun(t, nil, "init", "third", "--task-type", "qa", "--agent", "claude")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "CLAUDE.md already holds different content (CLAUDE.md); pass --force")
	require.NoDirExists(t, filepath.Join("tenants", "third"))
	code, _, errOut = cliRun(t, nil, "init", "third", "--task-type", "qa", "--agent", "cursor")
	require.Equal(t, 2, code)
	require.Contains(t, errOut, `--agent "cursor": use claude (writes CLAUDE.md) or codex (writes AGENTS.md)`)
}

// TestInitExampleInCheckout: fapo's own checkout holds the example tenants'
// files; init of the same example there needs no --force, and its dataset
// is nowhere under tenants/.
func TestInitExampleInCheckout(t *testing.T) {
	ws := t.TempDir()
	dir := filepath.Join(ws, "tenants", "capitals")
	require.NoError(t, os.CopyFS(dir, os.DirFS(filepath.Join("..", "..", "tenants", "capitals"))))
	leftovers, err := filepath.Glob(filepath.Join("..", "..", "tenants", "*.jsonl"))
	require.NoError(t, err)
	require.Empty(t, leftovers, "an example dataset inside tenants/ is a leak in any workspace that serves it")
	env := map[string]string{"FAPO_HOME": filepath.Join(t.TempDir(), "home")}
	code, out, errOut := cliRun(t, env, "init", dir, "--example", "capitals")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "sealed tenant capitals")
}
