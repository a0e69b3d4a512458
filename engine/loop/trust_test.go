package loop_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
)

// validationSession starts a session, evaluates the baseline on train and
// on validation, and returns the train run id and the held-out run ids
// the journal names.
func validationSession(t *testing.T, f *looptest.Fixture, w *loop.Workspace) (string, []string) {
	t.Helper()
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	te, err := w.EvaluateTrain(ctx, loop.RunRequest{Tenant: tenantName})
	require.NoError(t, err)
	_, err = w.EvaluateValidation(ctx, loop.RunRequest{Tenant: tenantName})
	require.NoError(t, err)
	held := f.HeldOutRuns(t)
	require.NotEmpty(t, held, "the journal names the validation run")
	for _, id := range held {
		require.DirExists(t, f.HeldOutRunDir(id))
	}
	return te.Summary.RunID, held
}

// TestOnlyRecordedTrainRunsAreRead: inspect_cases and attribute read only
// train runs the server recorded. A held-out run id taken from the
// journal, the same id linked from runs/ into the sealed store, a run
// directory planted by copying a real one, and an unknown id all get the
// same refusal, which names no held-out case.
func TestOnlyRecordedTrainRunsAreRead(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	ctx := context.Background()
	trainRun, held := validationSession(t, f, w)

	linked := held[0]
	f.PlantRunLink(t, linked)
	planted := f.PlantRunCopy(t, trainRun)

	for _, tc := range []struct{ name, run string }{
		{"held-out run linked into runs/", linked},
		{"held-out run id from the journal", held[len(held)-1]},
		{"planted copy of a train run", planted},
		{"unknown run", "r20991231T000000Z-000000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := fmt.Sprintf("run %s is not a train run of tenant %s recorded by this server: evaluate on train for a run id", tc.run, tenantName)
			page, err := w.InspectCases(ctx, loop.InspectRequest{Tenant: tenantName, Run: tc.run, Limit: 20})
			require.EqualError(t, err, want)
			require.Nil(t, page)
			att, err := w.Attribute(ctx, tenantName, tc.run, false)
			require.EqualError(t, err, want)
			require.Nil(t, att)
			require.Empty(t, f.LeakedMarkers(err.Error()))
		})
	}

	// The server's own train run still reads, and shows train cases only.
	page, err := w.InspectCases(ctx, loop.InspectRequest{Tenant: tenantName, Run: trainRun, Limit: 20})
	require.NoError(t, err)
	b, _ := json.Marshal(page)
	require.Empty(t, f.LeakedMarkers(string(b)))
}

// TestLinkInsideARecordedTrainRunRefused: a recorded train run whose
// cases.jsonl the agent replaced with a link to a held-out run's log is
// refused with a message naming the link, and no held-out id comes back.
func TestLinkInsideARecordedTrainRunRefused(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	ctx := context.Background()
	trainRun, held := validationSession(t, f, w)
	cases := filepath.Join(f.TenantDir(), "runs", trainRun, "cases.jsonl")
	require.NoError(t, os.Remove(cases))
	require.NoError(t, os.Symlink(filepath.Join(f.HeldOutRunDir(held[0]), "cases.jsonl"), cases))

	_, err := w.InspectCases(ctx, loop.InspectRequest{Tenant: tenantName, Run: trainRun})
	require.ErrorContains(t, err, cases+" is a symbolic link")
	require.ErrorContains(t, err, "remove it")
	_, err = w.Attribute(ctx, tenantName, trainRun, false)
	require.ErrorContains(t, err, "is a symbolic link")
	require.Empty(t, f.LeakedMarkers(err.Error()))

	// A link in place of the whole runs/ directory is refused too.
	runs := filepath.Join(f.TenantDir(), "runs")
	require.NoError(t, os.Rename(runs, runs+".moved"))
	require.NoError(t, os.Symlink(filepath.Dir(f.HeldOutRunDir(held[0])), runs))
	_, err = w.InspectCases(ctx, loop.InspectRequest{Tenant: tenantName, Run: trainRun})
	require.ErrorContains(t, err, runs+" is a symbolic link")
}

