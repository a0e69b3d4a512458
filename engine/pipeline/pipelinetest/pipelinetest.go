// Package pipelinetest builds workspaces for tests of external pipelines:
// the hotpotqa-python example tenant (its Python program and its embedded
// dataset) sealed into a private store, its model pointed at the
// chat-completions test double (engine/provider/fakellm) playing a model
// that reads: the reason step reports the supporting facts only when the
// passages it was given hold them, the answer step answers only from facts
// it was given, in a sentence unless the prompt asks for BarePhrase, and
// the reflect step (the program's structural switch) turns a sentence
// into the bare answer. So retrieval misses are real failures an oracle
// replay of retrieve repairs, and a prompt change can be seen to help.
package pipelinetest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/engine/tenant"
	"github.com/fapo-dev/fapo/tenants"
)

// Tenant is the name of the fixture tenant.
const Tenant = "hotpotqa-python"

// BarePhrase in the answer prompt makes the scripted model answer with the
// bare entity instead of a sentence.
const BarePhrase = "only the name"

// Unknown is what the scripted model answers without the facts.
const Unknown = "I do not know"

// Fixture is a sealed workspace and its model double.
type Fixture struct {
	Dir  string // workspace (holds tenants/hotpotqa-python)
	Home string // sealed store
	LLM  *fakellm.Server
}

// TenantDir is the tenant's directory in the workspace.
func (f *Fixture) TenantDir() string { return filepath.Join(f.Dir, "tenants", Tenant) }

// Env is the environment of a fapo command run on the fixture.
func (f *Fixture) Env() map[string]string { return map[string]string{"FAPO_HOME": f.Home} }

// truth is what the scripted model knows of one question.
type truth struct {
	answer string
	facts  []string // the supporting sentences, all needed
}

var questionRe = regexp.MustCompile(`Question: ([^\n]+\?)`)

// New builds the fixture; edit, when given, may change tenant.toml text
// before sealing.
func New(t testing.TB, edit func(tenantTOML string) string) *Fixture {
	t.Helper()
	exFS, source, err := tenants.Example(Tenant)
	require.NoError(t, err)
	f := &Fixture{Dir: t.TempDir(), Home: t.TempDir()}
	tdir := f.TenantDir()
	require.NoError(t, os.CopyFS(tdir, exFS))

	known := map[string]truth{}
	sc := bufio.NewScanner(bytes.NewReader(source))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var c dataset.Case
		require.NoError(t, json.Unmarshal(sc.Bytes(), &c))
		known[c.Context["question"].(string)] = truthOf(t, c)
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, known)

	f.LLM = fakellm.New(fakellm.WithDefault(func(r fakellm.Request) fakellm.Reply { return reply(r, known) }))
	t.Cleanup(f.LLM.Close)
	tomlPath := filepath.Join(tdir, "tenant.toml")
	b, err := os.ReadFile(tomlPath)
	require.NoError(t, err)
	text := strings.Replace(string(b), `provider = "openai"`, fmt.Sprintf("provider = \"openai_compatible\"\nbase_url = %q", f.LLM.URL()), 1)
	text = strings.Replace(text, `api_key_env = "OPENAI_API_KEY"`, `api_key_env = ""`, 1) // the double needs no key
	if edit != nil {
		text = edit(text)
	}
	require.NoError(t, os.WriteFile(tomlPath, []byte(text), 0o644))
	// The source stays outside the workspace, like a user's would.
	src := filepath.Join(t.TempDir(), "cases.jsonl")
	require.NoError(t, os.WriteFile(src, source, 0o600))
	_, _, err = tenant.Seal(context.Background(), dataset.OpenStore(f.Home), tdir, dataset.SealRequest{Source: src}, func(string) string { return "" })
	require.NoError(t, err)
	return f
}

// truthOf reads the answer and the supporting sentences of a case.
func truthOf(t testing.TB, c dataset.Case) truth {
	tr := truth{answer: c.Expected["answer"].(string)}
	paras := map[string][]any{}
	for _, p := range c.Context["paragraphs"].([]any) {
		m := p.(map[string]any)
		paras[m["title"].(string)] = m["sentences"].([]any)
	}
	for _, sf := range c.Expected["supporting_facts"].([]any) {
		m := sf.(map[string]any)
		sents := paras[m["title"].(string)]
		i := int(m["sent_id"].(float64))
		require.Less(t, i, len(sents), c.CaseID)
		tr.facts = append(tr.facts, strings.TrimSpace(sents[i].(string)))
	}
	return tr
}

func reply(r fakellm.Request, known map[string]truth) fakellm.Reply {
	var all strings.Builder
	for _, m := range r.Messages {
		all.WriteString(m.Content + "\n")
	}
	text := all.String()
	m := questionRe.FindStringSubmatch(text)
	if m == nil {
		return fakellm.Reply{Content: Unknown + "."}
	}
	k, ok := known[m[1]]
	if !ok {
		return fakellm.Reply{Content: Unknown + "."}
	}
	has := true
	for _, f := range k.facts {
		has = has && strings.Contains(text, f)
	}
	switch {
	case strings.Contains(text, "Passages:"): // reason
		if !has {
			return fakellm.Reply{Content: "The passages do not say."}
		}
		return fakellm.Reply{Content: strings.Join(k.facts, "\n")}
	case strings.Contains(text, "Draft:"): // reflect
		if strings.Contains(text, k.answer) {
			return fakellm.Reply{Content: "Answer: " + k.answer}
		}
		return fakellm.Reply{Content: "Answer: " + Unknown}
	case !has:
		return fakellm.Reply{Content: "Answer: " + Unknown}
	case strings.Contains(text, BarePhrase):
		return fakellm.Reply{Content: "Answer: " + k.answer}
	}
	return fakellm.Reply{Content: "Answer: I believe it was " + k.answer + ", going by the facts"}
}
