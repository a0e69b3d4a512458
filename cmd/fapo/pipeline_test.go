package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/pipeline/pipelinetest"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
)

// TestPythonPipelineDoctorAndEval is the acceptance run of the Python
// example: doctor passes, eval writes per-step traces whose model steps
// carry the messages and tokens fapo's endpoint saw, and a second eval is
// answered from the response cache.
func TestPythonPipelineDoctorAndEval(t *testing.T) {
	f := pipelinetest.New(t, nil)
	env, dir, tdir := f.Env(), f.Dir, f.TenantDir()
	code, out, errOut := cliRun(t, env, "doctor", tdir, "--workspace", dir)
	require.Equal(t, 0, code, out+errOut)
	require.Contains(t, out, "external program answered train case")

	afterDoctor := f.LLM.Count() // doctor's model check makes one tiny call
	code, out, errOut = cliRun(t, env, "eval", "--tenant", pipelinetest.Tenant, "--split", "train", "--workspace", dir)
	require.Equal(t, 0, code, out+errOut)
	calls := f.LLM.Count() - afterDoctor
	require.Positive(t, calls)
	results := readCaseLog(t, filepath.Join(tdir, "runs", runIDOf(t, out)))
	require.NotEmpty(t, results)
	answered := 0
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
		require.Less(t, cr.Score, 100.0, "the baseline answers in sentences, or not at all")
		if cr.Score > 0 {
			answered++
		}
	}
	require.Greater(t, answered, len(results)/2, "most cases are answered in a sentence with partial F1")

	code, out, errOut = cliRun(t, env, "eval", "--tenant", pipelinetest.Tenant, "--split", "train", "--workspace", dir)
	require.Equal(t, 0, code, out+errOut)
	require.Equal(t, afterDoctor+calls, f.LLM.Count(), "the second run is answered from the cache")
	require.Contains(t, out, fmt.Sprintf("(%d cache hits)", calls))
}

// TestPythonPipelineProgramIsPinned: the program is a frozen tenant file; a
// helper module changed after the seal makes the server refuse the tenant
// until the operator pins it, so the agent cannot swap the program.
func TestPythonPipelineProgramIsPinned(t *testing.T) {
	f := pipelinetest.New(t, nil)
	helper := filepath.Join(f.TenantDir(), "pipeline", "fapo_pipeline.py")
	b, err := os.ReadFile(helper)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(helper, append(b, []byte("\n# swapped\n")...), 0o644))
	code, out, errOut := cliRun(t, f.Env(), "eval", "--tenant", pipelinetest.Tenant, "--split", "train", "--workspace", f.Dir)
	require.NotEqual(t, 0, code, out)
	require.Contains(t, errOut, "pipeline/fapo_pipeline.py")
	require.Contains(t, errOut, "fapo pin")
}

var sumRe = regexp.MustCompile(`What is (\d+) plus (\d+)\?`)

// TestNodePipelineDoctorAndEval runs engine/pipeline/examples/node/pipeline.js,
// unchanged, as a tenant's pipeline: doctor runs it with the stand-in
// model, and eval scores every case from model calls made through fapo's
// endpoint, with the messages in the trace.
func TestNodePipelineDoctorAndEval(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed")
	}
	llm := fakellm.New(fakellm.WithDefault(func(r fakellm.Request) fakellm.Reply {
		m := sumRe.FindStringSubmatch(r.LastUser())
		if m == nil {
			return fakellm.Reply{Content: "I do not know."}
		}
		a, _ := strconv.Atoi(m[1])
		b, _ := strconv.Atoi(m[2])
		return fakellm.Reply{Content: " " + strconv.Itoa(a+b) + "\n"}
	}))
	t.Cleanup(llm.Close)
	ws, home := t.TempDir(), t.TempDir()
	tdir := filepath.Join(ws, "tenants", "sums")
	js, err := os.ReadFile(filepath.Join("..", "..", "engine", "pipeline", "examples", "node", "pipeline.js"))
	require.NoError(t, err)
	files := map[string]string{
		"pipeline/pipeline.js": string(js),
		"prompts/answer.md":    "Reply with the number only. {question}\n",
		"chain.toml":           "[[steps]]\nid = \"answer\"\nkind = \"llm\"\nprompt = \"prompts/answer.md\"\n[steps.params]\ntemperature = 0.0\nmax_tokens = 16\n",
		"tenant.toml": fmt.Sprintf(`name = "sums"
description = "Sums of two numbers, answered by a Node program."
task_type = "qa"
[data]
train = 0.6
validation = 0.2
test = 0.2
seed = 1
[model]
provider = "openai_compatible"
base_url = %q
name = "m"
[scorer]
kind = "exact_match"
[pipeline]
command = ["node", "pipeline/pipeline.js"]
timeout_seconds = 30
concurrency = 2
`, llm.URL()),
	}
	for p, text := range files {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(tdir, p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(tdir, p), []byte(text), 0o644))
	}
	var lines []string
	for i := range 20 {
		lines = append(lines, fmt.Sprintf(`{"case_id": "s%02d", "task_type": "qa", "context": {"question": "What is %d plus %d?"}, "expected": {"answer": "%d"}}`, i, i, 7*i, 8*i))
	}
	src := filepath.Join(t.TempDir(), "sums.jsonl")
	require.NoError(t, os.WriteFile(src, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	env := map[string]string{"FAPO_HOME": home}
	code, out, errOut := cliRun(t, env, "seal", tdir, "--source", src)
	require.Equal(t, 0, code, out+errOut)
	code, out, errOut = cliRun(t, env, "doctor", tdir, "--workspace", ws)
	require.Equal(t, 0, code, out+errOut)
	require.Contains(t, out, "external program answered train case")

	code, out, errOut = cliRun(t, env, "eval", "--tenant", "sums", "--split", "train", "--workspace", ws)
	require.Equal(t, 0, code, out+errOut)
	results := readCaseLog(t, filepath.Join(tdir, "runs", runIDOf(t, out)))
	require.Len(t, results, 12)
	for _, cr := range results {
		require.False(t, cr.Errored(), cr.ExecError)
		require.Equal(t, 100.0, cr.Score, "%s: %q", cr.CaseID, cr.Trace.Final)
		ans := cr.Trace.Step("answer")
		require.Equal(t, 1, ans.Calls, "the call went through fapo's endpoint")
		require.Contains(t, ans.Messages[0].Content, "Reply with the number only. What is")
	}
}
