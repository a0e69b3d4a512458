package provider

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// reflectKey is the cache key as encoding/json gives it for keyLayout, the
// definition the hand-written encoder must match byte for byte: entries
// stored under the old key stay hits.
func reflectKey(t testing.TB, ns CacheNamespace, req Request, repeat int) []byte {
	schema, err := canonicalJSON(req.JSONSchema)
	require.NoError(t, err)
	tools := make([]ToolDef, len(req.Tools))
	for i, tl := range req.Tools {
		p, err := canonicalJSON(tl.Parameters)
		require.NoError(t, err)
		tools[i] = ToolDef{Name: tl.Name, Description: tl.Description, Parameters: p}
	}
	b, err := json.Marshal(keyLayout{1, ns.Provider, ns.BaseURL, req.Model, req.Messages, req.Params, schema, tools, req.Sample, repeat})
	require.NoError(t, err)
	return b
}

func TestCacheKeyMatchesEncodingJSON(t *testing.T) {
	nasty := "a\"b\\c\n\r\t\b\f\x00\x1f<tag>&amp; é 日本 \u2028\u2029 \xff\xfe end 🙂"
	reqs := map[string]Request{
		"empty":         {},
		"plain":         {Model: "gpt-4o-mini", Messages: []Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hi"}}},
		"nasty strings": {Model: nasty, Messages: []Message{{Role: "user", Content: nasty, Name: nasty}}},
		"params": {Messages: []Message{}, Params: Params{Temperature: ptr(0.0), TopP: ptr(1e-7), MaxTokens: ptr(-3),
			Seed: ptr(42), Stop: []string{"\n\n", "</s>"}}},
		"big float": {Params: Params{Temperature: ptr(1e21), TopP: ptr(0.3333333333333333)}},
		"tool calls": {Messages: []Message{{Role: "assistant", ToolCalls: []ToolCall{{ID: "c1", Name: "f", Arguments: `{"a":1}`}}},
			{Role: "tool", Content: "42", ToolCallID: "c1"}}},
		"schema and tools": {JSONSchema: json.RawMessage(` {"b": [1, 2.50, "<x>"], "a": {"z": null, "y": true}} `),
			Tools: []ToolDef{{Name: "t", Description: "d&d", Parameters: json.RawMessage(`{"type": "object"}`)}, {Name: "u"}}},
		"sample": {Sample: 3, Params: Params{Stop: []string{}}},
	}
	for name, req := range reqs {
		for _, repeat := range []int{0, 1, 7} {
			t.Run(fmt.Sprint(name, "/repeat ", repeat), func(t *testing.T) {
				ns := CacheNamespace{Provider: "openai_compatible", BaseURL: "http://127.0.0.1:8000/v1?<&>"}
				want := reflectKey(t, ns, req, repeat)
				got, err := appendKeyJSON(nil, ns, req, repeat)
				require.NoError(t, err)
				require.Equal(t, string(want), string(got))
				sum := sha256.Sum256(want)
				k, err := cacheKey(ns, req, repeat)
				require.NoError(t, err)
				require.Equal(t, sum[:], k)
			})
		}
	}
	_, err := cacheKey(CacheNamespace{}, Request{Params: Params{Temperature: ptr(math.NaN())}}, 0)
	require.Error(t, err, "a NaN parameter is refused, as encoding/json refuses it")
}

func FuzzCacheKeyMatchesEncodingJSON(f *testing.F) {
	f.Add("user", "hi <b>", "m", 0.7, 3)
	f.Add("\xff", "\u2028\x01", "", 1e-9, -1)
	f.Fuzz(func(t *testing.T, role, content, model string, temp float64, sample int) {
		if math.IsNaN(temp) || math.IsInf(temp, 0) {
			return
		}
		req := Request{Model: model, Messages: []Message{{Role: role, Content: content, Name: content}},
			Params: Params{Temperature: &temp, Stop: []string{content}}, Sample: sample}
		got, err := appendKeyJSON(nil, CacheNamespace{Provider: role}, req, sample%3)
		require.NoError(t, err)
		require.Equal(t, string(reflectKey(t, CacheNamespace{Provider: role}, req, sample%3)), string(got))
	})
}
