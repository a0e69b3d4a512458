// Package looptest builds workspaces for tests of the optimization loop: the
// capitals example tenant, sealed into a private store, its model pointed at
// the chat-completions test double (engine/provider/fakellm) playing a model
// that knows every capital but answers in a full sentence unless a prompt
// tells it to give only the city name. Each case carries a unique marker in
// its question and expected values, so a test can tell held-out content
// (which must never leave the server) from train content.
package looptest

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
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/engine/tenant"
	"github.com/fapo-dev/fapo/tenants"
)

// Tenant is the name of the fixture tenant.
const Tenant = "capitals"

// BarePhrase in a prompt makes the scripted model answer with the bare city.
const BarePhrase = "only the city name"

// UnsurePhrase in a prompt makes the scripted model answer with the bare
// city only for the countries whose name has an even number of letters,
// and "I do not know." for the rest: a variant that truly scores about
// half of what BarePhrase does.
const UnsurePhrase = "only when you are sure"

// Fixture is a sealed workspace and its model double.
type Fixture struct {
	Name string // the tenant's name (Tenant or Tickets)
	Dir  string // workspace (holds tenants/<Name>)
	Home string // sealed store
	LLM  *fakellm.Server
	// HeldOutMarkers are strings found only in validation and test cases
	// (ids and markers); TrainMarkers only in train cases.
	HeldOutMarkers []string
	TrainMarkers   []string
	// HeldOutQuestions are the questions of held-out cases, for tests of
	// the leakage check.
	HeldOutQuestions []string
}

var questionRe = regexp.MustCompile(`What is the capital of ([^?]+)\?`)

// New builds the fixture. Edit, when given, may change tenant.toml text
// before sealing (budgets, levels); opts configure the model double (e.g.
// fakellm.WithLatency for cancellation tests).
func New(t testing.TB, edit func(tenantTOML string) string, opts ...fakellm.Option) *Fixture {
	t.Helper()
	exFS, source, err := tenants.Example(Tenant)
	require.NoError(t, err)
	f := &Fixture{Name: Tenant, Dir: t.TempDir(), Home: t.TempDir()}
	tdir := f.TenantDir()
	require.NoError(t, os.CopyFS(tdir, exFS))

	capitals := map[string]string{}
	var marked bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(source))
	for sc.Scan() {
		var c map[string]any
		require.NoError(t, json.Unmarshal(sc.Bytes(), &c))
		id := c["case_id"].(string)
		ctx := c["context"].(map[string]any)
		q := ctx["question"].(string)
		exp := c["expected"].(map[string]any)
		if m := questionRe.FindStringSubmatch(q); m != nil {
			capitals[strings.TrimSpace(m[1])] = exp["answer"].(string)
		}
		ctx["question"] = q + " (ref MARK-" + id + ")"
		exp["note"] = "NOTE-" + id
		b, err := json.Marshal(c)
		require.NoError(t, err)
		marked.Write(b)
		marked.WriteByte('\n')
	}
	// The source stays outside the workspace, like a user's would.
	src := filepath.Join(t.TempDir(), "capitals.jsonl")
	require.NoError(t, os.WriteFile(src, marked.Bytes(), 0o600))

	tomlPath := filepath.Join(tdir, "tenant.toml")
	b, err := os.ReadFile(tomlPath)
	require.NoError(t, err)
	text := string(b)
	f.LLM = fakellm.New(append([]fakellm.Option{fakellm.WithDefault(func(r fakellm.Request) fakellm.Reply {
		return answer(r, capitals)
	})}, opts...)...)
	t.Cleanup(f.LLM.Close)
	text = strings.Replace(text, `provider = "openai"`, fmt.Sprintf("provider = \"openai_compatible\"\nbase_url = %q", f.LLM.URL()), 1)
	text = strings.Replace(text, `api_key_env = "OPENAI_API_KEY"`, `api_key_env = ""`, 1) // the double needs no key
	if edit != nil {
		text = edit(text)
	}
	require.NoError(t, os.WriteFile(tomlPath, []byte(text), 0o644))

	// Sealed as fapo seal does: the split follows [data] and the frozen
	// files are pinned in the same manifest.
	store := dataset.OpenStore(f.Home)
	_, _, err = tenant.Seal(context.Background(), store, tdir, dataset.SealRequest{Source: src}, func(string) string { return "" })
	require.NoError(t, err)
	for _, split := range []dataset.Split{dataset.Validation, dataset.Test} {
		require.NoError(t, store.ReadSplit(context.Background(), Tenant, split, func(c dataset.Case) error {
			f.HeldOutMarkers = append(f.HeldOutMarkers, "MARK-"+c.CaseID, "NOTE-"+c.CaseID, c.CaseID)
			f.HeldOutQuestions = append(f.HeldOutQuestions, c.Context["question"].(string))
			return nil
		}))
	}
	require.NoError(t, dataset.ReadFile(filepath.Join(tdir, "data", "train.jsonl"), func(_ int, c dataset.Case) error {
		f.TrainMarkers = append(f.TrainMarkers, "MARK-"+c.CaseID)
		return nil
	}))
	require.NotEmpty(t, f.HeldOutMarkers)
	return f
}

// TenantDir is the fixture tenant's directory.
func (f *Fixture) TenantDir() string { return filepath.Join(f.Dir, "tenants", f.tenant()) }