// TestTrainDataLinkRefused: data/train.jsonl replaced by a link, whether
// it leads out of the tenant or stays inside it, is never read: evaluate
// and run_oracle refuse, naming the path, and no model is called.
func TestTrainDataLinkRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		target func(tenantDir string) string
	}{
		{"link out of the workspace", func(string) string { return filepath.Join(t.TempDir(), "train.jsonl") }},
		{"link inside the tenant", func(dir string) string { return filepath.Join(dir, "prompts", "copy.jsonl") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := looptest.New(t, nil)
			w := open(t, f)
			ctx := context.Background()
			_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
			require.NoError(t, err)
			train := filepath.Join(f.TenantDir(), "data", "train.jsonl")
			elsewhere := tc.target(f.TenantDir())
			require.NoError(t, os.Rename(train, elsewhere))
			require.NoError(t, os.Symlink(elsewhere, train))
			before := f.LLM.Count()
			_, err = w.EvaluateTrain(ctx, loop.RunRequest{Tenant: tenantName})
			// The pin check (dataset/tenant pin) refuses first; reading
			// through an os.Root that refuses links stands behind it for a
			// link planted after that check.
			require.ErrorContains(t, err, "data/train.jsonl")
			require.ErrorContains(t, err, "symbolic link")
			_, err = w.RunOracle(ctx, loop.OracleRequest{Tenant: tenantName, Step: "answer"})
			require.Error(t, err)
			require.Equal(t, before, f.LLM.Count(), "nothing ran on linked data")
		})
	}
}

// TestSymlinkedPromptInVariantRefused: a prompt file of a variant replaced
// by a link to a file with the very same bytes (so its hash matches) is
// still refused: no variant contains a link.
func TestSymlinkedPromptInVariantRefused(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	_, err = w.GetVariant(tenantName, "v0000")
	require.NoError(t, err)
	prompt := filepath.Join(f.TenantDir(), "variants", "v0000", "prompts", "answer.md")
	b, err := os.ReadFile(prompt)
	require.NoError(t, err)
	same := filepath.Join(t.TempDir(), "answer.md")
	require.NoError(t, os.WriteFile(same, b, 0o644))
	require.NoError(t, os.Chmod(filepath.Dir(prompt), 0o755))
	require.NoError(t, os.Remove(prompt))
	require.NoError(t, os.Symlink(same, prompt))
	_, err = w.EvaluateTrain(ctx, loop.RunRequest{Tenant: tenantName, Limit: 2})
	require.ErrorContains(t, err, "prompts/answer.md is a symlink")
	require.ErrorContains(t, err, "remove it")
}

// TestSealedStoreHoldsNoHeldOutTextOrIDs: after a session that evaluated
// on validation and compared, no file under $FAPO_HOME holds a held-out
// canary or a held-out case id in plaintext; held-out runs are 0600 in
// 0700 directories.
func TestSealedStoreHoldsNoHeldOutTextOrIDs(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	ctx := context.Background()
	validationSession(t, f, w)
	prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Level: "prompt", Rationale: "bare city",
		TargetCluster: "format @ answer", Prompts: map[string]string{"answer": betterPrompt}})
	require.NoError(t, err)
	rev, err := w.Review(ctx, tenantName, prop.Variant)
	require.NoError(t, err)
	require.True(t, rev.Verdict.Pass)
	_, err = w.Compare(ctx, tenantName, prop.Variant, nil)
	require.NoError(t, err)
	require.NoError(t, w.Close())

	scanned := 0
	require.NoError(t, filepath.WalkDir(f.Home, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		// The sealed splits are AES-GCM ciphertext by construction.
		if strings.HasSuffix(p, ".jsonl.enc") {
			return nil
		}
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		scanned++
		require.Empty(t, f.LeakedMarkers(string(b)), "%s holds held-out content in plaintext", p)
		if strings.Contains(p, filepath.Join("tenants", tenantName, "runs")) {
			fi, err := d.Info()
			require.NoError(t, err)
			require.Equal(t, fs.FileMode(0o600), fi.Mode().Perm(), p)
			di, err := os.Stat(filepath.Dir(p))
			require.NoError(t, err)
			require.Equal(t, fs.FileMode(0o700), di.Mode().Perm(), filepath.Dir(p))
		}
		return nil
	}))
	require.Greater(t, scanned, 3)
	for _, id := range f.HeldOutRuns(t) {
		require.FileExists(t, filepath.Join(f.HeldOutRunDir(id), "cases.jsonl"))
	}
}

