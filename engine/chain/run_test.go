package chain

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider"
)

// script is a simulated model: it records every request and answers with
// reply; it is safe for concurrent samples.
type script struct {
	mu    sync.Mutex
	reqs  []provider.Request
	reply func(provider.Request) (provider.Response, error)
}

func (s *script) Complete(ctx context.Context, req provider.Request) (provider.Response, error) {
	s.mu.Lock()
	s.reqs = append(s.reqs, req)
	s.mu.Unlock()
	return s.reply(req)
}

func (s *script) requests() []provider.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]provider.Request(nil), s.reqs...)
}

func replyText(text string) func(provider.Request) (provider.Response, error) {
	return func(provider.Request) (provider.Response, error) {
		return provider.Response{Content: text, FinishReason: "stop", Usage: provider.Usage{PromptTokens: 10, CompletionTokens: 3}}, nil
	}
}

// models maps a [models.NAME] name to a client; the provider model name is
// "provider-" + the name, so tests can see it was passed through.
type models map[string]provider.Client

func (m models) Client(name string) (provider.Client, string, error) {
	c, ok := m[name]
	if !ok {
		return nil, "", fmt.Errorf("no [models.%s] block in tenant.toml", name)
	}
	return c, "provider-" + name, nil
}

func hotpotCase() dataset.Case {
	return dataset.Case{
		CaseID: "c1",
		Context: map[string]any{
			"question": "Which city hosted the first performance of the band Tinted Windows?",
			"paragraphs": []any{
				map[string]any{"title": "Act of Congress", "sentences": []any{"Act of Congress is a band.", " They play acoustic music."}},
				map[string]any{"title": "Tinted Windows", "sentences": []any{"Tinted Windows is a supergroup.", " Their first performance was in Austin, Texas."}},
				map[string]any{"title": "Weather", "sentences": []any{"It rains often in Seattle."}},
			},
		},
		Expected: map[string]any{"answer": "SECRET-EXPECTED"},
	}
}

func TestRunThreeStepChain(t *testing.T) {
	c, err := Load(writeDir(t, threeStepFiles()))
	require.NoError(t, err)
	model := &script{reply: func(req provider.Request) (provider.Response, error) {
		return provider.Response{Content: "Reasoning...\nAnswer: Austin", FinishReason: "stop", CacheHit: true,
			Usage: provider.Usage{PromptTokens: 120, CompletionTokens: 8}}, nil
	}}
	tr := c.Run(context.Background(), hotpotCase(), models{"": model})

	require.Empty(t, tr.Error)
	require.Equal(t, "c1", tr.CaseID)
	require.Equal(t, "Austin", tr.Final)
	require.Len(t, tr.Steps, 3)

	r := tr.Step("retrieve")
	require.Len(t, r.Retrieved, 2)
	require.Equal(t, "Tinted Windows", r.Retrieved[0].Title)
	require.Equal(t, "1", r.Retrieved[0].ID)
	require.Equal(t, "Tinted Windows is a supergroup. Their first performance was in Austin, Texas.", r.Retrieved[0].Text)
	require.True(t, strings.HasPrefix(r.Output, "[Tinted Windows] Tinted Windows is a supergroup."))
	require.Contains(t, r.Output, "\n\n[")

	a := tr.Step("answer")
	require.Equal(t, []provider.Message{
		{Role: "system", Content: "Answer briefly."},
		{Role: "user", Content: "Passages:\n" + r.Output + "\n\nQuestion: " + hotpotCase().Context["question"].(string)},
	}, a.Messages)
	require.Equal(t, "Reasoning...\nAnswer: Austin", a.Output)
	require.Equal(t, "stop", a.FinishReason)
	require.Equal(t, 1, a.Calls)
	require.Equal(t, 1, a.CacheHits)
	require.Equal(t, 120, a.PromptTokens)
	require.Equal(t, 8, a.CompletionTokens)
	require.Positive(t, a.LatencyMS)

	reqs := model.requests()
	require.Len(t, reqs, 1)
	require.Equal(t, "provider-", reqs[0].Model)
	require.Equal(t, 0.0, *reqs[0].Params.Temperature)
	require.Equal(t, 64, *reqs[0].Params.MaxTokens)
	require.Equal(t, 7, *reqs[0].Params.Seed)
	require.Equal(t, []string{"\n\n"}, reqs[0].Params.Stop)
	require.Nil(t, reqs[0].Params.TopP)
	for _, m := range reqs[0].Messages {
		require.NotContains(t, m.Content, "SECRET-EXPECTED")
	}

	f := tr.Step("final")
	require.Equal(t, "Austin", f.Output)
	require.Equal(t, "Austin", f.Parsed)
	require.Equal(t, a.Output, f.RawOutput)
}

