package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/fapo-dev/fapo"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/tenant"
	"github.com/fapo-dev/fapo/tenants"
)

const initUsage = `
Usage: fapo init tenants/NAME --task-type TYPE [--agent claude|codex] [--force]
       fapo init tenants/NAME --example EXAMPLE [--agent claude|codex] [--force] [--home DIR]

Scaffold a tenant: tenant.toml (every block commented, every default shown),
chain.toml (the baseline pipeline) and prompts/. A bare NAME means
tenants/NAME; the directory's name is the tenant's name (lowercase letters,
digits, '_' and '-').

Task types: qa, classification, math, claim, instruction. Each gets a scorer
and a chain suited to it: qa one answer step scored by token F1; classification
one label step with a label scorer; math a solve step and a parse step
extracting the number; claim a reasoning step and a parse step extracting
SUPPORTED / NOT_SUPPORTED; instruction one step judged by an LLM judge.

--example copies a ready-made tenant (capitals: capital-city QA; software:
software product -> category; hotpotqa-python: multi-hop QA run by its own
Python program, on fictional cases) and seals its dataset, which ships inside the
fapo binary, into the sealed store ($FAPO_HOME): data/train.jsonl is written
to the tenant, validation and test never touch the workspace.

The workspace (the directory holding tenants/) gets a .gitignore that keeps
each tenant's data/ and runs/ out of git (lines are added, none removed).
--agent claude writes the workspace's CLAUDE.md, --agent codex its AGENTS.md:
how the agent runs the optimization loop with this server.

An existing tenant (or CLAUDE.md, AGENTS.md) is never overwritten without
--force; files that already hold exactly what init would write are left alone.
`

func initCommand() command {
	return command{
		name:    "init",
		summary: "scaffold a tenant (or copy and seal an example tenant)",
		run:     runInit,
	}
}

func runInit(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet(env, "init", initUsage)
	taskType := fs.String("task-type", "", "the task type to scaffold: "+strings.Join(tenants.TaskTypes(), ", "))
	example := fs.String("example", "", "copy and seal an example tenant: "+strings.Join(tenants.Examples(), ", "))
	force := fs.Bool("force", false, "overwrite the files of an existing tenant (and re-seal an example that has runs)")
	home := fs.String("home", "", "the sealed store directory for --example (default: $FAPO_HOME, else the user data directory)")
	agent := fs.String("agent", "", "also write the workspace's instructions for this agent: claude (CLAUDE.md) or codex (AGENTS.md)")
	arg, err := parseTenantArgs(fs, args)
	if err != nil {
		return err
	}
	agentFile, agentText, err := agentInstructions(*agent)
	if err != nil {
		return err
	}
	dir := arg
	if !strings.ContainsAny(arg, `/\`) {
		dir = filepath.Join(tenant.TenantsDir, arg)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	name := filepath.Base(abs)
	if !tenant.ValidName(name) {
		return usagef("%q cannot name a tenant: the directory name is the tenant name; use lowercase letters, digits, '_' and '-', starting with a letter or digit", name)
	}

	var files map[string][]byte
	var source []byte
	switch {
	case *example != "":
		files, source, err = exampleFiles(*example, name)
		if err != nil {
			return usagef("%v", err)
		}
		if *taskType != "" {
			if want := exampleTaskType(files); *taskType != want {
				return usagef("example %s is a %s tenant, not %s; drop --task-type or pick another example", *example, want, *taskType)
			}
		}
	case *taskType == "":
		return usagef("--task-type is required: one of %s (or --example %s)", strings.Join(tenants.TaskTypes(), ", "), strings.Join(tenants.Examples(), "|"))
	default:
		if files, err = tenants.Scaffold(name, *taskType); err != nil {
			return usagef("--task-type: %v", err)
		}
	}

	workspace, err := defaultWorkspace(abs)
	if err != nil {
		return err
	}
	if err := refuseOverwrite(abs, dir, files, *force); err != nil {
		return err
	}
	var agentPath string
	if agentFile != "" {
		agentPath = filepath.Join(workspace, agentFile)
		if err := refuseOverwrite(workspace, agentPath, map[string][]byte{agentFile: []byte(agentText)}, *force); err != nil {
			return err
		}
	}
	paths, err := writeTenantFiles(abs, files)
	if err != nil {
		return err
	}
	// The scaffold is checked the way every later command will load it, so a
	// template bug shows here and not at the first seal.
	t, err := tenant.Load(dir)
	if err != nil {
		return fmt.Errorf("the scaffolded tenant does not load (a bug in fapo, please report it):\n%w", err)
	}
	fmt.Fprintf(env.stdout, "created tenant %s in %s:\n", name, dir)
	for _, p := range paths {
		fmt.Fprintf(env.stdout, "  %s\n", filepath.Join(dir, filepath.FromSlash(p)))
	}
	if ignore, err := ensureGitignore(workspace, abs); err != nil {
		return fmt.Errorf("tenant files written, but %w", err)
	} else if ignore != "" {
		fmt.Fprintf(env.stdout, "  %s (%s)\n", filepath.Join(workspace, ".gitignore"), ignore)
	}
	if agentPath != "" {
		if err := os.WriteFile(agentPath, []byte(agentText), 0o644); err != nil {
			return fmt.Errorf("tenant files written, but not %s: %w", agentFile, err)
		}
		fmt.Fprintf(env.stdout, "  %s (the agent's instructions for this workspace)\n", agentPath)
	}
	if source == nil {
		printScaffoldNextSteps(env, dir, t)
		return nil
	}

	store, err := openStore(env, *home)
	if err != nil {
		return fmt.Errorf("tenant files written, but the dataset is not sealed: %w\nFix that, then run: fapo init %s --example %s --force", err, dir, *example)
	}
	if *force {
		if err := recordSealForce(env, store, abs, append([]string{"init"}, args...)); err != nil {
			return err
		}
	}
	t, m, err := sealEmbedded(ctx, env, store, abs, *example, source, *force)
	if err != nil {
		return fmt.Errorf("tenant files written, but the dataset is not sealed: %w\nFix that, then run: fapo init %s --example %s --force", err, dir, *example)
	}
	fmt.Fprintln(env.stdout)
	printSealSummary(ctx, env, t, store, m)
	fmt.Fprintf(env.stdout, `
Next steps:
  export %s=...    # the key of [model] in %s%s
  fapo doctor %s               # checks the tenant and the model, scans the workspace for leaks
  fapo eval --tenant %s --split train   # the baseline
  fapo serve --workspace .     # then ask your agent: optimize tenant %s until %s >= %g
`, apiKeyEnv(t), filepath.Join(dir, tenant.ConfigFile), localHint(t), dir, name, name, t.Config.Target.Metric, t.Config.Target.Min)
	return nil
}

// nameLine is the name key of an example's tenant.toml, rewritten when the
// example is copied under another directory name. Only the first match is
// the tenant's name: later ones belong to tables such as [model].
var nameLine = regexp.MustCompile(`(?m)^name = "[^"]*"`)

func exampleFiles(example, name string) (map[string][]byte, []byte, error) {
	fsys, source, err := tenants.Example(example)
	if err != nil {
		return nil, nil, err
	}
	files := map[string][]byte{}
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, p)
		files[p] = b
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	cfg := files[tenant.ConfigFile]
	if loc := nameLine.FindIndex(cfg); loc != nil {
		cfg = append(append(append([]byte{}, cfg[:loc[0]]...), fmt.Sprintf("name = %q", name)...), cfg[loc[1]:]...)
	}
	files[tenant.ConfigFile] = cfg
	return files, source, nil
}

