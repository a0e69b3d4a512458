package pipeline_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/pipeline"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/scoring"
)

const testChain = `
output = "answer"
[switches]
reflect = false
[[steps]]
id = "answer"
kind = "llm"
prompt = "prompts/answer.md"
[steps.params]
temperature = 0.0
max_tokens = 32
`

// loadChain starts testdata/faulty.py behind a chain declaring one step.
func loadChain(t *testing.T, spec pipeline.Spec) (*chain.Chain, *pipeline.Pipeline) {
	t.Helper()
	if spec.Command == nil && spec.URL == "" {
		abs, err := filepath.Abs("testdata/faulty.py")
		require.NoError(t, err)
		spec.Command = []string{"python3", abs}
	}
	p, err := pipeline.New(spec, pipeline.Options{Dir: t.TempDir()})
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	ch, err := chain.LoadFiles(map[string][]byte{"chain.toml": []byte(testChain), "prompts/answer.md": []byte("Say {q}.")}, chain.External(p.ChainSpec()))
	require.NoError(t, err)
	return ch, p
}

type noModels struct{}

func (noModels) Client(string) (provider.Client, string, error) {
	return nil, "", os.ErrNotExist
}

func cases(modes ...string) run.Source {
	return func(ctx context.Context, fn func(dataset.Case) error) error {
		for i, m := range modes {
			q := "case" + string(rune('a'+i))
			c := dataset.Case{CaseID: "id-" + q, TaskType: "qa", Context: map[string]any{"q": q, "mode": m}, Expected: map[string]any{"answer": strings.ToUpper(q)}}
			if err := fn(c); err != nil {
				return err
			}
		}
		return nil
	}
}

func TestRequestCarriesPromptsParamsSwitchesAndTokenNotID(t *testing.T) {
	ch, _ := loadChain(t, pipeline.Spec{Switches: []string{"reflect"}})
	tr := ch.Run(context.Background(), dataset.Case{CaseID: "secret-id-42", Context: map[string]any{"q": "x", "mode": "echo_prompts"}}, noModels{})
	require.Empty(t, tr.Error)
	var got struct {
		Prompts  map[string]string
		Params   map[string]map[string]any
		Switches map[string]any
		Token    string
	}
	require.NoError(t, json.Unmarshal([]byte(tr.Final), &got))
	require.Equal(t, "Say {q}.", got.Prompts["answer"])
	require.Equal(t, map[string]any{"temperature": 0.0, "max_tokens": 32.0}, got.Params["answer"])
	require.Equal(t, map[string]any{"reflect": false}, got.Switches)
	require.NotEmpty(t, got.Token)
	require.NotContains(t, tr.Final, "secret-id-42", "the program gets an opaque token, never the case id")
	require.Equal(t, "secret-id-42", tr.CaseID, "the trace still names the case")
}

// TestFaultsErrorTheirCaseAndTheRunCompletes: a crash, a hang, non-JSON and
// a malformed step each error their own case with a clear message; the
// other cases are scored, so nothing is lost, and the program restarts.
func TestFaultsErrorTheirCaseAndTheRunCompletes(t *testing.T) {
	ch, _ := loadChain(t, pipeline.Spec{Concurrency: 1, TimeoutSeconds: 1.5, Switches: []string{"reflect"}})
	sc, err := scoring.New(scoring.Spec{Kind: "exact_match"}, scoring.Env{})
	require.NoError(t, err)
	store := run.NewStore(t.TempDir(), false)
	r := &run.Runner{Store: store, Pipeline: ch, Models: noModels{}, Scorer: sc}
	modes := []string{"ok", "exit", "ok", "hang", "ok", "garbage", "ok", "badstep", "ok"}
	sum, err := r.Execute(context.Background(), cases(modes...), run.Options{Tenant: "t", Variant: "v0000", Split: dataset.Train, Concurrency: 1})
	require.NoError(t, err)
	require.Equal(t, len(modes), sum.Cases, "every case is recorded")
	require.Equal(t, 4, sum.Errored)
	byMode := map[string]run.CaseResult{}
	require.NoError(t, store.Cases(sum.RunID, func(cr run.CaseResult) error {
		i := int(cr.CaseID[len(cr.CaseID)-1] - 'a')
		byMode[modes[i]+string(rune('0'+i))] = cr
		return nil
	}))
	for key, want := range map[string]struct{ cause, msg string }{
		"exit1":    {"pipeline: exited", "boom: simulated crash"},
		"hang3":    {"pipeline: timeout", "did not answer within 1.5s"},
		"garbage5": {"pipeline: malformed answer", "not a JSON object"},
		"badstep7": {"pipeline: malformed answer", `kind "thinking" is not one of llm`},
	} {
		cr := byMode[key]
		require.Equal(t, want.cause, cr.Cause, key)
		require.Contains(t, cr.ExecError, want.msg, key)
		require.True(t, cr.Errored(), key)
	}
	for _, key := range []string{"ok0", "ok2", "ok4", "ok6", "ok8"} {
		cr := byMode[key]
		require.False(t, cr.Errored(), key)
		require.Equal(t, 100.0, cr.Score, "%s: the restarted program answers the next case", key)
		require.Len(t, cr.Trace.Steps, 1)
		require.Equal(t, "llm", cr.Trace.Steps[0].Kind)
	}
}