// TestPlantedKeyLinkRefused: a key file of the sealed store replaced by a
// link (to bytes whoever planted it knows) is refused, never read: that key
// signs variant manifests and seals held-out runs. A key directory and key
// file others could read are narrowed to 0700 and 0600.
func TestPlantedKeyLinkRefused(t *testing.T) {
	for _, purpose := range []string{"variants", "runs", "cache"} {
		t.Run(purpose, func(t *testing.T) {
			f := looptest.New(t, nil)
			keys := filepath.Join(f.Home, "keys")
			require.NoError(t, os.MkdirAll(keys, 0o700))
			known := filepath.Join(t.TempDir(), "known.key")
			require.NoError(t, os.WriteFile(known, []byte(strings.Repeat("k", 32)), 0o600))
			require.NoError(t, os.Symlink(known, filepath.Join(keys, tenantName+"."+purpose+".key")))
			w := open(t, f)
			ctx := context.Background()
			_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
			if err == nil {
				_, err = w.EvaluateTrain(ctx, loop.RunRequest{Tenant: tenantName, Limit: 1})
			}
			if err == nil {
				_, err = w.EvaluateValidation(ctx, loop.RunRequest{Tenant: tenantName})
			}
			require.ErrorContains(t, err, "is a symbolic link")
			require.ErrorContains(t, err, purpose+".key")
		})
	}
	t.Run("permissions narrowed", func(t *testing.T) {
		f := looptest.New(t, nil)
		keys := filepath.Join(f.Home, "keys")
		require.NoError(t, os.MkdirAll(keys, 0o755))
		require.NoError(t, os.Chmod(keys, 0o755))
		p := filepath.Join(keys, tenantName+".variants.key")
		require.NoError(t, os.WriteFile(p, []byte(strings.Repeat("v", 32)), 0o644))
		require.NoError(t, os.Chmod(p, 0o644))
		w := open(t, f)
		_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
		require.NoError(t, err)
		_, err = w.EvaluateTrain(context.Background(), loop.RunRequest{Tenant: tenantName, Limit: 1})
		require.NoError(t, err)
		fi, err := os.Stat(keys)
		require.NoError(t, err)
		require.Equal(t, fs.FileMode(0o700), fi.Mode().Perm())
		es, err := os.ReadDir(keys)
		require.NoError(t, err)
		require.NotEmpty(t, es)
		for _, e := range es {
			fi, err := os.Lstat(filepath.Join(keys, e.Name()))
			require.NoError(t, err)
			require.True(t, fi.Mode().IsRegular(), e.Name())
			require.Equal(t, fs.FileMode(0o600), fi.Mode().Perm(), e.Name())
		}
	})
}