var taskTypeLine = regexp.MustCompile(`(?m)^task_type = "([^"]*)"`)

func exampleTaskType(files map[string][]byte) string {
	if m := taskTypeLine.FindSubmatch(files[tenant.ConfigFile]); m != nil {
		return string(m[1])
	}
	return ""
}

// refuseOverwrite stops init from replacing a tenant's files unless forced:
// tenant.toml and the baseline chain are the user's work, and a tenant with
// variants was optimized against them.
func refuseOverwrite(abs, dir string, files map[string][]byte, force bool) error {
	if info, err := os.Stat(abs); err == nil && !info.IsDir() {
		return fmt.Errorf("%s is a file, not a directory; choose another tenant directory", dir)
	} else if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if force {
		return nil
	}
	var existing []string
	for p, want := range files {
		full := filepath.Join(abs, filepath.FromSlash(p))
		if _, err := os.Lstat(full); err != nil {
			continue
		}
		// A file that already holds what init would write is no one's lost
		// work: running the same init twice (or in fapo's own checkout,
		// whose example tenants are these files) needs no --force.
		if got, err := os.ReadFile(full); err == nil && bytes.Equal(got, want) {
			continue
		}
		existing = append(existing, p)
	}
	if len(existing) == 0 {
		return nil
	}
	sort.Strings(existing)
	what := "a tenant"
	if len(files) == 1 {
		what = "different content"
	}
	return fmt.Errorf("%s already holds %s (%s); pass --force to overwrite these files, or choose another directory", dir, what, strings.Join(existing, ", "))
}

// writeTenantFiles writes files under abs and returns their paths, sorted.
func writeTenantFiles(abs string, files map[string][]byte) ([]string, error) {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		full := filepath.Join(abs, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return nil, fmt.Errorf("create tenant: %w", err)
		}
		if err := os.WriteFile(full, files[p], 0o644); err != nil {
			return nil, fmt.Errorf("create tenant: %w", err)
		}
	}
	return paths, nil
}

