package importers

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset/datasettest"

	"github.com/fapo-dev/fapo/engine/dataset"
)

// officialFormat rebuilds each shared case as a record of the benchmark's
// official file, the way the benchmark ships it.
func officialFormat(t *testing.T, benchmark string, cases []dataset.Case) []byte {
	var buf bytes.Buffer
	pairs := func(v any, inner string) [][]any {
		var out [][]any
		for _, x := range v.([]any) {
			m := x.(map[string]any)
			out = append(out, []any{m["title"], m[inner]})
		}
		return out
	}
	switch benchmark {
	case "hotpotqa", "hover":
		var recs []map[string]any
		for _, c := range cases {
			rec := map[string]any{"supporting_facts": pairs(c.Expected["supporting_facts"], "sent_id")}
			if benchmark == "hotpotqa" {
				rec["_id"] = c.Metadata["hotpot_id"]
				rec["question"], rec["answer"] = c.Context["question"], c.Expected["answer"]
				rec["type"], rec["level"] = c.Metadata["type"], c.Metadata["level"]
				rec["context"] = pairs(c.Context["paragraphs"], "sentences")
			} else {
				rec["uid"], rec["claim"], rec["label"] = c.Metadata["uid"], c.Context["claim"], c.Expected["label"]
				rec["num_hops"], rec["hpqa_id"] = c.Metadata["num_hops"], c.Metadata["hpqa_id"]
			}
			recs = append(recs, rec)
		}
		require.NoError(t, json.NewEncoder(&buf).Encode(recs))
	case "ifeval":
		for _, c := range cases {
			require.NoError(t, json.NewEncoder(&buf).Encode(map[string]any{"key": c.Metadata["key"], "prompt": c.Context["prompt"],
				"instruction_id_list": c.Expected["instruction_id_list"], "kwargs": c.Expected["kwargs"]}))
		}
	case "gsm8k":
		for _, c := range cases {
			require.NoError(t, json.NewEncoder(&buf).Encode(map[string]any{"question": c.Context["question"], "answer": c.Expected["solution"]}))
		}
	case "banking77":
		w := csv.NewWriter(&buf)
		require.NoError(t, w.Write([]string{"text", "category"}))
		for _, c := range cases {
			require.NoError(t, w.Write([]string{c.Context["text"].(string), c.Expected["label"].(string)}))
		}
		w.Flush()
	}
	return buf.Bytes()
}

// TestRoundTripSharedSubsets imports each benchmark's official format
// rebuilt from the shared subset and gets the shared cases back.
func TestRoundTripSharedSubsets(t *testing.T) {
	for _, b := range Benchmarks {
		t.Run(b, func(t *testing.T) {
			want := sharedCases(t, b+".jsonl")
			src := map[string]string{"hotpotqa": "dev.json", "hover": "hover_dev_release_v1.1.json", "ifeval": "input_data.jsonl", "banking77": "test.csv", "gsm8k": "test.jsonl"}[b]
			got, err := Import(b, bytes.NewReader(officialFormat(t, b, want)), src)
			require.NoError(t, err)
			require.Len(t, got, len(want))
			// The round trip must survive JSON like a sealed file does.
			var buf bytes.Buffer
			require.NoError(t, WriteJSONL(&buf, got))
			p := filepath.Join(t.TempDir(), "cases.jsonl")
			require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o600))
			got, err = dataset.ReadAll(p)
			require.NoError(t, err)
			for i := range want {
				w, g := want[i], got[i]
				if b != "banking77" {
					// banking77 ids number rows of the full test.csv, which the
					// subset does not have.
					require.Equal(t, w.CaseID, g.CaseID)
				}
				require.Equal(t, w.TaskType, g.TaskType, w.CaseID)
				require.Equal(t, w.Expected, g.Expected, w.CaseID)
				if b == "banking77" {
					require.Equal(t, w.Context["text"], g.Context["text"])
					require.ElementsMatch(t, w.Context["labels"], g.Context["labels"])
				} else {
					require.Equal(t, w.Context, g.Context, w.CaseID)
				}
				require.Equal(t, src, g.Metadata["source"])
			}
		})
	}
}

func TestImportErrors(t *testing.T) {
	for _, tc := range []struct {
		benchmark, src, want string
	}{
		{"squad", "", `unknown benchmark "squad"`},
		{"hotpotqa", `{"_id": "x"}`, "want a JSON array of records"},
		{"hotpotqa", `[{"_id": "x", "question": "q", "context": [["t"]]}]`, "record 0: context[0]: want a [title, value] pair"},
		{"hotpotqa", `[{"question": "q"}]`, "missing _id or question"},
		{"hotpotqa", `[{"_id": "x", "question": "q", "context": [], "supporting_facts": [["t", "one"]]}]`, "supporting_facts[0]"},
		{"hover", `[{"uid": "u", "claim": "c", "label": "REFUTED"}]`, `label "REFUTED"`},
		{"hover", `[{"uid": "u"}]`, "missing uid or claim"},
		{"ifeval", `{"key": 1, "prompt": "p", "instruction_id_list": ["a"], "kwargs": []}`, "src:1: 1 instructions but 0 kwargs"},
		{"ifeval", "\n{\"prompt\": \"p\"}", "src:2: missing key or prompt"},
		{"ifeval", "{not json", "src:1"},
		{"banking77", "query,intent\na,b\n", "no text and category columns"},
		{"banking77", "text,category\n,b\n", "src:2: empty text or category"},
		{"gsm8k", `{"question": "q", "answer": "no marker"}`, `no "#### N" final line`},
		{"gsm8k", `{"question": "q", "answer": "#### many"}`, `final answer "many" is not a number`},
		{"gsm8k", `{"answer": "#### 1"}`, "missing question"},
	} {
		_, err := Import(tc.benchmark, strings.NewReader(tc.src), "src")
		require.ErrorContains(t, err, tc.want, tc.benchmark)
	}
}

func TestGSM8KAnswerAndNulls(t *testing.T) {
	a, err := GSM8KAnswer("She pays 1,000 + 200.\n#### 1,200")
	require.NoError(t, err)
	require.Equal(t, "1200", a)
	cases, err := Import("ifeval", strings.NewReader(`{"key": 7, "prompt": "p", "instruction_id_list": ["x:y"], "kwargs": [{"num_words": 3, "relation": null}]}`), "in.jsonl")
	require.NoError(t, err)
	require.Equal(t, []any{map[string]any{"num_words": float64(3)}}, cases[0].Expected["kwargs"])
	require.Equal(t, "ifeval-7", cases[0].CaseID)
}

func sharedCases(t *testing.T, name string) []dataset.Case {
	t.Helper()
	cases, err := dataset.ReadAll(datasettest.SharedFile(t, name))
	require.NoError(t, err)
	return cases
}