// TestTrainSwappedAfterPinCheckNeverRuns: data/train.jsonl is swapped for a
// tampered copy after the pin check has hashed it and before the run reads
// its cases (when the evaluation first builds its models, which reads the
// tenant's base_url_env). The run must use the bytes that matched the pin, or
// refuse: the model never sees a tampered case. Both ways a split is held
// (in memory, spilled to the sealed store) are covered.
func TestTrainSwappedAfterPinCheckNeverRuns(t *testing.T) {
	for _, tc := range []struct {
		name  string
		limit int64
	}{{"held in memory", 0}, {"spilled to the sealed store", 64}} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.limit > 0 {
				loop.SetTrainMemLimit(t, tc.limit)
			}
			f := looptest.New(t, nil) // its [model] names base_url_env and name_env
			train := filepath.Join(f.TenantDir(), "data", "train.jsonl")
			orig, err := os.ReadFile(train)
			require.NoError(t, err)
			tampered := strings.ReplaceAll(string(orig), "(ref MARK-", "(ref CANARY-SWAP-")
			require.NotEqual(t, string(orig), tampered)
			var armed, swapped atomic.Bool
			w, err := loop.Open(f.Dir, loop.Options{Home: f.Home, Getenv: func(string) string {
				if armed.Load() && !swapped.Swap(true) {
					stage := train + ".stage"
					require.NoError(t, os.WriteFile(stage, []byte(tampered), 0o644))
					require.NoError(t, os.Rename(stage, train))
				}
				return ""
			}})
			require.NoError(t, err)
			t.Cleanup(func() { w.Close() })
			_, err = w.StartSession(loop.StartRequest{Tenant: tenantName})
			require.NoError(t, err)
			armed.Store(true)
			te, err := w.EvaluateTrain(context.Background(), loop.RunRequest{Tenant: tenantName})
			require.True(t, swapped.Load(), "the file was swapped during the evaluation")
			require.NoError(t, err, "the run used the verified bytes")
			require.Positive(t, te.Summary.Cases)
			for _, r := range f.LLM.Requests() {
				require.NotContains(t, string(r.Body), "CANARY-SWAP", "the model received a case of the swapped file")
			}
			// The next operation sees the swapped file at its pin check.
			_, err = w.EvaluateTrain(context.Background(), loop.RunRequest{Tenant: tenantName})
			require.ErrorContains(t, err, "data/train.jsonl changed since it was sealed")
		})
	}
}

// retrievalChain makes the fixture's baseline chain search corpus before
// answering (v0000 is taken from it at first use, after the seal).
func retrievalChain(t *testing.T, f *looptest.Fixture, corpus string) {
	t.Helper()
	dir := f.TenantDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "chain.toml"), []byte(`output = "answer"

[[steps]]
id = "find"
kind = "retrieve"
query = "{{.context.question}}"
corpus = "`+corpus+`"
k = 1

[[steps]]
id = "answer"
kind = "llm"
prompt = "prompts/answer.md"
`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prompts", "answer.md"), []byte("{{.steps.find.output}}\n{{.context.question}}\n"), 0o644))
}

const honestCorpus = `{"id": "1", "title": "Capitals", "text": "What is the capital of a country: the city where its government sits."}
{"id": "2", "title": "Fruit", "text": "Bananas are yellow."}
`