func TestRunNamedModelAndSamples(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"chain.toml": llmStep("vote", "model = \"big\"\n[steps.params]\nn = 3\ntop_p = 0.9"),
		"p.md":       "{{.context.question}}",
	})
	c, err := Load(dir)
	require.NoError(t, err)
	model := &script{reply: func(req provider.Request) (provider.Response, error) {
		return provider.Response{Content: fmt.Sprintf("sample %d", req.Sample), FinishReason: "stop", CacheHit: req.Sample == 1,
			Usage: provider.Usage{PromptTokens: 5, CompletionTokens: 2}}, nil
	}}
	tr := c.Run(context.Background(), dataset.Case{CaseID: "x", Context: map[string]any{"question": "q?"}}, models{"big": model})
	require.Empty(t, tr.Error)
	st := tr.Step("vote")
	require.Equal(t, []string{"sample 0", "sample 1", "sample 2"}, st.Samples)
	require.Equal(t, "sample 0", st.Output)
	require.Equal(t, 3, st.Calls)
	require.Equal(t, 1, st.CacheHits)
	require.Equal(t, 15, st.PromptTokens)
	require.Equal(t, 6, st.CompletionTokens)

	var samples []int
	for _, r := range model.requests() {
		require.Equal(t, "provider-big", r.Model)
		require.Equal(t, 0.9, *r.Params.TopP)
		samples = append(samples, r.Sample)
	}
	require.ElementsMatch(t, []int{0, 1, 2}, samples)
}

func TestRunJSONSchema(t *testing.T) {
	schema := `{"type":"object","properties":{"answer":{"type":"string"},"confidence":{"type":"number"}},"required":["answer"]}`
	tests := []struct {
		name    string
		extra   string
		reply   string
		finish  string
		want    any
		wantErr string
	}{
		{"inline table plain JSON", `json_schema = { type = "object", properties = { answer = { type = "string" } } }`, `{"answer":"Austin"}`, "stop", map[string]any{"answer": "Austin"}, ""},
		{"file with fences", `json_schema = "schema.json"`, "```json\n{\"answer\": \"Austin\", \"confidence\": 0.9}\n```", "stop", map[string]any{"answer": "Austin", "confidence": 0.9}, ""},
		{"not JSON", `json_schema = "schema.json"`, "Austin", "stop", nil, "output is not the JSON the schema asks for: no JSON object or array found"},
		{"truncated", `json_schema = "schema.json"`, `{"answer": "Aus`, "length", nil, "cut off at max_tokens"},
		{"missing required", `json_schema = "schema.json"`, `{"confidence": 0.9}`, "stop", nil, "missing property 'answer'"},
		{"wrong type", `json_schema = "schema.json"`, `{"answer": "Austin", "confidence": "high"}`, "stop", nil, "at '/confidence': got string, want number"},
		{"wrapper schema", `json_schema = { name = "out", strict = true, schema = { type = "object", required = ["answer"] } }`, `{"other": 1}`, "stop", nil, "missing property 'answer'"},
		{"local ref", `json_schema = { type = "object", properties = { answer = { "$ref" = "#/$defs/s" } }, "$defs" = { s = { type = "string" } } }`, `{"answer": 3}`, "stop", nil, "at '/answer': got number, want string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeDir(t, map[string]string{
				"chain.toml":  llmStep("extract", tc.extra) + "[[steps]]\nid = \"use\"\nkind = \"parse\"\ninput = \"{{.steps.extract.parsed.answer}}\"\nregex = \"(.+)\"\n",
				"p.md":        "{{.context.question}}",
				"schema.json": schema,
			})
			c, err := Load(dir)
			require.NoError(t, err)
			model := &script{reply: func(provider.Request) (provider.Response, error) {
				return provider.Response{Content: tc.reply, FinishReason: tc.finish}, nil
			}}
			tr := c.Run(context.Background(), dataset.Case{CaseID: "x", Context: map[string]any{"question": "q"}}, models{"": model})
			require.NotEmpty(t, model.requests()[0].JSONSchema)
			require.Contains(t, string(model.requests()[0].JSONSchema), `"answer"`)
			st := tr.Step("extract")
			if tc.wantErr != "" {
				require.Contains(t, st.Error, tc.wantErr)
				// A model that answered off-schema failed to parse: the
				// trace says so, for attribution to call it format.
				require.NotEmpty(t, st.ParseError)
				require.Contains(t, st.Error, st.ParseError)
				require.Contains(t, tr.Error, `step "extract": `)
				require.True(t, tr.Step("use").Skipped)
				return
			}
			require.Empty(t, tr.Error)
			require.Equal(t, tc.want, st.Parsed)
			require.Equal(t, "Austin", tr.Final)
		})
	}
}