func (f *Fixture) tenant() string {
	if f.Name == "" {
		return Tenant
	}
	return f.Name
}

// answer plays the model: it knows every capital, and says it in a sentence
// unless told to give only the city name.
func answer(r fakellm.Request, capitals map[string]string) fakellm.Reply {
	all := ""
	for _, m := range r.Messages {
		all += m.Content + "\n"
	}
	m := questionRe.FindStringSubmatch(all)
	if m == nil {
		return fakellm.Reply{Content: "I do not know."}
	}
	country := strings.TrimSpace(m[1])
	city, ok := capitals[country]
	if !ok {
		return fakellm.Reply{Content: "I do not know."}
	}
	if strings.Contains(strings.ToLower(all), UnsurePhrase) {
		if len(country)%2 == 0 {
			return fakellm.Reply{Content: city}
		}
		return fakellm.Reply{Content: "I do not know."}
	}
	if strings.Contains(strings.ToLower(all), BarePhrase) {
		return fakellm.Reply{Content: city}
	}
	return fakellm.Reply{Content: fmt.Sprintf("The capital of %s is %s.", country, city)}
}

// LeakedMarkers returns the held-out markers found in text.
func (f *Fixture) LeakedMarkers(text string) []string {
	var out []string
	for _, m := range f.HeldOutMarkers {
		if strings.Contains(text, m) {
			out = append(out, m)
		}
	}
	return out
}

// HeldOutRuns are the ids of the validation runs the journal names: the
// journal mirror is in the workspace, so an agent knows them too.
func (f *Fixture) HeldOutRuns(t testing.TB) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.TenantDir(), "journal.jsonl"))
	require.NoError(t, err)
	var out []string
	for _, line := range bytes.Split(b, []byte("\n")) {
		var e struct {
			Data struct {
				Split string `json:"split"`
				Run   string `json:"run"`
			} `json:"data"`
		}
		if json.Unmarshal(line, &e) == nil && e.Data.Split == "validation" && e.Data.Run != "" {
			out = append(out, e.Data.Run)
		}
	}
	return out
}

// HeldOutRunDir is where the sealed store keeps held-out run id.
func (f *Fixture) HeldOutRunDir(id string) string {
	return filepath.Join(f.Home, "tenants", f.tenant(), "runs", id)
}

// PlantRunLink does what an agent with file tools can: it links
// tenants/capitals/runs/<id> to the sealed store's held-out run id.
func (f *Fixture) PlantRunLink(t testing.TB, id string) {
	t.Helper()
	runs := filepath.Join(f.TenantDir(), "runs")
	require.NoError(t, os.MkdirAll(runs, 0o755))
	require.NoError(t, os.Symlink(f.HeldOutRunDir(id), filepath.Join(runs, id)))
}

// PlantRunCopy copies the train run runID under a fresh id, rewriting the
// id inside, as an agent with file tools could; it returns the new id.
// Only the server's run index tells the copy apart.
func (f *Fixture) PlantRunCopy(t testing.TB, runID string) string {
	t.Helper()
	planted := "r20300101T000000Z-abcdef"
	src := filepath.Join(f.TenantDir(), "runs", runID)
	dst := filepath.Join(f.TenantDir(), "runs", planted)
	require.NoError(t, os.MkdirAll(dst, 0o755))
	for _, name := range []string{"summary.json", "cases.jsonl"} {
		b, err := os.ReadFile(filepath.Join(src, name))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dst, name), bytes.ReplaceAll(b, []byte(runID), []byte(planted)), 0o644))
	}
	return planted
}

// Capital is one held-out case's country and capital, as an agent that
// read around the server would have them: the material of answer tables.
type Capital struct{ ID, Country, City string }

// HeldOutCapitals reads the held-out cases from the sealed store.
func (f *Fixture) HeldOutCapitals(t testing.TB) []Capital {
	t.Helper()
	var out []Capital
	store := dataset.OpenStore(f.Home)
	for _, split := range []dataset.Split{dataset.Validation, dataset.Test} {
		require.NoError(t, store.ReadSplit(context.Background(), Tenant, split, func(c dataset.Case) error {
			m := questionRe.FindStringSubmatch(c.Context["question"].(string))
			require.NotNil(t, m, c.CaseID)
			out = append(out, Capital{ID: c.CaseID, Country: strings.TrimSpace(m[1]), City: c.Expected["answer"].(string)})
			return nil
		}))
	}
	require.NotEmpty(t, out)
	return out
}

// BackdateSeal makes the fixture's seal look like an earlier fapo's, made
// before any state database a test opens: the manifest's creation (and pin)
// times move back by d. A workspace journal is imported only for such a
// tenant.
func (f *Fixture) BackdateSeal(t testing.TB, d time.Duration) {
	t.Helper()
	p := dataset.OpenStore(f.Home).ManifestPath(Tenant)
	raw, err := os.ReadFile(p)
	require.NoError(t, err)
	var m dataset.Manifest
	require.NoError(t, json.Unmarshal(raw, &m))
	m.CreatedAt, m.PinnedAt = m.CreatedAt.Add(-d), m.PinnedAt.Add(-d)
	raw, err = json.MarshalIndent(m, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(p, append(raw, '\n'), 0o600))
}
