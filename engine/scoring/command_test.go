package scoring

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
)

// pythonEnv returns the environment of the command scorer tests, which run
// the real Python scorer testdata/score.py.
func pythonEnv(t *testing.T) Env {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("SKIPPING command scorer tests: python3 is not on PATH, so testdata/score.py cannot run")
	}
	dir, err := filepath.Abs("testdata")
	require.NoError(t, err)
	return Env{Dir: dir}
}

func commandItems() []Item {
	mk := func(id, answer, output string) Item {
		c := testCase(obj{"answer": answer})
		c.CaseID = id
		if answer == "" {
			c.Expected = obj{"label": "x"}
		}
		return Item{Case: c, Output: Output{Final: output}}
	}
	items := []Item{
		mk("c1", "Paris", "paris"),
		mk("c2", "Paris", "It is Paris."),
		mk("c3", "Paris", "Lyon"),
		mk("c4", "", "anything"),
		mk("c5", "Paris", "Paris"),
	}
	items[4].Output.Trace = testTrace()
	return items
}

func TestCommandScorer(t *testing.T) {
	env := pythonEnv(t)
	for _, batch := range []bool{true, false} {
		t.Run("batch="+strconv.FormatBool(batch), func(t *testing.T) {
			pids := filepath.Join(t.TempDir(), "pids")
			t.Setenv("SCORE_PY_PIDS", pids)
			s, err := New(Spec{Kind: "command", Command: []string{"python3", "score.py"}, Batch: batch}, env)
			require.NoError(t, err)
			items := commandItems()
			if !batch {
				// Each case starts Python once; three show the mode.
				items = []Item{items[0], items[3], items[4]}
			}

			res := ScoreAll(context.Background(), s, items, 2)
			require.Len(t, res, len(items))
			want := map[string]struct {
				score  float64
				reason string
			}{"c1": {100, "exact"}, "c2": {50, "contains"}, "c3": {0, "missing"}, "c5": {100, "exact"}}
			for i, it := range items {
				w := want[it.Case.CaseID]
				if it.Case.CaseID == "c4" {
					require.ErrorContains(t, res[i].Err, "command scorer python3 score.py: result ")
					require.ErrorContains(t, res[i].Err, "(case c4): expected.answer must be a non-empty string")
					continue
				}
				require.NoError(t, res[i].Err, i)
				require.Equal(t, w.score, res[i].Result.Composite, i)
				require.Equal(t, w.reason, res[i].Result.Reason, i)
			}
			require.Equal(t, map[string]float64{"exact": 100, "contains": 100, "retrieval": 100}, res[len(res)-1].Result.Breakdown,
				"the scorer sees the step outputs")

			cases := make([]dataset.Case, len(items))
			for i, it := range items {
				cases[i] = it.Case
			}
			errs := ValidateAll(context.Background(), s, cases)
			require.Len(t, errs, len(items))
			for i, err := range errs {
				if cases[i].CaseID == "c4" {
					require.ErrorContains(t, err, "(case c4): expected.answer must be a non-empty string")
					continue
				}
				require.NoError(t, err, i)
			}
			b, err := os.ReadFile(pids)
			require.NoError(t, err)
			starts := len(strings.Fields(string(b)))
			if batch {
				require.Equal(t, 2, starts, "one process per batch: score, validate")
				require.ErrorContains(t, s.Validate(items[3].Case), "result 1 of 1 (case c4)")
			} else {
				require.Equal(t, 3+3, starts, "one process per case")
			}
		})
	}
}