func TestRunRetrieveSources(t *testing.T) {
	tests := []struct {
		name       string
		paragraphs any
		query      string
		k          int
		wantTitles []string
		wantOutput string
		wantErr    string
	}{
		{"strings", []any{"the cat sat", "dogs bark loudly", "a cat and a dog"}, "cat", 5, []string{"", ""}, "the cat sat\n\na cat and a dog", ""},
		{"title text", []any{map[string]any{"id": "d7", "title": "Cats", "text": "Cats purr."}, map[string]any{"title": "Dogs", "text": "Dogs bark."}}, "dogs", 1, []string{"Dogs"}, "[Dogs] Dogs bark.", ""},
		{"hotpot pairs", []any{[]any{"Paris", []any{"Paris is in France.", " It is big."}}}, "france", 2, []string{"Paris"}, "[Paris] Paris is in France. It is big.", ""},
		{"nothing matches", []any{"alpha", "beta"}, "gamma", 2, nil, "", ""},
		{"only stopwords", []any{"the a an"}, "the", 2, nil, "", ""},
		{"not a list", "just text", "x", 2, nil, "", "source context.paragraphs: want a list of passages, got a string"},
		{"bad item", []any{3.0}, "x", 2, nil, "", "passage 0 is a number"},
		{"object without text", []any{map[string]any{"title": "T"}}, "x", 2, nil, "", "passage 0 has neither text nor sentences"},
		{"bad pair", []any{[]any{"T"}}, "x", 2, nil, "", "want [title, [sentences]]"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeDir(t, map[string]string{"chain.toml": fmt.Sprintf("[[steps]]\nid = \"r\"\nkind = \"retrieve\"\nquery = \"{{.context.q}}\"\nsource = \"context.paragraphs\"\nk = %d\n", tc.k)})
			c, err := Load(dir)
			require.NoError(t, err)
			tr := c.Run(context.Background(), dataset.Case{CaseID: "x", Context: map[string]any{"q": tc.query, "paragraphs": tc.paragraphs}}, nil)
			st := tr.Step("r")
			if tc.wantErr != "" {
				require.Contains(t, st.Error, tc.wantErr)
				return
			}
			require.Empty(t, tr.Error)
			var titles []string
			for _, d := range st.Retrieved {
				titles = append(titles, d.Title)
				require.Positive(t, d.Score)
			}
			require.Equal(t, tc.wantTitles, titles)
			require.Equal(t, tc.wantOutput, st.Output)
		})
	}
}

