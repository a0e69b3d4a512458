// Package importers converts public benchmarks from their official file
// formats into fapo's case format, so that `fapo import` can seal them:
// HotpotQA (JSON array), HoVer (JSON array), IFEval (input_data.jsonl),
// BANKING77 (CSV text,category) and GSM8K (JSONL with "#### N" answers).
// Each case records where it came from in metadata.source.
package importers

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/fapo-dev/fapo/engine/dataset"
)

// Benchmarks lists the benchmark names Import accepts.
var Benchmarks = []string{"banking77", "gsm8k", "hotpotqa", "hover", "ifeval"}

// TaskTypes is the task_type of each benchmark's cases.
var TaskTypes = map[string]string{
	"hotpotqa": "qa", "hover": "claim", "ifeval": "instruction", "banking77": "classification", "gsm8k": "math",
}

// Import reads one benchmark file from r; source names it (a path or URL)
// for metadata.source and for case ids that carry the file's split name
// (test.csv → banking77-test-0).
//
// A file that is already in fapo's case format is refused with
// ErrCaseFormat: it needs no conversion, only a seal.
func Import(benchmark string, r io.Reader, source string) ([]dataset.Case, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	if IsCaseFormat(data) {
		return nil, fmt.Errorf("%s: %w", source, ErrCaseFormat)
	}
	r = bytes.NewReader(data)
	switch benchmark {
	case "hotpotqa":
		return hotpotQA(r, source)
	case "hover":
		return hover(r, source)
	case "ifeval":
		return ifeval(r, source)
	case "banking77":
		return banking77(r, source)
	case "gsm8k":
		return gsm8k(r, source)
	}
	return nil, fmt.Errorf("unknown benchmark %q; use one of %s", benchmark, strings.Join(Benchmarks, ", "))
}

// ErrCaseFormat marks a source that already holds cases (case_id, context,
// expected): it is sealed as it is, not imported.
var ErrCaseFormat = errors.New("already in fapo's case format (case_id, context, expected), so there is nothing to convert")

// IsCaseFormat reports whether data's first record (a JSONL line, or the
// first element of a JSON array) is a fapo case rather than a benchmark
// record.
func IsCaseFormat(data []byte) bool {
	data = bytes.TrimSpace(data)
	var first json.RawMessage
	if bytes.HasPrefix(data, []byte("[")) {
		dec := json.NewDecoder(bytes.NewReader(data))
		if _, err := dec.Token(); err != nil || !dec.More() || dec.Decode(&first) != nil {
			return false
		}
	} else {
		line, _, _ := bytes.Cut(data, []byte("\n"))
		first = line
	}
	var rec map[string]json.RawMessage
	if json.Unmarshal(first, &rec) != nil {
		return false
	}
	for _, k := range []string{"case_id", "context", "expected"} {
		if _, ok := rec[k]; !ok {
			return false
		}
	}
	return true
}

// splitName is the file's base name without extensions: dev, test, train.
func splitName(source string) string {
	b := filepath.Base(source)
	if i := strings.IndexByte(b, '.'); i > 0 {
		b = b[:i]
	}
	return b
}

// jsonArray decodes a JSON array of records one at a time, so an error
// names the record.
func jsonArray[T any](r io.Reader, what string, fn func(i int, rec T) error) error {
	dec := json.NewDecoder(bufio.NewReader(r))
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("%s: not JSON: %w", what, err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fmt.Errorf("%s: want a JSON array of records (the official file format), got %v", what, tok)
	}
	for i := 0; dec.More(); i++ {
		var rec T
		if err := dec.Decode(&rec); err != nil {
			return fmt.Errorf("%s: record %d: %w", what, i, err)
		}
		if err := fn(i, rec); err != nil {
			return fmt.Errorf("%s: record %d: %w", what, i, err)
		}
	}
	return nil
}

// jsonLines decodes JSONL, skipping blank lines; errors name the line.
func jsonLines[T any](r io.Reader, what string, fn func(line int, rec T) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	n := 0
	for line := 1; sc.Scan(); line++ {
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var rec T
		if err := json.Unmarshal(b, &rec); err != nil {
			return fmt.Errorf("%s:%d: %w", what, line, err)
		}
		if err := fn(n, rec); err != nil {
			return fmt.Errorf("%s:%d: %w", what, line, err)
		}
		n++
	}
	return sc.Err()
}

type hotpotRecord struct {
	ID              string            `json:"_id"`
	Question        string            `json:"question"`
	Answer          string            `json:"answer"`
	Type            string            `json:"type"`
	Level           string            `json:"level"`
	Context         []json.RawMessage `json:"context"`
	SupportingFacts []json.RawMessage `json:"supporting_facts"`
}