// TestCorpusSwappedAfterPinCheckNeverSearched: a retrieve step's corpus is
// a pinned file, searched from the bytes the pin check verified. The corpus
// swapped after the check (when the evaluation builds its models) is never
// searched, and a corpus the operator never pinned (a file the agent wrote
// into the tenant) is refused before anything runs.
func TestCorpusSwappedAfterPinCheckNeverSearched(t *testing.T) {
	t.Run("swapped after the check", func(t *testing.T) {
		f := looptest.New(t, nil)
		corpus := filepath.Join(f.TenantDir(), "corpus", "facts.jsonl")
		require.NoError(t, os.MkdirAll(filepath.Dir(corpus), 0o755))
		require.NoError(t, os.WriteFile(corpus, []byte(honestCorpus), 0o644))
		retrievalChain(t, f, "corpus/facts.jsonl")
		var armed, swapped atomic.Bool
		w, err := loop.Open(f.Dir, loop.Options{Home: f.Home, Getenv: func(string) string {
			if armed.Load() && !swapped.Swap(true) {
				tampered := strings.ReplaceAll(honestCorpus, "the city where", "CANARY-CORPUS the city where")
				require.NoError(t, os.WriteFile(corpus+".stage", []byte(tampered), 0o644))
				require.NoError(t, os.Rename(corpus+".stage", corpus))
			}
			return ""
		}})
		require.NoError(t, err)
		t.Cleanup(func() { w.Close() })
		_, err = w.StartSession(loop.StartRequest{Tenant: tenantName})
		require.ErrorContains(t, err, "corpus/facts.jsonl appeared (a frozen file", "a corpus under corpus/ is a frozen file")
		pin(t, w)
		_, err = w.StartSession(loop.StartRequest{Tenant: tenantName})
		require.NoError(t, err)
		armed.Store(true)
		te, err := w.EvaluateTrain(context.Background(), loop.RunRequest{Tenant: tenantName, Limit: 3})
		require.NoError(t, err)
		require.True(t, swapped.Load(), "the corpus was swapped during the evaluation")
		require.Equal(t, 3, te.Summary.Cases)
		saw := false
		for _, r := range f.LLM.Requests() {
			require.NotContains(t, string(r.Body), "CANARY-CORPUS", "the model received a passage of the swapped corpus")
			saw = saw || strings.Contains(string(r.Body), "the city where its government sits")
		}
		require.True(t, saw, "the model received the pinned corpus's passage")
	})
	t.Run("a corpus nobody pinned", func(t *testing.T) {
		f := looptest.New(t, nil)
		require.NoError(t, os.WriteFile(filepath.Join(f.TenantDir(), "planted.jsonl"), []byte(honestCorpus), 0o644))
		retrievalChain(t, f, "planted.jsonl")
		w := open(t, f)
		_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
		require.NoError(t, err)
		_, err = w.EvaluateTrain(context.Background(), loop.RunRequest{Tenant: tenantName, Limit: 1})
		require.ErrorContains(t, err, "corpus file planted.jsonl does not exist in the pinned files of tenant capitals")
		require.Empty(t, f.LLM.Requests(), "nothing ran")
	})
}

// TestEditedTrainLogIsRefused: a train run's case log decides attribution,
// and with it which levels of change open; the log sits in the workspace,
// so one edited after the run (every case failing at a made-up retrieve
// step, to open the structural level) is refused wherever it is read.
func TestEditedTrainLogIsRefused(t *testing.T) {
	f := looptest.New(t, nil)
	w := open(t, f)
	ctx := context.Background()
	_, err := w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	te, err := w.EvaluateTrain(ctx, loop.RunRequest{Tenant: tenantName})
	require.NoError(t, err)
	runID := te.Summary.RunID
	before, err := w.SessionStatus(tenantName)
	require.NoError(t, err)

	logPath := filepath.Join(f.TenantDir(), "runs", runID, "cases.jsonl")
	raw, err := os.ReadFile(logPath)
	require.NoError(t, err)
	var forged []string
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var cr map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &cr))
		cr["composite_score"] = 0
		cr["trace"] = map[string]any{"case_id": cr["case_id"], "final": "",
			"steps": []any{map[string]any{"step_id": "fetch", "kind": "retrieve", "output": ""}}}
		b, err := json.Marshal(cr)
		require.NoError(t, err)
		forged = append(forged, string(b))
	}
	require.NoError(t, os.WriteFile(logPath, []byte(strings.Join(forged, "\n")+"\n"), 0o644))

	want := fmt.Sprintf("train run %s: its cases.jsonl is not the log the run wrote (it was edited or replaced): evaluate on train again for a fresh run", runID)
	_, err = w.Attribute(ctx, tenantName, runID, false)
	require.EqualError(t, err, want)
	_, err = w.InspectCases(ctx, loop.InspectRequest{Tenant: tenantName, Run: runID, Limit: 5})
	require.EqualError(t, err, want)
	after, err := w.SessionStatus(tenantName)
	require.NoError(t, err)
	require.Equal(t, before.OpenLevels, after.OpenLevels, "no level opened on a forged log")
}