func TestRunRetrieveMissingSourceField(t *testing.T) {
	dir := writeDir(t, map[string]string{"chain.toml": "[[steps]]\nid = \"r\"\nkind = \"retrieve\"\nquery = \"q\"\nsource = \"context.docs.list\"\nk = 2\n"})
	c, err := Load(dir)
	require.NoError(t, err)
	tr := c.Run(context.Background(), dataset.Case{CaseID: "c9", Context: map[string]any{}}, nil)
	require.Equal(t, `step "r": source context.docs.list: case c9 has no such field`, tr.Error)
	tr = c.Run(context.Background(), dataset.Case{CaseID: "c9", Context: map[string]any{"docs": "x"}}, nil)
	require.Equal(t, `step "r": source context.docs.list: context.docs is not an object`, tr.Error)
}

func TestRunRetrieveCorpus(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"chain.toml": "[[steps]]\nid = \"r\"\nkind = \"retrieve\"\nquery = \"{{.context.q}}\"\ncorpus = \"corpus/docs.jsonl\"\nk = 2\nfields = [\"text\"]\n",
		"corpus/docs.jsonl": `{"id": "a", "title": "Volcano", "text": "Lava flows from the volcano."}
{"id": 2, "title": "Ocean", "text": "The ocean is deep and blue."}

{"title": "Volcano facts", "text": "A volcano erupts lava and ash; volcano volcano."}
`,
	})
	c, err := Load(dir)
	require.NoError(t, err)
	tr := c.Run(context.Background(), dataset.Case{CaseID: "x", Context: map[string]any{"q": "volcano lava"}}, nil)
	require.Empty(t, tr.Error)
	st := tr.Step("r")
	require.Len(t, st.Retrieved, 2)
	require.ElementsMatch(t, []string{"a", "4"}, []string{st.Retrieved[0].ID, st.Retrieved[1].ID}, "a line without id is named by its line number")
	first := c.byID["r"].corpus
	require.NotNil(t, first)

	tr = c.Run(context.Background(), dataset.Case{CaseID: "y", Context: map[string]any{"q": "deep ocean"}}, nil)
	require.Equal(t, "2", tr.Step("r").Retrieved[0].ID)
	require.Same(t, first, c.byID["r"].corpus, "the corpus is indexed once per chain")
}

func TestRunRetrieveCorpusBadLine(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"chain.toml":  "[[steps]]\nid = \"r\"\nkind = \"retrieve\"\nquery = \"q\"\ncorpus = \"docs.jsonl\"\nk = 2\n",
		"docs.jsonl":  "{\"id\": \"a\", \"text\": \"ok\"}\n{not json\n",
		"prompts/x.m": "",
	})
	c, err := Load(dir)
	require.NoError(t, err)
	for range 2 {
		tr := c.Run(context.Background(), dataset.Case{CaseID: "x"}, nil)
		require.Contains(t, tr.Error, `step "r": corpus docs.jsonl:2: invalid character`)
	}
}

