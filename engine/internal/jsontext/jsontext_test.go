package jsontext

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestUnfence(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"a":1}`, `{"a":1}`},
		{"  {\"a\":1}\n", `{"a":1}`},
		{"```json\n{\"a\":1}\n```", `{"a":1}`},
		{"```\n[1,2]\n```", `[1,2]`},
		{"```JSON\n{\"a\":1}```", `{"a":1}`},
		{"```json {\"a\":1}```", `{"a":1}`},
		{"```{\"a\":1}```", `{"a":1}`},
		// Prose around the fence is left alone: strict callers refuse it.
		{"Sure:\n```json\n{}\n```", "Sure:\n```json\n{}\n```"},
		{"```", "```"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, Unfence(tt.in), "%q", tt.in)
	}
}

func TestFirstFence(t *testing.T) {
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"Here you go:\n```json\n{\"a\":1}\n```\nHope it helps", `{"a":1}`, true},
		{"```\n[1]\n```", `[1]`, true},
		{"```json\n{\"a\":1}", `{"a":1}`, true},
		{`{"a":1}`, "", false},
	}
	for _, tt := range tests {
		got, ok := FirstFence(tt.in)
		require.Equal(t, tt.ok, ok, "%q", tt.in)
		require.Equal(t, tt.want, got, "%q", tt.in)
	}
}

func TestKind(t *testing.T) {
	var v []any
	require.NoError(t, json.Unmarshal([]byte(`[{}, [], "s", 1.5, true, null]`), &v))
	var got []string
	for _, e := range v {
		got = append(got, Kind(e))
	}
	require.Equal(t, []string{"an object", "a list", "a string", "a number", "a boolean", "null"}, got)
}

func TestLookup(t *testing.T) {
	var doc any
	require.NoError(t, json.Unmarshal([]byte(`{"a":{"b":[10,{"c":"deep"}]},"n":null}`), &doc))
	tests := []struct {
		path    string
		want    any
		wantErr string
	}{
		{"", doc, ""},
		{"a.b.0", 10.0, ""},
		{"a.b.1.c", "deep", ""},
		{"n", nil, ""},
		{"a.x", nil, `no key "x"`},
		{"a.b.2", nil, `"2" is not an index of a 2-element list`},
		{"a.b.-1", nil, `"-1" is not an index`},
		{"a.b.first", nil, `"first" is not an index`},
		{"a.b.0.c", nil, `cannot look up "c" in a number`},
		{"n.x", nil, `cannot look up "x" in null`},
	}
	for _, tt := range tests {
		got, err := Lookup(doc, tt.path)
		if tt.wantErr != "" {
			require.ErrorContains(t, err, tt.wantErr, tt.path)
			continue
		}
		require.NoError(t, err, tt.path)
		require.Equal(t, tt.want, got, tt.path)
	}
}
