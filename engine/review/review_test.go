package review

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/variant"
)

const baseChain = `output = "answer"

[[steps]]
id = "retrieve"
kind = "retrieve"
query = "{{.context.question}}"
source = "context.paragraphs"
k = 4

[[steps]]
id = "answer"
kind = "llm"
prompt = "prompts/answer.md"
[steps.params]
temperature = 0.0
max_tokens = 256
`

func baseFiles() map[string][]byte {
	return map[string][]byte{
		"chain.toml":        []byte(baseChain),
		"prompts/answer.md": []byte("Answer the question using the passages.\n\n{{.steps.retrieve.output}}\n\nQuestion: {{.context.question}}\n"),
	}
}

func with(files map[string][]byte, path, content string) map[string][]byte {
	out := map[string][]byte{}
	for k, v := range files {
		out[k] = v
	}
	out[path] = []byte(content)
	return out
}

func TestClassify(t *testing.T) {
	base := baseFiles()
	tests := []struct {
		name  string
		cand  map[string][]byte
		level variant.Level
		files []string
	}{
		{"identical", base, "", nil},
		{"prompt text", with(base, "prompts/answer.md", "Answer in one short phrase.\n{{.steps.retrieve.output}}\n{{.context.question}}\n"), variant.LevelPrompt, []string{"prompts/answer.md"}},
		{"temperature", with(base, "chain.toml", strings.Replace(baseChain, "temperature = 0.0", "temperature = 0.3", 1)), variant.LevelParameter, []string{"chain.toml"}},
		{"retrieval k", with(base, "chain.toml", strings.Replace(baseChain, "k = 4", "k = 8", 1)), variant.LevelParameter, []string{"chain.toml"}},
		{"inline query template", with(base, "chain.toml", strings.Replace(baseChain, `query = "{{.context.question}}"`, `query = "{{.context.question}} entity"`, 1)), variant.LevelPrompt, []string{"chain.toml"}},
		{"new step", with(base, "chain.toml", baseChain+"\n[[steps]]\nid = \"check\"\nkind = \"llm\"\nprompt = \"prompts/answer.md\"\n"), variant.LevelStructural, []string{"chain.toml"}},
		{"kind change", with(base, "chain.toml", strings.Replace(baseChain, `kind = "llm"`, `kind = "parse"`, 1)), variant.LevelStructural, []string{"chain.toml"}},
		{"output change", with(base, "chain.toml", strings.Replace(baseChain, `output = "answer"`, `output = "retrieve"`, 1)), variant.LevelStructural, []string{"chain.toml"}},
		{"file outside", with(base, "tenant.toml", "name = 'x'"), variant.LevelStructural, []string{"tenant.toml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cl, err := Classify(base, tt.cand)
			require.NoError(t, err)
			require.Equal(t, tt.level, cl.Level)
			require.Equal(t, tt.files, cl.Files())
		})
	}
	_, err := Classify(base, with(base, "chain.toml", "[[steps]\n"))
	require.ErrorContains(t, err, "chain.toml does not parse")
}

// heldOut is a leakage index over a fixed set of held-out texts.
type heldOut struct{ texts []string }

func (h heldOut) Overlap(text string) (cases, ngrams int) {
	for _, ht := range h.texts {
		if strings.Contains(dataset.Normalize(text), dataset.Normalize(ht)) {
			cases++
			ngrams++
		}
	}
	return cases, ngrams
}

type scriptedReviewer struct {
	verdict ModelVerdict
	err     error
	seen    *ModelInput
}

func (s *scriptedReviewer) Review(_ context.Context, in ModelInput) (ModelVerdict, error) {
	*s.seen = in
	return s.verdict, s.err
}