func TestRunParse(t *testing.T) {
	tests := []struct {
		name       string
		rule       string
		input      string
		wantOut    string
		wantParsed any
		wantErr    string
		wantNote   string
	}{
		{"regex first group", `regex = 'Answer:\s*(.+)'`, "blah\nAnswer: Paris ", "Paris", "Paris", "", ""},
		{"regex named group", `regex = '(?P<label>\w+)=(?P<value>\d+)'`, "x=42", "42", "42", "", ""},
		{"regex no group", `regex = '\d+'`, "year 1999!", "1999", "1999", "", ""},
		{"json_path", `json_path = "result.answer"`, `{"result": {"answer": "Paris"}}`, "Paris", "Paris", "", ""},
		{"json_path index and number", `json_path = "items.1"`, "Sure:\n```json\n{\"items\": [1, 2.5]}\n```", "2.5", 2.5, "", ""},
		{"json_path object", `json_path = "a"`, `Here you go: {"a": {"b": true}} hope it helps`, `{"b":true}`, map[string]any{"b": true}, "", ""},
		{"regex no match error", `regex = 'Answer: (.+)'`, "I don't know", "", nil, `regex "Answer: (.+)" does not match the input`, ""},
		{"default on_fail is error", `json_path = "a"`, "nothing", "", nil, "no JSON object or array found", ""},
		{"json_path missing key", "json_path = \"a.c\"\non_fail = \"error\"", `{"a": {"b": 1}}`, "", nil, `json_path "a.c": no key "c"`, ""},
		{"json_path bad index", `json_path = "a.5"`, `{"a": [1]}`, "", nil, `"5" is not an index of a 1-element list`, ""},
		{"json_path into scalar", `json_path = "a.b"`, `{"a": 1}`, "", nil, `cannot look up "b" in a number`, ""},
		{"invalid json", `json_path = "a"`, `{"a": }`, "", nil, "invalid JSON", ""},
		{"on_fail raw", "regex = 'Answer: (.+)'\non_fail = \"raw\"", "Paris", "Paris", "Paris", "", "does not match"},
		{"on_fail empty", "regex = 'Answer: (.+)'\non_fail = \"empty\"", "Paris", "", "", "", "does not match"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeDir(t, map[string]string{"chain.toml": "[[steps]]\nid = \"p\"\nkind = \"parse\"\ninput = \"{{.context.text}}\"\n" + tc.rule + "\n"})
			c, err := Load(dir)
			require.NoError(t, err)
			tr := c.Run(context.Background(), dataset.Case{CaseID: "x", Context: map[string]any{"text": tc.input}}, nil)
			st := tr.Step("p")
			require.Equal(t, tc.input, st.RawOutput)
			if tc.wantErr != "" {
				require.Contains(t, st.Error, tc.wantErr)
				require.Contains(t, tr.Error, `step "p": `)
				return
			}
			require.Empty(t, tr.Error)
			require.Equal(t, tc.wantOut, st.Output)
			require.Equal(t, tc.wantOut, tr.Final)
			require.Equal(t, tc.wantParsed, st.Parsed)
			if tc.wantNote == "" {
				require.Empty(t, st.ParseError)
			} else {
				require.Contains(t, st.ParseError, tc.wantNote)
			}
		})
	}
}

func TestRunFailureCascade(t *testing.T) {
	c, err := Load(writeDir(t, threeStepFiles()))
	require.NoError(t, err)
	tests := []struct {
		name      string
		c         dataset.Case
		m         Models
		failAt    string
		wantError string
	}{
		{"missing key at render time", dataset.Case{CaseID: "x", Context: map[string]any{"question": "q", "paragraphs": []any{}}},
			models{"": &script{reply: replyText("ok")}}, "", ""},
		{"template missing key", dataset.Case{CaseID: "x", Context: map[string]any{"paragraphs": []any{"p"}}},
			models{"": &script{reply: replyText("ok")}}, "retrieve",
			`step "retrieve": render query: template: retrieve.query:1:10: executing "retrieve.query" at <.context.question>: map has no entry for key "question"`},
		{"unknown model", hotpotCase(), models{}, "answer", `step "answer": model "": no [models.] block`},
		{"model error", hotpotCase(), models{"": &script{reply: func(provider.Request) (provider.Response, error) {
			return provider.Response{}, errors.New("429 too many requests after 3 retries")
		}}}, "answer", `step "answer": 429 too many requests after 3 retries`},
		{"model panics", hotpotCase(), models{"": &script{reply: func(provider.Request) (provider.Response, error) { panic("boom") }}},
			"answer", `step "answer": internal error in llm step: boom`},
		{"no models", hotpotCase(), nil, "answer", `step "answer": no models configured`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := c.Run(context.Background(), tc.c, tc.m)
			require.Len(t, tr.Steps, 3)
			if tc.failAt == "" {
				require.Empty(t, tr.Error)
				return
			}
			require.True(t, strings.HasPrefix(tr.Error, tc.wantError), tr.Error)
			require.Empty(t, tr.Final)
			after := false
			for _, st := range tr.Steps {
				switch {
				case st.StepID == tc.failAt:
					require.NotEmpty(t, st.Error)
					require.False(t, st.Skipped)
					after = true
				case after:
					require.True(t, st.Skipped)
					require.Equal(t, "not run: step "+tc.failAt+" failed", st.Error)
				default:
					require.Empty(t, st.Error)
				}
			}
		})
	}
}

