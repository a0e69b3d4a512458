package dataset

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"
)

// MaxLineBytes bounds one JSONL line. Cases with whole documents in their
// context are long, but a "line" of gigabytes is a file without newlines,
// and reading it would only exhaust memory.
const MaxLineBytes = 64 << 20

// LineError is a problem with one line of a dataset file.
type LineError struct {
	File string
	Line int
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }
func (e *LineError) Unwrap() error { return e.Err }

// ReadFile streams the cases of a JSONL file to fn in file order, with their
// 1-based line numbers. It stops at the first invalid line (a *LineError) or
// the first error fn returns (passed through unchanged). Only the set of case
// ids seen so far is kept, so files far larger than memory can be read.
func ReadFile(path string, fn func(line int, c Case) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read cases: %w", err)
	}
	defer func() { _ = f.Close() }()
	return readCases(f, path, func(line int, _ []byte, c Case) error { return fn(line, c) })
}

// Read is ReadFile over an open reader; name is used in errors. It lets a
// caller that opened the file itself (through an os.Root, refusing links)
// read it with the same checks.
func Read(r io.Reader, name string, fn func(line int, c Case) error) error {
	return readCases(r, name, func(line int, _ []byte, c Case) error { return fn(line, c) })
}

// ReadAll returns every case of a JSONL file; for small files and tests.
func ReadAll(path string) ([]Case, error) {
	var out []Case
	err := ReadFile(path, func(_ int, c Case) error {
		out = append(out, c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// readCases is ReadFile over any reader. fn also receives the raw line (BOM
// and line ending removed); it is reused after fn returns.
func readCases(r io.Reader, name string, fn func(line int, raw []byte, c Case) error) error {
	seen := map[string]int{}
	return scanLines(r, name, func(line int, b []byte) error {
		c, err := parseCase(b)
		if err != nil {
			return &LineError{File: name, Line: line, Err: err}
		}
		if first, dup := seen[c.CaseID]; dup {
			return &LineError{File: name, Line: line, Err: fmt.Errorf("duplicate case_id %q (first on line %d); case ids must be unique", c.CaseID, first)}
		}
		seen[c.CaseID] = line
		return fn(line, b, c)
	})
}

// scanLines calls fn with every non-blank line and its 1-based number. It
// uses a bufio.Reader rather than a bufio.Scanner so that a line is limited
// by MaxLineBytes, not by the scanner's 64 KiB default.
func scanLines(r io.Reader, name string, fn func(line int, b []byte) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var long []byte
	for line := 1; ; line++ {
		b, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], b...)
			for errors.Is(err, bufio.ErrBufferFull) {
				if len(long) > MaxLineBytes {
					return &LineError{File: name, Line: line, Err: fmt.Errorf("line is longer than %d MiB; is this a JSONL file with one case per line?", MaxLineBytes>>20)}
				}
				b, err = br.ReadSlice('\n')
				long = append(long, b...)
			}
			b = long
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read %s: %w", name, err)
		}
		if line == 1 {
			b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
		}
		b = bytes.TrimSuffix(b, []byte("\n"))
		b = bytes.TrimSuffix(b, []byte("\r"))
		if len(bytes.TrimSpace(b)) > 0 {
			if ferr := fn(line, b); ferr != nil {
				return ferr
			}
		}
		if err != nil { // io.EOF
			return nil
		}
	}
}

// parseCase decodes and validates one line. Its errors carry no position;
// the caller adds file:line.
func parseCase(b []byte) (Case, error) {
	var c Case
	if !utf8.Valid(b) {
		return c, errors.New("line is not valid UTF-8; convert the file to UTF-8")
	}
	if err := json.Unmarshal(b, &c); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te) && te.Field == "":
			return c, fmt.Errorf("a case must be a JSON object, got %s", te.Value)
		case errors.As(err, &te):
			return c, fmt.Errorf("%s must be %s, got %s", te.Field, wantType(te.Field), te.Value)
		case errors.As(err, &se):
			return c, fmt.Errorf("invalid JSON at byte %d: %v", se.Offset, se)
		default:
			return c, fmt.Errorf("invalid JSON: %v", err)
		}
	}
	switch {
	case strings.TrimSpace(c.CaseID) == "":
		return c, errors.New("case_id is missing or empty")
	case strings.TrimSpace(c.TaskType) == "":
		return c, errors.New("task_type is missing or empty")
	case c.Context == nil:
		return c, errors.New("context is missing or null; it must be a JSON object (what the pipeline may read)")
	case c.Expected == nil:
		return c, errors.New("expected is missing or null; it must be a JSON object (what the scorer compares against)")
	}
	return c, nil
}

func wantType(field string) string {
	switch field {
	case "case_id", "task_type":
		return "a JSON string"
	}
	return "a JSON object"
}
