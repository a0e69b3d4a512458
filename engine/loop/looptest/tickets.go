package looptest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/engine/tenant"
)

// Tickets is the name of the two-step fixture tenant.
const Tickets = "tickets"

// LabelOnlyPhrase in the classify prompt makes the scripted model answer
// every ticket with the bare label.
const LabelOnlyPhrase = "only the label"

// TicketsChain is the tickets tenant's chain.toml: summarize, then
// classify the summary. Its summaries are cut off at 24 tokens.
const TicketsChain = `# chain.toml — two steps: summarize the ticket, then classify the summary.
output = "classify"

[[steps]]
id = "summarize"
kind = "llm"
prompt = "prompts/summarize.md"
[steps.params]
temperature = 0.0   # deterministic summaries
max_tokens = 24     # short summaries: long tickets get cut off

[[steps]]
id = "classify"
kind = "llm"
prompt = "prompts/classify.md"
[steps.params]
temperature = 0.0
max_tokens = 16
`

// TicketsSummarizePrompt and TicketsClassifyPrompt are the baseline prompts.
const (
	TicketsSummarizePrompt = "Summarize the support ticket in one sentence.\n\nTicket: {{.context.ticket}}\n"
	TicketsClassifyPrompt  = "Classify the support ticket summary as account, billing, bug or feature. Answer with the label.\n\nSummary: {{.steps.summarize.output}}\n"
)

const ticketsTOML = `# tenant.toml — support tickets: summarize, then classify into one of four labels.
name = "tickets"
description = "Support tickets, summarized then classified (account, billing, bug, feature)."
task_type = "classification"

[data]
train = 0.6
validation = 0.2
test = 0.2
seed = 42
stratify = "metadata.stratum"   # every split gets its share of each label and length

[model]
provider = "openai_compatible"
base_url = %q
name = "test-model"
api_key_env = ""
concurrency = 4
timeout_seconds = 30
max_retries = 1

[scorer]
kind = "exact_match"
field = "label"
normalize = ["strip", "lower"]

[target]
metric = "composite_score"
min = 95.0

[budget]
max_variants = 6
max_validation_evals = 6

[review]
max_prompt_chars = 20000
leakage_ngram = 8

[escalation]
levels = ["prompt", "parameter", "structural"]
patience = 2

[acceptance]
rule = "improves"
bootstrap = 2000
seed = 7
`

// ticketKeywords give each label the sentences a ticket ends with; the
// scripted model classifies by finding one in the summary.
var ticketKeywords = map[string][]string{
	"account": {"I cannot log in since I reset my password.", "My account is locked after three attempts.", "The login page rejects my new password.", "I never got the email to verify my account.", "Two factor codes for my account do not arrive."},
	"billing": {"The last invoice charged me twice.", "I was billed for a plan I cancelled.", "My invoice shows the wrong tax rate.", "The refund for my last payment never came.", "My card was charged before the trial ended."},
	"bug":     {"The app crashes when I open the settings page.", "Exported reports come out empty.", "The search box freezes the whole window.", "Uploads stop at ninety percent every time.", "The mobile app shows a blank screen on start."},
	"feature": {"Please add a dark mode to the dashboard.", "It would help to export charts as images.", "Could you support single sign on for teams?", "We would love a calendar view of tasks.", "Please let us schedule reports by email."},
}

// fillerWords make each ticket's text its own: seal groups near-duplicate
// inputs (shared word 5-grams), and tickets that differed only in their
// last sentence would all land in one split.
var fillerWords = strings.Fields(`hello team customer years usually works well today something went wrong again
after update morning evening office laptop phone browser network colleague manager project deadline meeting
weekend holiday travel client report number screen button window message email support reply waiting patient
thanks regards quickly slowly often rarely always never maybe certainly actually really simply basically
yesterday tomorrow monday friday spring autumn winter summer coffee lunch desk chair printer keyboard mouse`)

func fillerText(seed, words int) string {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x71c4e75))
	out := make([]string, words)
	for i := range out {
		out[i] = fillerWords[rng.IntN(len(fillerWords))]
	}
	return strings.Join(out, " ")
}

var ticketLabels = []string{"account", "billing", "bug", "feature"}

