package dataset

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	return p
}

func caseLine(id string) string {
	return fmt.Sprintf(`{"case_id":%q,"task_type":"qa","context":{"q":"question %s"},"expected":{"answer":"a"}}`, id, id)
}

func TestReadFileAccepts(t *testing.T) {
	long := strings.Repeat("x", 200<<10) // beyond a bufio.Scanner's 64 KiB
	tests := []struct {
		name    string
		content string
		ids     []string
		lines   []int
	}{
		{"plain", caseLine("a") + "\n" + caseLine("b") + "\n", []string{"a", "b"}, []int{1, 2}},
		{"no final newline", caseLine("a") + "\n" + caseLine("b"), []string{"a", "b"}, []int{1, 2}},
		{"bom and crlf", "\xef\xbb\xbf" + caseLine("a") + "\r\n" + caseLine("b") + "\r\n", []string{"a", "b"}, []int{1, 2}},
		{"blank lines keep numbering", "\n  \n" + caseLine("a") + "\n\r\n" + caseLine("b") + "\n\n", []string{"a", "b"}, []int{3, 5}},
		{"metadata and empty objects", `{"case_id":"m","task_type":"qa","context":{},"expected":{},"metadata":{"group":"g1"}}`, []string{"m"}, []int{1}},
		{"very long line", fmt.Sprintf(`{"case_id":"l","task_type":"qa","context":{"doc":%q},"expected":{"a":"b"}}`, long), []string{"l"}, []int{1}},
		{"empty file", "", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), "cases.jsonl", tt.content)
			var ids []string
			var lines []int
			require.NoError(t, ReadFile(p, func(line int, c Case) error {
				ids = append(ids, c.CaseID)
				lines = append(lines, line)
				require.NotNil(t, c.Context)
				require.NotNil(t, c.Expected)
				return nil
			}))
			require.Equal(t, tt.ids, ids)
			require.Equal(t, tt.lines, lines)
		})
	}
}

