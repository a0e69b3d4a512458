package review

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRenderHits: what counts as a case's answer placed where it is the
// answer, and what legitimately puts answers in prompts.
func TestRenderHits(t *testing.T) {
	labels := []string{"billing", "refund", "shipping", "login"}
	type kase struct{ input, label string }
	var cases []kase
	for i := range 24 {
		cases = append(cases, kase{fmt.Sprintf("ticket %c%c%c about my order number %d", 'a'+i, 'k'+i%7, 'q'+i%5, i), labels[i%4]})
	}
	render := func(prompt func(i int, c kase) string) []RenderedCase {
		out := make([]RenderedCase, len(cases))
		for i, c := range cases {
			out[i] = RenderedCase{Expected: []string{c.label}, Input: c.input, Prompts: prompt(i, c)}
		}
		return out
	}
	var table strings.Builder
	for _, c := range cases {
		table.WriteString(strings.Fields(c.input)[1] + " => " + c.label + "\n")
	}
	tests := []struct {
		name   string
		prompt func(i int, c kase) string
		want   int
	}{
		{"label list shown to every case", func(_ int, c kase) string {
			return "Classify into one of: " + strings.Join(labels, ", ") + ".\n" + c.input
		}, 0},
		{"label descriptions", func(_ int, c kase) string {
			return "billing: charges on my order; refund: money back for an order; shipping: where is my order; login: cannot sign in\n" + c.input
		}, 0},
		{"answer held by the input", func(_ int, c kase) string {
			return "Passage: the label is " + c.label + ".\n" + c.input
		}, 0},
		{"rendered only for its own case", func(_ int, c kase) string {
			return "Hint: " + c.label + "\n" + c.input
		}, 24},
		{"input-keyed table shown to all", func(_ int, c kase) string {
			return table.String() + c.input
		}, 24},
	}
	for _, tt := range tests {
		rendered := render(tt.prompt)
		if tt.name == "answer held by the input" {
			for i := range rendered {
				rendered[i].Input += " the label is " + cases[i].label
			}
		}
		require.Equal(t, tt.want, renderHits(rendered, nil), tt.name)
	}
	// A fragment that other cases share (train included) keys nothing.
	shared := render(func(_ int, c kase) string { return table.String() + c.input })
	var train []string
	for _, c := range cases {
		train = append(train, "also "+strings.Fields(c.input)[1])
	}
	require.Equal(t, 0, renderHits(shared[:0], train))
	require.Equal(t, 0, renderHits(shared, train), "keys every train case has too are vocabulary, not identities")
}