// NewTickets builds the two-step fixture: 60 support tickets (24 short,
// 36 long, each with words of its own) sealed into a private store, and
// the model double. The model summarizes by repeating the ticket, cut off
// where max_tokens ends it, so a long ticket's summary loses the sentence
// that names its label (truncation@summarize); it classifies by that
// sentence, answering account tickets as "This ticket is about account."
// unless the prompt asks for only the label (format@classify). Fixing the
// first with max_tokens and the second with the prompt reaches 100. Opts
// configure the model double further (e.g. a fault rule).
func NewTickets(t testing.TB, edit func(tenantTOML string) string, opts ...fakellm.Option) *Fixture {
	t.Helper()
	f := &Fixture{Dir: t.TempDir(), Home: t.TempDir(), Name: Tickets}
	f.LLM = fakellm.New(append([]fakellm.Option{fakellm.WithDefault(ticketModel)}, opts...)...)
	t.Cleanup(f.LLM.Close)
	tdir := f.TenantDir()
	write := func(rel, text string) {
		p := filepath.Join(tdir, filepath.FromSlash(rel))
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	}
	text := fmt.Sprintf(ticketsTOML, f.LLM.URL())
	if edit != nil {
		text = edit(text)
	}
	write("tenant.toml", text)
	write("chain.toml", TicketsChain)
	write("prompts/summarize.md", TicketsSummarizePrompt)
	write("prompts/classify.md", TicketsClassifyPrompt)

	var src strings.Builder
	for i := range 60 {
		label := ticketLabels[i%4]
		id := fmt.Sprintf("tk-%03d", i)
		// A summary is "The customer says: " and the ticket, and the model
		// double cuts a completion at max_tokens×4 characters: at 24 a
		// short ticket (two words and the sentence) fits, a long one (16
		// words first) loses its sentence; at 64 both fit.
		body := fillerText(i, 2) + ". " + ticketKeywords[label][(i/4)%5]
		length := "short"
		if i%5 >= 2 { // 3 in 5 tickets are long
			length = "long"
			body = fillerText(i, 16) + ". " + ticketKeywords[label][(i/4)%5]
		}
		c := map[string]any{"case_id": id, "task_type": "classification",
			"context":  map[string]any{"ticket": body, "ref": "MARK-" + id},
			"expected": map[string]any{"label": label}, "metadata": map[string]any{"length": length, "stratum": label + "/" + length}}
		b, err := json.Marshal(c)
		require.NoError(t, err)
		src.Write(b)
		src.WriteByte('\n')
	}
	srcPath := filepath.Join(t.TempDir(), "tickets.jsonl")
	require.NoError(t, os.WriteFile(srcPath, []byte(src.String()), 0o600))
	store := dataset.OpenStore(f.Home)
	_, _, err := tenant.Seal(context.Background(), store, tdir, dataset.SealRequest{Source: srcPath}, func(string) string { return "" })
	require.NoError(t, err)
	for _, split := range []dataset.Split{dataset.Validation, dataset.Test} {
		require.NoError(t, store.ReadSplit(context.Background(), Tickets, split, func(c dataset.Case) error {
			f.HeldOutMarkers = append(f.HeldOutMarkers, "MARK-"+c.CaseID, c.CaseID)
			return nil
		}))
	}
	return f
}

var (
	ticketRe  = regexp.MustCompile(`(?s)Ticket: (.*)`)
	summaryRe = regexp.MustCompile(`(?s)Summary: (.*)`)
)

// ticketModel plays the tenant's model (see NewTickets).
func ticketModel(r fakellm.Request) fakellm.Reply {
	user := r.LastUser()
	if m := ticketRe.FindStringSubmatch(user); m != nil && strings.Contains(user, "Summarize") {
		return fakellm.Reply{Content: "The customer says: " + strings.TrimSpace(m[1])}
	}
	m := summaryRe.FindStringSubmatch(user)
	if m == nil {
		return fakellm.Reply{Content: "I do not know."}
	}
	label := "unknown"
	for l, kws := range ticketKeywords {
		for _, kw := range kws {
			if strings.Contains(m[1], kw) {
				label = l
			}
		}
	}
	if label == "account" && !strings.Contains(strings.ToLower(user), LabelOnlyPhrase) {
		return fakellm.Reply{Content: "This ticket is about account."}
	}
	return fakellm.Reply{Content: label}
}