// sealEmbedded seals an example's embedded dataset. The source goes to a
// private temporary file outside the workspace (the seal reads a path) and is
// removed right after: a copy left in the workspace would leak every
// held-out case to the agent. The manifest names the example, not the
// temporary file.
func sealEmbedded(ctx context.Context, env *cliEnv, store *dataset.Store, dir, example string, source []byte, force bool) (*tenant.Tenant, *dataset.Manifest, error) {
	tmp, err := writePrivateTemp("fapo-example-"+example+"-*.jsonl", func(w io.Writer) error {
		_, err := w.Write(source)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	defer func() { _ = os.Remove(tmp) }()
	sum := sha256.Sum256(source)
	return sealWithProgress(ctx, env, store, dir, "init --example", dataset.SealRequest{Source: tmp, Force: force,
		Origin: &dataset.Origin{Path: "example " + example + " (embedded in fapo)", SHA256: hex.EncodeToString(sum[:]), Format: "example"}})
}

// writePrivateTemp writes a temporary file readable only by this user,
// outside the workspace (it holds held-out cases until sealed), and returns
// its path; the caller removes it.
func writePrivateTemp(pattern string, write func(io.Writer) error) (string, error) {
	f, err := os.CreateTemp("", pattern)
	if err != nil {
		return "", err
	}
	err = f.Chmod(0o600)
	if err == nil {
		err = write(f)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

func apiKeyEnv(t *tenant.Tenant) string {
	if t.Config.Model.APIKeyEnv != "" {
		return t.Config.Model.APIKeyEnv
	}
	return "OPENAI_API_KEY"
}

func printScaffoldNextSteps(env *cliEnv, dir string, t *tenant.Tenant) {
	fmt.Fprintf(env.stdout, `
Next steps:
  1. Edit %s: the model, the scorer, the target; then the prompts in %s.
  2. Seal your dataset (JSONL, one case per line, task_type %q):
       {"case_id": "...", "task_type": %q, "context": {...}, "expected": {...}}
     Keep the source file outside the workspace; then run
       fapo seal %s --source /path/to/cases.jsonl
  3. fapo doctor %s
  4. fapo serve --workspace .     # and register it in Claude Code or Codex
`, filepath.Join(dir, tenant.ConfigFile), filepath.Join(dir, tenant.PromptsDir), t.Config.TaskType, t.Config.TaskType, dir, dir)
}

// localHint says how to use a local server instead, when the tenant's model
// block offers the override.
func localHint(t *tenant.Tenant) string {
	m := t.Config.Model
	if m.BaseURLEnv == "" {
		return ""
	}
	hint := "\n  # or a local server: export " + m.BaseURLEnv + "=http://localhost:11434/v1"
	if m.NameEnv != "" {
		hint += " " + m.NameEnv + "=llama3.2"
	}
	return hint + "   (Ollama; see README)"
}

// agentInstructions names the file --agent writes and its text.
func agentInstructions(agent string) (string, string, error) {
	switch agent {
	case "":
		return "", "", nil
	case "claude":
		return "CLAUDE.md", fapo.ClaudeMD, nil
	case "codex":
		return "AGENTS.md", fapo.AgentsMD, nil
	}
	return "", "", usagef("--agent %q: use claude (writes CLAUDE.md) or codex (writes AGENTS.md)", agent)
}

// ensureGitignore adds to the workspace's .gitignore the lines that keep
// the tenant's data/ and runs/ out of git: the train split and the runs'
// traces are derived from the dataset, are large, and are regenerated by
// fapo seal and fapo eval. Existing lines stay. It returns what it did, or
// "" when nothing was needed (or the tenant is outside the workspace).
func ensureGitignore(workspace, tenantDir string) (string, error) {
	rel, err := filepath.Rel(workspace, tenantDir)
	if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
		return "", nil
	}
	rel = filepath.ToSlash(rel)
	if path.Dir(rel) == tenant.TenantsDir {
		rel = tenant.TenantsDir + "/*" // one pair of lines for every tenant
	}
	want := []string{"/" + rel + "/data/", "/" + rel + "/" + tenant.RunsDir + "/"}
	p := filepath.Join(workspace, ".gitignore")
	old, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	have := map[string]bool{}
	for _, l := range strings.Split(string(old), "\n") {
		have[strings.TrimSpace(l)] = true
	}
	var add []string
	for _, l := range want {
		if !have[l] {
			add = append(add, l)
		}
	}
	if len(add) == 0 {
		return "", nil
	}
	text := string(old)
	if text != "" && !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	text += "# fapo: train splits and run traces, regenerated by fapo seal and fapo eval\n" + strings.Join(add, "\n") + "\n"
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		return "", fmt.Errorf("write %s: %w", p, err)
	}
	verb := "created"
	if old != nil {
		verb = "updated"
	}
	return verb + ": ignores " + strings.Join(add, " "), nil
}