func TestCommandScorerFaults(t *testing.T) {
	env := pythonEnv(t)
	items := commandItems()[:3]
	ok := `{"composite_score": 100}`
	tests := []struct {
		name string
		argv []string
		// wantErr maps item index to the error it must have; items not listed
		// must score. allErr applies to every item.
		wantErr map[int]string
		allErr  []string
	}{
		{name: "crash", argv: []string{"python3", "score.py", "--fault", "crash"}, allErr: []string{
			"command scorer python3 score.py --fault crash: exit status 1; stderr: Traceback",
			"ValueError: scorer bug: cannot grade",
		}},
		{name: "no such script", argv: []string{"python3", "nope.py"}, allErr: []string{"exit status 2", "No such file or directory"}},
		{name: "exit status", argv: []string{"sh", "reply.sh", `{"results": []}`, "3"}, allErr: []string{"exit status 3"}},
		{name: "bad json", argv: []string{"sh", "reply.sh", "graded everything"}, allErr: []string{
			`stdout is not a JSON response (invalid character 'g' looking for beginning of value); it began "graded everything"; see engine/scoring/command-protocol.md`,
		}},
		{name: "empty stdout", argv: []string{"sh", "reply.sh", ""}, allErr: []string{"stdout is not a JSON response (unexpected end of JSON input)"}},
		{name: "no results", argv: []string{"sh", "reply.sh", `{"ok": true}`}, allErr: []string{`the response has no "results" array; it began "{\"ok\": true}"`}},
		{name: "wrong count", argv: []string{"sh", "reply.sh", `{"results": [` + ok + `,` + ok + `]}`}, allErr: []string{
			"command scorer sh reply.sh", "returned 2 results for 3 items; answer one result per item, in order",
		}},
		{name: "out of range", argv: []string{"sh", "reply.sh", `{"results": [` + ok + `,` + ok + `,{"composite_score": 140}]}`}, wantErr: map[int]string{
			2: "result 3 of 3 (case c3): composite_score 140 is outside [0, 100]",
		}},
		{name: "breakdown out of range", argv: []string{"sh", "reply.sh", `{"results": [{"composite_score": 1, "score_breakdown": {"exact": -5}},` + ok + `,` + ok + `]}`}, wantErr: map[int]string{
			0: `result 1 of 3 (case c1): score_breakdown "exact" = -5 is outside [0, 100]`,
		}},
		{name: "missing score", argv: []string{"sh", "reply.sh", `{"results": [{},` + ok + `,` + ok + `]}`}, wantErr: map[int]string{
			0: `result 1 of 3 (case c1): composite_score is missing; give a number in [0, 100] or an "error"`,
		}},
		{name: "not an object", argv: []string{"sh", "reply.sh", `{"results": ["100",` + ok + `,` + ok + `]}`}, wantErr: map[int]string{
			0: "result 1 of 3 (case c1): not a result object: json: cannot unmarshal string",
		}},
		{name: "relative executable", argv: []string{"./reply.sh", `{"results": [` + ok + `,` + ok + `,` + ok + `]}`}},
		{name: "item error", argv: []string{"sh", "reply.sh", `{"results": [` + ok + `,{"error": "no gold answer"},` + ok + `]}`}, wantErr: map[int]string{
			1: "result 2 of 3 (case c2): no gold answer",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Spec{Kind: "command", Command: tt.argv, Batch: true}, env)
			require.NoError(t, err)
			res := ScoreAll(context.Background(), s, items, 1)
			require.Len(t, res, len(items))
			for i, r := range res {
				switch {
				case tt.allErr != nil:
					for _, w := range tt.allErr {
						require.ErrorContains(t, r.Err, w, i)
					}
				case tt.wantErr[i] != "":
					require.ErrorContains(t, r.Err, tt.wantErr[i], i)
				default:
					require.NoError(t, r.Err, i)
					require.Equal(t, 100.0, r.Result.Composite)
				}
			}
		})
	}
}

func TestCommandScorerNotFound(t *testing.T) {
	s, err := New(Spec{Kind: "command", Command: []string{"fapo-no-such-scorer"}, Batch: true}, Env{Dir: t.TempDir()})
	require.NoError(t, err)
	_, err = s.Score(context.Background(), testCase(obj{"answer": "x"}), Output{Final: "x"})
	require.ErrorContains(t, err, `command scorer fapo-no-such-scorer: exec: "fapo-no-such-scorer": executable file not found in $PATH; check scorer.command`)
}

