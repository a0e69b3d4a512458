package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/engine/tenant"
)

// BareAnswerPhrase in the answer prompt makes the scripted model answer
// with the bare entity; without it, the answer is a sentence (F1 partial,
// exact match 0), so a prompt change can be seen to help.
const bareAnswerPhrase = "only the name"

var hotpotQuestionRe = regexp.MustCompile(`Question: (Who founded the (\w+) guild\?)`)

// pythonPipelineWorkspace is tenants/hotpotqa-python from the repository
// with n HotpotQA-style cases sealed and its model pointed at the double.
func pythonPipelineWorkspace(t *testing.T, n int) (dir, tdir string, env map[string]string, llm *fakellm.Server) {
	t.Helper()
	dir, home := t.TempDir(), t.TempDir()
	tdir = filepath.Join(dir, "tenants", "hotpotqa-python")
	src := filepath.Join("..", "..", "tenants", "hotpotqa-python")
	require.NoError(t, filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.Contains(p, "__pycache__") {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		dst := filepath.Join(tdir, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
		return os.WriteFile(dst, b, 0o644)
	}))
	founders := map[string]string{}
	var lines []string
	for i := range n {
		guild := fmt.Sprintf("G%02dx", i)
		founder := fmt.Sprintf("Ada Founder%02d", i)
		founders[guild] = founder
		typ := []string{"bridge", "comparison"}[i%2]
		c := map[string]any{"case_id": fmt.Sprintf("hp-%02d", i), "task_type": "qa",
			"context": map[string]any{"question": "Who founded the " + guild + " guild?", "paragraphs": []any{
				[]any{guild + " guild", []string{"The " + guild + " guild was founded by " + founder + "."}},
				[]any{"Weather", []string{"It rained on a Tuesday."}},
			}},
			"expected": map[string]any{"answer": founder, "supporting_facts": []any{[]any{guild + " guild", 0}}},
			"metadata": map[string]any{"type": typ}}
		b, _ := json.Marshal(c)
		lines = append(lines, string(b))
	}
	srcFile := filepath.Join(t.TempDir(), "cases.jsonl")
	require.NoError(t, os.WriteFile(srcFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600))

	llm = fakellm.New(fakellm.WithDefault(func(r fakellm.Request) fakellm.Reply {
		all := ""
		for _, m := range r.Messages {
			all += m.Content + "\n"
		}
		m := hotpotQuestionRe.FindStringSubmatch(all)
		if m == nil {
			return fakellm.Reply{Content: "I do not know."}
		}
		founder := founders[m[2]]
		switch {
		case strings.Contains(all, "Passages:"):
			return fakellm.Reply{Content: "The guild was founded by " + founder + "."}
		case strings.Contains(all, bareAnswerPhrase):
			return fakellm.Reply{Content: "Answer: " + founder}
		}
		return fakellm.Reply{Content: "Answer: I believe it was " + founder + ", going by the facts"}
	}))
	t.Cleanup(llm.Close)
	tomlPath := filepath.Join(tdir, "tenant.toml")
	b, err := os.ReadFile(tomlPath)
	require.NoError(t, err)
	text := strings.Replace(string(b), `provider = "openai"`, fmt.Sprintf("provider = \"openai_compatible\"\nbase_url = %q", llm.URL()), 1)
	text = strings.Replace(text, `api_key_env = "OPENAI_API_KEY"`, `api_key_env = ""`, 1)
	require.NoError(t, os.WriteFile(tomlPath, []byte(text), 0o644))
	_, _, err = tenant.Seal(context.Background(), dataset.OpenStore(home), tdir, dataset.SealRequest{Source: srcFile}, func(string) string { return "" })
	require.NoError(t, err)
	return dir, tdir, map[string]string{"FAPO_HOME": home}, llm
}

