package tenants

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/pipeline"
	"github.com/fapo-dev/fapo/engine/scoring"
	"github.com/fapo-dev/fapo/engine/tenant"
)

// writeFS copies fsys into dir.
func writeFS(t *testing.T, fsys fs.FS, dir string) {
	t.Helper()
	require.NoError(t, fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dir, p), 0o755)
		}
		b, err := fs.ReadFile(fsys, p)
		require.NoError(t, err)
		return os.WriteFile(filepath.Join(dir, p), b, 0o644)
	}))
}

// loadExample writes an example tenant to a temporary directory and returns
// it loaded, with its source cases.
func loadExample(t *testing.T, name string) (*tenant.Tenant, []dataset.Case) {
	t.Helper()
	fsys, source, err := Example(name)
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), name)
	writeFS(t, fsys, dir)
	tn, err := tenant.Load(dir)
	require.NoError(t, err)
	src := filepath.Join(t.TempDir(), "cases.jsonl")
	require.NoError(t, os.WriteFile(src, source, 0o600))
	cases, err := dataset.ReadAll(src)
	require.NoError(t, err)
	return tn, cases
}

func TestExamples(t *testing.T) {
	require.Equal(t, []string{"capitals", "hotpotqa-python", "software"}, Examples())
	for _, name := range Examples() {
		t.Run(name, func(t *testing.T) {
			tn, cases := loadExample(t, name)
			dir := tn.Dir
			require.FileExists(t, tn.ChainPath())
			require.DirExists(t, tn.PromptsDir())
			require.NoFileExists(t, filepath.Join(dir, name+".cases.jsonl"), "the source must not sit in the tenant")
			var opts []chain.Option
			if spec := tn.Config.Pipeline; spec != nil {
				p, err := pipeline.New(*spec, pipeline.Options{Dir: dir})
				require.NoError(t, err)
				t.Cleanup(func() { p.Close() })
				opts = append(opts, chain.External(p.ChainSpec()))
			}
			_, err := chain.Load(dir, opts...)
			require.NoError(t, err)
			require.GreaterOrEqual(t, len(cases), 75)

			sc, err := scoring.New(tn.Config.Scorer, scoring.Env{Dir: dir})
			require.NoError(t, err)
			strata := map[string]int{}
			for _, c := range cases {
				require.Equal(t, tn.Config.TaskType, c.TaskType, c.CaseID)
				require.NoError(t, sc.Validate(c), c.CaseID)
				if s := tn.Config.Data.Stratify; s != "" {
					v, ok := c.Lookup(s)
					require.True(t, ok, "%s lacks %s", c.CaseID, s)
					strata[v.(string)]++
				}
			}
			// HotpotQA-style questions are of two types (bridge and
			// comparison); the other examples' strata are many.
			want := 5
			if tn.Config.Data.Stratify == "metadata.type" {
				want = 2
			}
			require.GreaterOrEqual(t, len(strata), want, "stratification needs several strata")
		})
	}
}

// TestExampleScorersAcceptGold scores the gold answer of every case as if it
// were the pipeline's output: an example whose own gold does not get full
// marks could never reach its target.
func TestExampleScorersAcceptGold(t *testing.T) {
	for _, name := range Examples() {
		tn, cases := loadExample(t, name)
		sc, err := scoring.New(tn.Config.Scorer, scoring.Env{Dir: tn.Dir})
		require.NoError(t, err)
		for _, c := range cases {
			gold, _ := c.Lookup("expected.answer")
			if gold == nil {
				gold, _ = c.Lookup("expected.label")
			}
			res, err := sc.Score(context.Background(), c, scoring.Output{Final: gold.(string)})
			require.NoError(t, err, c.CaseID)
			require.Equal(t, scoring.MaxScore, res.Composite, c.CaseID)
		}
	}
}

func TestCapitalsAliases(t *testing.T) {
	_, cases := loadExample(t, "capitals")
	seen := map[string]bool{}
	for _, c := range cases {
		q := c.Context["question"].(string)
		require.True(t, strings.HasPrefix(q, "What is the capital of "), q)
		require.False(t, seen[q], "duplicate question %q", q)
		seen[q] = true
		aliases := c.Expected["aliases"].([]any)
		require.Equal(t, c.Expected["answer"], aliases[0], "the canonical answer comes first: %s", c.CaseID)
	}
}

func TestExampleUnknown(t *testing.T) {
	_, _, err := Example("capitol")
	require.ErrorContains(t, err, `no example tenant "capitol"; examples: capitals, hotpotqa-python, software`)
}

func TestScaffoldEveryTaskTypeLoads(t *testing.T) {
	require.Equal(t, []string{"claim", "classification", "instruction", "math", "qa"}, TaskTypes())
	for _, tt := range TaskTypes() {
		t.Run(tt, func(t *testing.T) {
			files, err := Scaffold("demo", tt)
			require.NoError(t, err)
			require.Contains(t, files, "tenant.toml")
			require.Contains(t, files, "chain.toml")
			dir := filepath.Join(t.TempDir(), "demo")
			for p, b := range files {
				require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755))
				require.NoError(t, os.WriteFile(filepath.Join(dir, p), b, 0o644))
			}
			tn, err := tenant.Load(dir)
			require.NoError(t, err)
			require.Equal(t, tt, tn.Config.TaskType)
			_, err = chain.Load(dir)
			require.NoError(t, err)
		})
	}
}

func TestScaffoldUnknownTaskType(t *testing.T) {
	_, err := Scaffold("demo", "qna")
	require.ErrorContains(t, err, `no scaffold for task type "qna"; choose one of claim, classification, instruction, math, qa`)
}