func TestCommandScorerTimeoutKillsGroup(t *testing.T) {
	env := pythonEnv(t)
	childFile := filepath.Join(t.TempDir(), "child")
	t.Setenv("SCORE_PY_CHILD", childFile)
	s, err := New(Spec{Kind: "command", Command: []string{"python3", "score.py", "--fault", "hang"}, TimeoutSeconds: 5}, env)
	require.NoError(t, err)
	_, err = s.Score(context.Background(), testCase(obj{"answer": "x"}), Output{Final: "x"})
	require.ErrorContains(t, err, "command scorer python3 score.py --fault hang: timed out after 5s and was killed; make it faster or raise scorer.timeout_seconds; stderr: working...")

	b, err := os.ReadFile(childFile)
	require.NoError(t, err, "the scorer started its child before the timeout")
	// (5 s leaves Python time to start on a loaded machine; the hang is endless.)
	pid := strings.TrimSpace(string(b))
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("SKIPPING the process-group check: no /proc on this system")
	}
	// Killed processes linger as zombies until reaped; dead is either.
	require.Eventually(t, func() bool {
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			return true
		}
		_, rest, _ := strings.Cut(string(stat), ") ")
		return strings.HasPrefix(rest, "Z")
	}, 5*time.Second, 20*time.Millisecond, "the scorer's child %s survived the timeout", pid)
}

func TestCommandScorerStepAndCancel(t *testing.T) {
	env := pythonEnv(t)
	s, err := New(Spec{Kind: "command", Command: []string{"python3", "score.py"}, Batch: true, Step: "retrieve"}, env)
	require.NoError(t, err)
	items := commandItems()
	res := ScoreAll(context.Background(), s, items, 1)
	require.ErrorContains(t, res[0].Err, `scorer.step "retrieve": the output has no step trace`)
	require.NoError(t, res[4].Err)
	require.Equal(t, 50.0, res[4].Result.Composite, "the retrieve step's output contains Paris")

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, batch := range []bool{true, false} {
		s, err := New(Spec{Kind: "command", Command: []string{"python3", "score.py"}, Batch: batch}, env)
		require.NoError(t, err)
		for _, r := range ScoreAll(ctx, s, items[:2], 1) {
			require.ErrorIs(t, r.Err, context.Canceled)
		}
	}
}

// TestProtocolDocExample runs the Python scorer printed in
// command-protocol.md, so the documentation cannot drift from the protocol.
func TestProtocolDocExample(t *testing.T) {
	pythonEnv(t)
	doc, err := os.ReadFile("command-protocol.md")
	require.NoError(t, err)
	_, rest, ok := strings.Cut(string(doc), "```python\n")
	require.True(t, ok, "command-protocol.md has a python example")
	code, _, ok := strings.Cut(rest, "```")
	require.True(t, ok)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "scorer.py"), []byte(code), 0o644))

	s, err := New(Spec{Kind: "command", Command: []string{"python3", "scorer.py"}, Batch: true}, Env{Dir: dir})
	require.NoError(t, err)
	its := commandItems()
	its[1].Case.Expected = obj{"answer": []any{"Eiffel Tower", "Tour Eiffel"}}
	its[1].Output.Final = "the tower"
	res := ScoreAll(context.Background(), s, its, 1)
	require.NoError(t, res[0].Err)
	require.Equal(t, 100.0, res[0].Result.Composite)
	require.NoError(t, res[1].Err)
	require.InDelta(t, 200.0/3, res[1].Result.Composite, 1e-9)
	require.Equal(t, "partial overlap", res[1].Result.Reason)
	require.ErrorContains(t, res[3].Err, "result 4 of 5 (case c4): expected.answer must be a non-empty string or list of strings")
	require.Equal(t, map[string]float64{"f1": 100, "retrieval": 100}, res[4].Result.Breakdown)
}