// titleIndex decodes HotpotQA's [title, x] pairs.
func titleIndex[T any](raw json.RawMessage) (string, T, error) {
	var pair []json.RawMessage
	var zero T
	if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 {
		return "", zero, fmt.Errorf("want a [title, value] pair, got %s", truncate(string(raw)))
	}
	var title string
	var v T
	if err := json.Unmarshal(pair[0], &title); err != nil {
		return "", zero, fmt.Errorf("title: %w", err)
	}
	if err := json.Unmarshal(pair[1], &v); err != nil {
		return "", zero, fmt.Errorf("%s: %w", truncate(string(pair[1])), err)
	}
	return title, v, nil
}

func truncate(s string) string {
	if len(s) > 60 {
		return s[:60] + "…"
	}
	return s
}

func supportingFacts(raws []json.RawMessage) ([]any, error) {
	facts := make([]any, 0, len(raws))
	for j, f := range raws {
		title, sent, err := titleIndex[int](f)
		if err != nil {
			return nil, fmt.Errorf("supporting_facts[%d]: %w", j, err)
		}
		facts = append(facts, map[string]any{"title": title, "sent_id": float64(sent)})
	}
	return facts, nil
}

func hotpotQA(r io.Reader, source string) ([]dataset.Case, error) {
	var out []dataset.Case
	err := jsonArray(r, source, func(_ int, rec hotpotRecord) error {
		if rec.ID == "" || rec.Question == "" {
			return errors.New("missing _id or question; is this the HotpotQA JSON (hotpot_dev_distractor_v1.json)?")
		}
		paras := make([]any, 0, len(rec.Context))
		for j, p := range rec.Context {
			title, sents, err := titleIndex[[]string](p)
			if err != nil {
				return fmt.Errorf("context[%d]: %w", j, err)
			}
			ss := make([]any, len(sents))
			for k, s := range sents {
				ss[k] = s
			}
			paras = append(paras, map[string]any{"title": title, "sentences": ss})
		}
		facts, err := supportingFacts(rec.SupportingFacts)
		if err != nil {
			return err
		}
		meta := map[string]any{"source": source, "dataset": "HotpotQA", "hotpot_id": rec.ID}
		if rec.Type != "" {
			meta["type"] = rec.Type
		}
		if rec.Level != "" {
			meta["level"] = rec.Level
		}
		out = append(out, dataset.Case{
			CaseID:   "hotpotqa-" + rec.ID,
			TaskType: TaskTypes["hotpotqa"],
			Context:  map[string]any{"question": rec.Question, "paragraphs": paras},
			Expected: map[string]any{"answer": rec.Answer, "supporting_facts": facts},
			Metadata: meta,
		})
		return nil
	})
	return out, err
}

type hoverRecord struct {
	UID             string            `json:"uid"`
	Claim           string            `json:"claim"`
	Label           string            `json:"label"`
	NumHops         *int              `json:"num_hops"`
	HPQAID          string            `json:"hpqa_id"`
	SupportingFacts []json.RawMessage `json:"supporting_facts"`
}

func hover(r io.Reader, source string) ([]dataset.Case, error) {
	var out []dataset.Case
	err := jsonArray(r, source, func(_ int, rec hoverRecord) error {
		if rec.UID == "" || rec.Claim == "" {
			return errors.New("missing uid or claim; is this the HoVer JSON (hover_dev_release_v1.1.json)?")
		}
		if rec.Label != "SUPPORTED" && rec.Label != "NOT_SUPPORTED" {
			return fmt.Errorf("label %q; HoVer labels are SUPPORTED and NOT_SUPPORTED", rec.Label)
		}
		facts, err := supportingFacts(rec.SupportingFacts)
		if err != nil {
			return err
		}
		meta := map[string]any{"source": source, "dataset": "HoVer", "uid": rec.UID}
		if rec.NumHops != nil {
			meta["num_hops"] = float64(*rec.NumHops)
		}
		if rec.HPQAID != "" {
			meta["hpqa_id"] = rec.HPQAID
		}
		out = append(out, dataset.Case{
			CaseID:   "hover-" + rec.UID,
			TaskType: TaskTypes["hover"],
			Context:  map[string]any{"claim": rec.Claim},
			Expected: map[string]any{"label": rec.Label, "supporting_facts": facts},
			Metadata: meta,
		})
		return nil
	})
	return out, err
}

type ifevalRecord struct {
	Key               *int64           `json:"key"`
	Prompt            string           `json:"prompt"`
	InstructionIDList []string         `json:"instruction_id_list"`
	Kwargs            []map[string]any `json:"kwargs"`
}