func TestRunCancellation(t *testing.T) {
	c, err := Load(writeDir(t, threeStepFiles()))
	require.NoError(t, err)
	started := make(chan struct{})
	client := provider.ClientFunc(func(ctx context.Context, req provider.Request) (provider.Response, error) {
		close(started)
		<-ctx.Done()
		return provider.Response{}, ctx.Err()
	})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan *Trace)
	go func() { done <- c.Run(ctx, hotpotCase(), models{"": client}) }()
	<-started
	cancel()
	select {
	case tr := <-done:
		require.Equal(t, `step "answer": context canceled`, tr.Error)
		require.True(t, tr.Step("final").Skipped)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancellation")
	}

	// A context cancelled before the run fails the first step without
	// calling anything.
	tr := c.Run(ctx, hotpotCase(), models{"": client})
	require.Equal(t, `step "retrieve": context canceled`, tr.Error)
	require.True(t, tr.Step("answer").Skipped)
	require.Empty(t, tr.Step("answer").Messages)
}

func TestDryRun(t *testing.T) {
	files := threeStepFiles()
	files["chain.toml"] += `
[[steps]]
id = "structured"
kind = "llm"
prompt = "prompts/structured.md"
json_schema = { type = "object", properties = { answer = { type = "string" }, facts = { type = "array", items = { type = "object", properties = { title = { type = "string" } } } } } }

[[steps]]
id = "use"
kind = "parse"
input = "{{.steps.structured.parsed.answer}} {{range .steps.structured.parsed.facts}}{{.title}}{{end}} {{range .steps.retrieve.retrieved}}{{.title}}{{end}} {{.steps.final.parsed}}"
regex = "(.+)"
`
	files["prompts/structured.md"] = "{{.steps.answer.output}}"
	c, err := Load(writeDir(t, files))
	require.NoError(t, err)

	require.NoError(t, c.DryRun(hotpotCase()))

	err = c.DryRun(dataset.Case{CaseID: "bad", Context: map[string]any{"question": "q", "paragraphs": "not a list"}})
	var ve *ValidationError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, []Problem{{Step: "retrieve", Msg: "source context.paragraphs: want a list of passages, got a string"}}, ve.Problems)

	err = c.DryRun(dataset.Case{CaseID: "bad", Context: map[string]any{"paragraphs": []any{}}})
	require.ErrorAs(t, err, &ve)
	require.Len(t, ve.Problems, 2, "both templates reading .context.question fail: %v", err)
	require.Equal(t, "retrieve", ve.Problems[0].Step)
	require.Equal(t, "answer", ve.Problems[1].Step)
	require.Contains(t, ve.Problems[1].Msg, `template: prompts/answer.md:4:20: executing "prompts/answer.md" at <.context.question>: map has no entry for key "question"`)
}

func TestDryRunCorpusNeedsNoCase(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"chain.toml": "[[steps]]\nid = \"r\"\nkind = \"retrieve\"\nquery = \"{{.context.q}}\"\ncorpus = \"docs.jsonl\"\nk = 2\n",
		"docs.jsonl": "",
	})
	c, err := Load(dir)
	require.NoError(t, err)
	require.NoError(t, c.DryRun(dataset.Case{Context: map[string]any{"q": "x"}}))
	require.Nil(t, c.byID["r"].corpus, "a dry run does not index the corpus")
}