// TestPythonPipelineDoctorAndEval is the acceptance run of the Python
// example: doctor passes, eval writes per-step traces whose model steps
// carry the messages and tokens fapo's endpoint saw, and a second eval is
// answered from the response cache.
func TestPythonPipelineDoctorAndEval(t *testing.T) {
	dir, tdir, env, llm := pythonPipelineWorkspace(t, 20)
	code, out, errOut := cliRun(t, env, "doctor", tdir, "--workspace", dir)
	require.Equal(t, 0, code, out+errOut)
	require.Contains(t, out, "external program answered train case")

	afterDoctor := llm.Count() // doctor's model check makes one tiny call
	code, out, errOut = cliRun(t, env, "eval", "--tenant", "hotpotqa-python", "--split", "train", "--workspace", dir)
	require.Equal(t, 0, code, out+errOut)
	calls := llm.Count() - afterDoctor
	require.Positive(t, calls)
	results := readCaseLog(t, filepath.Join(tdir, "runs", runIDOf(t, out)))
	require.NotEmpty(t, results)
	for _, cr := range results {
		require.Empty(t, cr.Cause, cr.ExecError)
		var ids []string
		for _, st := range cr.Trace.Steps {
			ids = append(ids, st.StepID+":"+st.Kind)
		}
		require.Equal(t, []string{"retrieve:retrieve", "reason:llm", "answer:llm", "final:parse"}, ids)
		ans := cr.Trace.Step("answer")
		require.Equal(t, 1, ans.Calls)
		require.NotEmpty(t, ans.Messages, "the endpoint's messages are in the trace")
		require.Contains(t, ans.Messages[0].Content, "Answer the question.")
		require.Positive(t, ans.PromptTokens)
		require.NotEmpty(t, cr.Trace.Step("retrieve").Retrieved)
		require.Positive(t, cr.Score, "a sentence answer still has F1")
		require.Less(t, cr.Score, 100.0, "the baseline answers in sentences")
	}

	code, out, errOut = cliRun(t, env, "eval", "--tenant", "hotpotqa-python", "--split", "train", "--workspace", dir)
	require.Equal(t, 0, code, out+errOut)
	require.Equal(t, afterDoctor+calls, llm.Count(), "the second run is answered from the cache")
	require.Contains(t, out, fmt.Sprintf("(%d cache hits)", calls))
}

// TestPythonPipelineSessionMovesIncumbent runs the loop over the external
// pipeline as an agent would through the MCP tools: train evaluation,
// inspect, a prompt change to the program's answer prompt, review,
// compare on validation, and the incumbent moves.
func TestPythonPipelineSessionMovesIncumbent(t *testing.T) {
	dir, _, env, _ := pythonPipelineWorkspace(t, 40)
	w, err := loop.Open(dir, loop.Options{Home: env["FAPO_HOME"], Getenv: func(string) string { return "" }})
	require.NoError(t, err)
	t.Cleanup(func() { w.Close() })
	ctx := context.Background()
	const name = "hotpotqa-python"
	_, err = w.StartSession(loop.StartRequest{Tenant: name})
	require.NoError(t, err)
	te, err := w.EvaluateTrain(ctx, loop.RunRequest{Tenant: name})
	require.NoError(t, err)
	require.Zero(t, te.Summary.Errored)
	page, err := w.InspectCases(ctx, loop.InspectRequest{Tenant: name, Run: te.Summary.RunID, Failed: true, Limit: 2})
	require.NoError(t, err)
	require.NotEmpty(t, page.Cases)
	require.Contains(t, page.Cases[0].Final, "I believe it was")

	prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: name, Level: "prompt",
		Rationale: "answers are sentences; exact match needs the bare entity", TargetCluster: "format @ answer",
		Prompts: map[string]string{"answer": "Question: {question}\n\nFacts:\n{facts}\n\nReply 'Answer: ' followed by " + bareAnswerPhrase + " of the person.\n"}})
	require.NoError(t, err)
	rev, err := w.Review(ctx, name, prop.Variant)
	require.NoError(t, err)
	require.True(t, rev.Verdict.Pass, "%+v", rev.Verdict.Findings)
	cmp, err := w.Compare(ctx, name, prop.Variant, nil)
	require.NoError(t, err)
	require.True(t, cmp.Decision.Accept, cmp.Decision.Reason)
	require.Equal(t, prop.Variant, cmp.NewIncumbent)
	require.Equal(t, 100.0, cmp.CandidateScore)
}

// TestPythonPipelineProgramIsPinned: the program is a frozen tenant file; a
// helper module changed after the seal makes the server refuse the tenant
// until the operator pins it, so the agent cannot swap the program.
func TestPythonPipelineProgramIsPinned(t *testing.T) {
	dir, tdir, env, _ := pythonPipelineWorkspace(t, 10)
	helper := filepath.Join(tdir, "pipeline", "fapo_pipeline.py")
	b, err := os.ReadFile(helper)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(helper, append(b, []byte("\n# swapped\n")...), 0o644))
	code, out, errOut := cliRun(t, env, "eval", "--tenant", "hotpotqa-python", "--split", "train", "--workspace", dir)
	require.NotEqual(t, 0, code, out)
	require.Contains(t, errOut, "pipeline/fapo_pipeline.py")
	require.Contains(t, errOut, "fapo pin")
}