func TestStructuralChangesOnlyFlipDeclaredSwitches(t *testing.T) {
	parent := map[string][]byte{"chain.toml": []byte(testChain), "prompts/answer.md": []byte("x")}
	flip := map[string][]byte{"chain.toml": []byte(strings.Replace(testChain, "reflect = false", "reflect = true", 1)), "prompts/answer.md": []byte("x")}
	addStep := map[string][]byte{"chain.toml": []byte(testChain + "\n[[steps]]\nid = \"more\"\nkind = \"other\"\n"), "prompts/answer.md": []byte("x")}
	require.NoError(t, pipeline.CheckStructural(parent, flip, pipeline.Spec{Switches: []string{"reflect"}}))
	err := pipeline.CheckStructural(parent, flip, pipeline.Spec{})
	require.ErrorContains(t, err, "declares no structural switches")
	err = pipeline.CheckStructural(parent, addStep, pipeline.Spec{Switches: []string{"reflect"}})
	require.ErrorContains(t, err, "changes its steps")
	require.ErrorContains(t, err, "only change the switches it declares")
}

func TestOverrideNeedsTheProgramsConsent(t *testing.T) {
	ch, _ := loadChain(t, pipeline.Spec{Switches: []string{"reflect"}})
	c := dataset.Case{CaseID: "a", Context: map[string]any{"q": "x", "mode": "echo_prompts"}}
	tr := ch.RunWithOverrides(context.Background(), c, noModels{}, map[string]chain.StepOverride{"answer": {Output: "gold"}})
	require.Contains(t, tr.Error, "does not accept step overrides")

	ch, _ = loadChain(t, pipeline.Spec{Switches: []string{"reflect"}, StepOverrides: true})
	tr = ch.RunWithOverrides(context.Background(), c, noModels{}, map[string]chain.StepOverride{"answer": {Output: "gold"}})
	require.Empty(t, tr.Error)
	var got struct{ Override map[string]any }
	require.NoError(t, json.Unmarshal([]byte(tr.Final), &got))
	require.Equal(t, map[string]any{"step": "answer", "output": "gold"}, got.Override)
}

func TestCloseStopsTheProgram(t *testing.T) {
	ch, p := loadChain(t, pipeline.Spec{Switches: []string{"reflect"}})
	tr := ch.Run(context.Background(), dataset.Case{CaseID: "a", Context: map[string]any{"q": "x"}}, noModels{})
	require.Empty(t, tr.Error)
	done := make(chan error)
	go func() { done <- p.Close() }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return")
	}
}

// TestHeldOutStderrNeverReachesATrainCase: a program that logs its input
// to stderr during a held-out case, then hangs on a train case: the train
// case's error (which the agent reads) never names it: the process that
// served held-out content is not the one serving the train case.
func TestHeldOutStderrNeverReachesATrainCase(t *testing.T) {
	ch, _ := loadChain(t, pipeline.Spec{Concurrency: 1, TimeoutSeconds: 1, Switches: []string{"reflect"}})
	heldOut := provider.WithScope(context.Background(), provider.ScopeHeldOut)
	tr := ch.Run(heldOut, dataset.Case{CaseID: "h1", Context: map[string]any{"q": "x", "mode": "leak", "secret": "HELDOUT-SECRET"}}, noModels{})
	require.Empty(t, tr.Error)
	train := provider.WithScope(context.Background(), provider.ScopeTrain)
	tr = ch.Run(train, dataset.Case{CaseID: "t1", Context: map[string]any{"q": "y", "mode": "hang"}}, noModels{})
	require.Contains(t, tr.Error, "did not answer within")
	require.NotContains(t, tr.Error, "HELDOUT-SECRET")
}

// TestDeafProgramTimesOut: a program that answered and then stopped reading
// its stdin times out on a request larger than the pipe holds, instead of
// blocking the write (and the run) for good.
func TestDeafProgramTimesOut(t *testing.T) {
	ch, _ := loadChain(t, pipeline.Spec{Concurrency: 1, TimeoutSeconds: 1, Switches: []string{"reflect"}})
	tr := ch.Run(context.Background(), dataset.Case{CaseID: "d1", Context: map[string]any{"q": "x", "mode": "deaf"}}, noModels{})
	require.Empty(t, tr.Error)
	done := make(chan *chain.Trace, 1)
	go func() {
		done <- ch.Run(context.Background(), dataset.Case{CaseID: "d2", Context: map[string]any{"q": strings.Repeat("y", 1<<20)}}, noModels{})
	}()
	select {
	case tr = <-done:
		require.Contains(t, tr.Error, "did not answer within")
	case <-time.After(20 * time.Second):
		t.Fatal("a request to a program that stopped reading blocked the run")
	}
}