func TestTemplateFuncs(t *testing.T) {
	ctx := map[string]any{
		"list":  []any{"a", "b", 3.0},
		"strs":  []string{"x", "y"},
		"obj":   map[string]any{"k": []any{1.0}},
		"word":  "  MiXed  ",
		"paras": []any{map[string]any{"title": "T1", "sentences": []any{"One.", " Two."}}, map[string]any{"title": "T2", "text": "Three."}},
	}
	tests := []struct {
		tmpl, want, wantErr string
	}{
		{`{{.context.list | join ", "}}`, "a, b, 3", ""},
		{`{{join "+" .context.strs}}`, "x+y", ""},
		{`{{.context.list | numbered}}`, "1. a\n2. b\n3. 3", ""},
		{`{{json .context.obj}}`, `{"k":[1]}`, ""},
		{`{{.context.word | trim | lower}}|{{upper .context.word}}`, "mixed|  MIXED  ", ""},
		{`{{paragraphs .context.paras}}`, "[T1] One. Two.\n\n[T2] Three.", ""},
		{`{{join ", " .context.obj}}`, "", "join: want a list, got map[string]interface {}"},
		{`{{numbered .context.obj}}`, "", "numbered: want a list"},
		{`{{paragraphs .context.word}}`, "", "paragraphs: want a list of passages, got a string"},
		{`{{json .context.fn}}`, "", "json: json: unsupported type"},
	}
	for _, tc := range tests {
		t.Run(tc.tmpl, func(t *testing.T) {
			dir := writeDir(t, map[string]string{"chain.toml": "[[steps]]\nid = \"p\"\nkind = \"parse\"\ninput = '" + tc.tmpl + "'\nregex = '(?s)(.*)'\n"})
			c, err := Load(dir)
			require.NoError(t, err)
			data := map[string]any{"fn": func() {}}
			for k, v := range ctx {
				data[k] = v
			}
			tr := c.Run(context.Background(), dataset.Case{CaseID: "x", Context: data}, nil)
			if tc.wantErr != "" {
				require.Contains(t, tr.Error, tc.wantErr)
				return
			}
			require.Empty(t, tr.Error)
			require.Equal(t, tc.want, tr.Step("p").RawOutput)
		})
	}
}

// One Chain serves every case of a run at once; the shared corpus index and
// templates must hold up under concurrent Runs.
func TestRunConcurrentCases(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"chain.toml": "[[steps]]\nid = \"r\"\nkind = \"retrieve\"\nquery = \"{{.context.q}}\"\ncorpus = \"docs.jsonl\"\nk = 1\n" +
			llmStep("a", "[steps.params]\nn = 2") + "\n",
		"p.md":       "{{.steps.r.output}} / {{.context.q}}",
		"docs.jsonl": "{\"id\": \"v\", \"text\": \"volcano lava\"}\n{\"id\": \"o\", \"text\": \"deep ocean\"}\n",
	})
	c, err := Load(dir)
	require.NoError(t, err)
	model := &script{reply: func(req provider.Request) (provider.Response, error) {
		return provider.Response{Content: req.Messages[0].Content}, nil
	}}
	var wg sync.WaitGroup
	traces := make([]*Trace, 16)
	for i := range traces {
		q := []string{"lava", "ocean"}[i%2]
		wg.Go(func() {
			traces[i] = c.Run(context.Background(), dataset.Case{CaseID: fmt.Sprint(i), Context: map[string]any{"q": q}}, models{"": model})
		})
	}
	wg.Wait()
	for i, tr := range traces {
		require.Empty(t, tr.Error)
		want := map[int]string{0: "volcano lava / lava", 1: "deep ocean / ocean"}[i%2]
		require.Equal(t, want, tr.Final)
		require.Equal(t, []string{want, want}, tr.Step("a").Samples)
	}
}

// TestRenderIsBounded: a template that renders past maxRendered is refused
// instead of growing without bound (a loop on a held-out value would
// otherwise make the review's time and memory depend on it).
func TestRenderIsBounded(t *testing.T) {
	dir := writeDir(t, map[string]string{
		"chain.toml":        "[[steps]]\nid = \"answer\"\nkind = \"llm\"\nprompt = \"prompts/answer.md\"\n",
		"prompts/answer.md": "{{.context.question}}{{range 300000}}long line{{end}}",
	})
	ch, err := Load(dir)
	require.NoError(t, err)
	err = ch.DryRun(dataset.Case{CaseID: "c1", Context: map[string]any{"question": "q"}})
	require.ErrorContains(t, err, "passes 1048576 bytes")
}