func input(cand map[string][]byte, level variant.Level) Input {
	return Input{
		Level: level, Rationale: "answers are too long", TargetCluster: "format@answer",
		Parent: baseFiles(), Candidate: cand,
		AllowedLevels: []variant.Level{variant.LevelPrompt, variant.LevelParameter, variant.LevelStructural},
		FrozenFiles:   []string{"tenant.toml", "data/**", "scorer/**"},
		Validate:      func(map[string][]byte) error { return nil },
		Train: TrainFacts{
			CaseIDs: []string{"hp-000123", "hp-000124"},
			Answers: []string{"Arthur's Magazine", "Delhi"},
			Inputs:  []string{"Which magazine was started first, Arthur's Magazine or First for Women? It is a long question."},
		},
		HeldOut:   heldOut{texts: []string{"CANARY-7f3a held out question text"}},
		NgramSize: 8,
	}
}

func findingsOf(v Verdict, check string) []Finding {
	var out []Finding
	for _, f := range v.Findings {
		if f.Check == check {
			out = append(out, f)
		}
	}
	return out
}

func TestGate(t *testing.T) {
	good := with(baseFiles(), "prompts/answer.md", "Answer with the shortest phrase that answers the question, no sentence.\n\n{{.steps.retrieve.output}}\n\nQuestion: {{.context.question}}\n")
	tests := []struct {
		name      string
		in        Input
		pass      bool
		check     string
		wantInMsg string
	}{
		{"passing prompt change", input(good, variant.LevelPrompt), true, "", ""},
		{"hard-coded train answer", input(with(baseFiles(), "prompts/answer.md", "If asked about magazines, answer Arthur's Magazine.\n{{.context.question}}"), variant.LevelPrompt), false, CheckMemorization, "expected answers of individual train cases"},
		{"train case id", input(with(baseFiles(), "prompts/answer.md", "Remember case hp-000123.\n{{.context.question}}"), variant.LevelPrompt), false, CheckMemorization, "hp-000123"},
		{"verbatim train input", input(with(baseFiles(), "prompts/answer.md", "Example: Which magazine was started first, Arthur's Magazine or First for Women?\n{{.context.question}}"), variant.LevelPrompt), false, CheckMemorization, "verbatim"},
		{"frozen file", input(with(good, "tenant.toml", "name='x'"), variant.LevelStructural), false, CheckScope, "tenant.toml is frozen"},
		// The scope contract's patterns are globs and dir/** subtrees; the gate
		// must read them as propose does, not as exact paths.
		{"frozen subtree", func() Input {
			in := input(good, variant.LevelPrompt)
			in.FrozenFiles = []string{"prompts/**"}
			return in
		}(), false, CheckScope, "prompts/answer.md is frozen"},
		{"frozen glob", func() Input {
			in := input(good, variant.LevelPrompt)
			in.FrozenFiles = []string{"prompts/*.md"}
			return in
		}(), false, CheckScope, "prompts/answer.md is frozen"},
		{"level mismatch", input(with(baseFiles(), "chain.toml", strings.Replace(baseChain, "max_tokens = 256", "max_tokens = 1024", 1)), variant.LevelPrompt), false, CheckScope, "propose it at level parameter"},
		{"level not allowed", func() Input {
			in := input(good, variant.LevelPrompt)
			in.AllowedLevels = []variant.Level{variant.LevelParameter}
			return in
		}(), false, CheckScope, "not allowed"},
		{"identical", input(baseFiles(), variant.LevelPrompt), false, CheckScope, "identical"},
		{"leakage", input(with(baseFiles(), "prompts/answer.md", "Note: CANARY-7f3a held out question text\n{{.context.question}}"), variant.LevelPrompt), false, CheckLeakage, "leak suspected in prompts/answer.md"},
		{"invalid chain", func() Input {
			in := input(good, variant.LevelPrompt)
			in.Validate = func(map[string][]byte) error {
				return errors.New(`chain.toml: step "answer": template: unknown step "retreive"`)
			}
			return in
		}(), false, CheckValidity, "unknown step"},
		{"prompt that reads none of its inputs", input(with(baseFiles(), "prompts/answer.md", "Answer briefly.\n\nQuestion: {question}\n"), variant.LevelPrompt), false, CheckValidity, "reads none of the inputs its parent's version read ({{.steps.retrieve.output}}, {{.context.question}})"},
		{"prompt that keeps one input", input(with(baseFiles(), "prompts/answer.md", "Answer briefly.\n\n{{ .context.question }}\n"), variant.LevelPrompt), true, "", ""},
		{"too large", func() Input {
			in := input(with(baseFiles(), "prompts/answer.md", strings.Repeat("Be brief. ", 300)+"{{.context.question}}"), variant.LevelPrompt)
			in.MaxPromptChars = 1000
			return in
		}(), false, CheckSize, "review.max_prompt_chars"},
		{"no sealed data", func() Input {
			in := input(good, variant.LevelPrompt)
			in.HeldOut = nil
			return in
		}(), false, CheckLeakage, "the operator seals it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := (&Gate{}).Review(context.Background(), tt.in)
			require.Equal(t, tt.pass, v.Pass, "%+v", v.Findings)
			if tt.check != "" {
				fs := findingsOf(v, tt.check)
				require.NotEmpty(t, fs, "%+v", v.Findings)
				var msgs []string
				for _, f := range fs {
					msgs = append(msgs, f.Message)
				}
				require.Contains(t, strings.Join(msgs, "\n"), tt.wantInMsg)
			}
			require.Len(t, v.Checks, 5)
		})
	}
}