func ifeval(r io.Reader, source string) ([]dataset.Case, error) {
	var out []dataset.Case
	err := jsonLines(r, source, func(_ int, rec ifevalRecord) error {
		if rec.Key == nil || rec.Prompt == "" {
			return errors.New("missing key or prompt; is this IFEval's input_data.jsonl?")
		}
		if len(rec.InstructionIDList) == 0 || len(rec.Kwargs) != len(rec.InstructionIDList) {
			return fmt.Errorf("%d instructions but %d kwargs; each instruction needs its kwargs object", len(rec.InstructionIDList), len(rec.Kwargs))
		}
		ids := make([]any, len(rec.InstructionIDList))
		kws := make([]any, len(rec.Kwargs))
		for i, id := range rec.InstructionIDList {
			ids[i] = id
			kw := map[string]any{}
			// Some copies list every argument with null for the unused ones.
			for k, v := range rec.Kwargs[i] {
				if v != nil {
					kw[k] = v
				}
			}
			kws[i] = kw
		}
		key := strconv.FormatInt(*rec.Key, 10)
		out = append(out, dataset.Case{
			CaseID:   "ifeval-" + key,
			TaskType: TaskTypes["ifeval"],
			Context:  map[string]any{"prompt": rec.Prompt},
			Expected: map[string]any{"instruction_id_list": ids, "kwargs": kws},
			Metadata: map[string]any{"source": source, "dataset": "IFEval", "key": float64(*rec.Key)},
		})
		return nil
	})
	return out, err
}

func banking77(r io.Reader, source string) ([]dataset.Case, error) {
	cr := csv.NewReader(r)
	header, err := cr.Read()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", source, err)
	}
	ti, ci := slices.Index(header, "text"), slices.Index(header, "category")
	if ti < 0 || ci < 0 {
		return nil, fmt.Errorf("%s:1: header %q has no text and category columns; is this BANKING77's train.csv or test.csv?", source, header)
	}
	type row struct{ text, label string }
	var rows []row
	var labels []string
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", source, err)
		}
		text, label := strings.TrimSpace(rec[ti]), strings.TrimSpace(rec[ci])
		if text == "" || label == "" {
			return nil, fmt.Errorf("%s:%d: empty text or category", source, line)
		}
		if !slices.Contains(labels, label) {
			labels = append(labels, label)
		}
		rows = append(rows, row{text, label})
	}
	ls := make([]any, len(labels))
	for i, l := range labels {
		ls[i] = l
	}
	split := splitName(source)
	out := make([]dataset.Case, len(rows))
	for i, rw := range rows {
		out[i] = dataset.Case{
			CaseID:   fmt.Sprintf("banking77-%s-%d", split, i),
			TaskType: TaskTypes["banking77"],
			Context:  map[string]any{"text": rw.text, "labels": ls},
			Expected: map[string]any{"label": rw.label},
			Metadata: map[string]any{"source": source, "dataset": "BANKING77", "row_index": float64(i)},
		}
	}
	return out, nil
}

type gsmRecord struct {
	Question string `json:"question"`
	Answer   string `json:"answer"`
}

// GSM8KAnswer is the final number of a GSM8K solution: the text after
// "####", without thousands separators.
func GSM8KAnswer(solution string) (string, error) {
	i := strings.LastIndex(solution, "####")
	if i < 0 {
		return "", errors.New(`answer has no "#### N" final line`)
	}
	a := strings.ReplaceAll(strings.TrimSpace(solution[i+4:]), ",", "")
	if _, err := strconv.ParseFloat(a, 64); err != nil {
		return "", fmt.Errorf("final answer %q is not a number", a)
	}
	return a, nil
}

func gsm8k(r io.Reader, source string) ([]dataset.Case, error) {
	var out []dataset.Case
	split := splitName(source)
	err := jsonLines(r, source, func(i int, rec gsmRecord) error {
		if rec.Question == "" {
			return errors.New("missing question; is this GSM8K's test.jsonl or train.jsonl?")
		}
		a, err := GSM8KAnswer(rec.Answer)
		if err != nil {
			return err
		}
		raw := strings.TrimSpace(rec.Answer[strings.LastIndex(rec.Answer, "####")+4:])
		out = append(out, dataset.Case{
			CaseID:   fmt.Sprintf("gsm8k-%s-%d", split, i),
			TaskType: TaskTypes["gsm8k"],
			Context:  map[string]any{"question": rec.Question},
			Expected: map[string]any{"answer": a, "solution": rec.Answer},
			Metadata: map[string]any{"source": source, "dataset": "GSM8K", "row_index": float64(i), "answer_raw": raw},
		})
		return nil
	})
	return out, err
}

// WriteJSONL writes cases one a line.
func WriteJSONL(w io.Writer, cases []dataset.Case) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	for _, c := range cases {
		if err := enc.Encode(c); err != nil {
			return err
		}
	}
	return bw.Flush()
}