func TestReadFileErrors(t *testing.T) {
	ok := caseLine("a")
	tests := []struct {
		name    string
		content string
		line    int
		want    string
	}{
		{"bad json", ok + "\n{\"case_id\": \"b\",", 2, "invalid JSON"},
		{"trailing garbage", ok + "} x", 1, "invalid JSON"},
		{"not an object", "[1,2]", 1, "a case must be a JSON object, got array"},
		{"missing case_id", `{"task_type":"qa","context":{},"expected":{}}`, 1, "case_id is missing or empty"},
		{"empty case_id", `{"case_id":"  ","task_type":"qa","context":{},"expected":{}}`, 1, "case_id is missing or empty"},
		{"numeric case_id", `{"case_id":7,"task_type":"qa","context":{},"expected":{}}`, 1, "case_id must be a JSON string, got number"},
		{"missing task_type", `{"case_id":"a","context":{},"expected":{}}`, 1, "task_type is missing or empty"},
		{"missing context", `{"case_id":"a","task_type":"qa","expected":{}}`, 1, "context is missing or null"},
		{"null context", `{"case_id":"a","task_type":"qa","context":null,"expected":{}}`, 1, "context is missing or null"},
		{"array context", `{"case_id":"a","task_type":"qa","context":[1],"expected":{}}`, 1, "context must be a JSON object, got array"},
		{"string expected", `{"case_id":"a","task_type":"qa","context":{},"expected":"x"}`, 1, "expected must be a JSON object, got string"},
		{"missing expected", `{"case_id":"a","task_type":"qa","context":{}}`, 1, "expected is missing or null"},
		{"metadata not object", `{"case_id":"a","task_type":"qa","context":{},"expected":{},"metadata":3}`, 1, "metadata must be a JSON object, got number"},
		{"duplicate id", ok + "\n\n" + caseLine("b") + "\n" + ok, 4, `duplicate case_id "a" (first on line 1)`},
		{"invalid utf8", `{"case_id":"a","task_type":"qa","context":{"q":"caf` + "\xe9" + `"},"expected":{}}`, 1, "not valid UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := writeFile(t, t.TempDir(), "cases.jsonl", tt.content)
			err := ReadFile(p, func(int, Case) error { return nil })
			require.Error(t, err)
			var le *LineError
			require.ErrorAs(t, err, &le)
			require.Equal(t, p, le.File)
			require.Equal(t, tt.line, le.Line)
			require.Contains(t, err.Error(), fmt.Sprintf("%s:%d: ", p, tt.line))
			require.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestReadFileMissingFile(t *testing.T) {
	err := ReadFile(filepath.Join(t.TempDir(), "nope.jsonl"), func(int, Case) error { return nil })
	require.ErrorIs(t, err, os.ErrNotExist)
}

func TestReadFileCallbackErrorPassesThrough(t *testing.T) {
	p := writeFile(t, t.TempDir(), "c.jsonl", caseLine("a")+"\n"+caseLine("b"))
	stop := errors.New("stop")
	n := 0
	err := ReadFile(p, func(int, Case) error { n++; return stop })
	require.ErrorIs(t, err, stop)
	require.Equal(t, 1, n)
}

func TestReadFileTooLongLine(t *testing.T) {
	var calls int
	err := scanLines(bytes.NewReader(bytes.Repeat([]byte("x"), MaxLineBytes+(128<<10))), "big", func(int, []byte) error { calls++; return nil })
	var le *LineError
	require.ErrorAs(t, err, &le)
	require.Equal(t, 1, le.Line)
	require.Contains(t, err.Error(), "longer than")
	require.Zero(t, calls)
}

func TestReadAll(t *testing.T) {
	dir := t.TempDir()
	cs, err := ReadAll(writeFile(t, dir, "c.jsonl", caseLine("a")+"\n"+caseLine("b")))
	require.NoError(t, err)
	require.Len(t, cs, 2)
	require.Equal(t, "question b", cs[1].Context["q"])
	_, err = ReadAll(writeFile(t, dir, "bad.jsonl", "{"))
	require.Error(t, err)
}

func TestLookup(t *testing.T) {
	c := Case{CaseID: "a", TaskType: "qa", Context: map[string]any{"x": map[string]any{"y": "deep"}}, Expected: map[string]any{"label": "L", "answers": []any{"first", "second"}}}
	tests := []struct {
		path string
		want any
		ok   bool
	}{
		{"expected.label", "L", true},
		// Paths read lists the way scorers and json_path do.
		{"expected.answers.1", "second", true},
		{"expected.answers.2", nil, false},
		{"context.x.y", "deep", true},
		{"task_type", "qa", true},
		{"context.x.z", nil, false},
		{"context.x.y.z", nil, false},
		{"metadata.group", nil, false},
		{"metadata", nil, false},
		{"nothing.x", nil, false},
	}
	for _, tt := range tests {
		got, ok := c.Lookup(tt.path)
		require.Equal(t, tt.ok, ok, tt.path)
		require.Equal(t, tt.want, got, tt.path)
	}
}

func FuzzReadCases(f *testing.F) {
	for _, s := range []string{
		caseLine("a") + "\n" + caseLine("b"),
		"\xef\xbb\xbf" + caseLine("a") + "\r\n",
		caseLine("a") + "\n" + caseLine("a"),
		`{"case_id":1}`,
		`[]`,
		`{"case_id":"a","task_type":"qa","context":null,"expected":{}}`,
		"\n\n\r\n",
		`{"case_id":"a","task_type":"qa","context":{"q":"\u00e9"},"expected":{"l":[1,{"x":null}]},"metadata":{"group":5}}`,
		"\xff\xfe",
		`{"case_id":"a"`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		seen := map[string]bool{}
		err := readCases(bytes.NewReader(data), "fuzz", func(line int, raw []byte, c Case) error {
			if line < 1 || strings.TrimSpace(c.CaseID) == "" || strings.TrimSpace(c.TaskType) == "" || c.Context == nil || c.Expected == nil || seen[c.CaseID] {
				t.Fatalf("line %d: invalid case accepted: %+v", line, c)
			}
			seen[c.CaseID] = true
			return nil
		})
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) || le.Line < 1 {
				t.Fatalf("error without a line: %v", err)
			}
		}
	})
}

// BenchmarkReadFile100k loads a generated 100k-case file and reports the
// bytes allocated per load; only the id set should grow with the file.
func BenchmarkReadFile100k(b *testing.B) {
	dir := b.TempDir()
	f, err := os.Create(filepath.Join(dir, "big.jsonl"))
	require.NoError(b, err)
	for i := range 100_000 {
		fmt.Fprintf(f, `{"case_id":"case-%06d","task_type":"classification","context":{"text":"how do I change the pin of card number %d"},"expected":{"label":"change_pin"},"metadata":{"group":"g%d"}}`+"\n", i, i, i%977)
	}
	require.NoError(b, f.Close())
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	loads := 0
	for b.Loop() {
		n := 0
		require.NoError(b, ReadFile(f.Name(), func(int, Case) error { n++; return nil }))
		require.Equal(b, 100_000, n)
		loads++
	}
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(loads), "alloc-bytes/load")
}