func TestLeakageFindingNeverQuotesHeldOutText(t *testing.T) {
	in := input(with(baseFiles(), "prompts/answer.md", "CANARY-7f3a held out question text\n{{.context.question}}"), variant.LevelPrompt)
	v := (&Gate{}).Review(context.Background(), in)
	require.False(t, v.Pass)
	for _, f := range v.Findings {
		require.NotContains(t, f.Message, "CANARY")
	}
}

func TestModelReviewer(t *testing.T) {
	good := with(baseFiles(), "prompts/answer.md", "Answer with the shortest phrase.\n{{.steps.retrieve.output}}\n{{.context.question}}\n")
	var seen ModelInput

	pass := &scriptedReviewer{verdict: ModelVerdict{Pass: true}, seen: &seen}
	v := (&Gate{Reviewer: pass}).Review(context.Background(), input(good, variant.LevelPrompt))
	require.True(t, v.Pass)
	require.NotNil(t, v.Model)
	require.Len(t, v.Checks, 6)
	require.Contains(t, seen.Diff, "+Answer with the shortest phrase.")
	require.Equal(t, "answers are too long", seen.Rationale)

	fail := &scriptedReviewer{verdict: ModelVerdict{Pass: false, Failed: []string{"overfit"}, Reasons: map[string]string{"overfit": "encodes magazine names"}}, seen: &seen}
	v = (&Gate{Reviewer: fail}).Review(context.Background(), input(good, variant.LevelPrompt))
	require.False(t, v.Pass)
	require.Contains(t, findingsOf(v, CheckModel)[0].Message, "overfit: encodes magazine names")

	timeout := &scriptedReviewer{err: context.DeadlineExceeded, seen: &seen}
	v = (&Gate{Reviewer: timeout}).Review(context.Background(), input(good, variant.LevelPrompt))
	require.False(t, v.Pass, "a reviewer failure is a failed review, never a pass")
	require.Contains(t, findingsOf(v, CheckModel)[0].Message, "no verdict")

	// The model is not consulted when deterministic checks already failed.
	seen = ModelInput{}
	v = (&Gate{Reviewer: pass}).Review(context.Background(), input(baseFiles(), variant.LevelPrompt))
	require.False(t, v.Pass)
	require.Empty(t, seen.Diff)
}

func TestUnifiedDiff(t *testing.T) {
	d := UnifiedDiff(baseFiles(), with(baseFiles(), "prompts/new.md", "hello\n"))
	require.Contains(t, d, "--- /dev/null")
	require.Contains(t, d, "+++ b/prompts/new.md")
	require.Contains(t, d, "+hello")
	require.Empty(t, UnifiedDiff(baseFiles(), baseFiles()))
}
