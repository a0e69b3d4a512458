package variant

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// ValueKind is the TOML type a parameter takes.
type ValueKind int

// The kinds of value a parameter edit writes.
const (
	KindInteger ValueKind = iota
	KindFloat
	KindString
	KindStrings // an array of strings
)

func (k ValueKind) String() string {
	return [...]string{"an integer", "a number", "a string", "a list of strings"}[k]
}

// StepEdit sets one key of a [[steps]] table of chain.toml: in the step's
// own table (Table "") or in one of its sub-tables (Table "params").
type StepEdit struct {
	Step  string
	Table string
	Key   string
	Kind  ValueKind
	Value any // as JSON decoded it: float64, string, []any
}

// EditStepKeys applies edits to chain.toml by rewriting only the lines of
// the changed keys (or inserting a line, or a sub-table header and a line,
// where a key is new): comments, order and layout survive, so the diff of
// a parameter change shows those lines only. A general TOML encoder would
// re-emit the whole document, losing comments. No format-preserving TOML
// library is among this module's dependencies, and the edits needed are
// narrow (scalar or one-line array values of known keys), so this is a
// small line editor checked from the other side: the result is decoded
// again and must equal the parent's decoded document with exactly these
// values changed; anything it cannot edit that way is refused with a
// sentence saying how to propose the change as a whole chain_toml instead.
func EditStepKeys(src []byte, edits []StepEdit) ([]byte, error) {
	var want map[string]any
	if _, err := toml.Decode(string(src), &want); err != nil {
		return nil, fmt.Errorf("chain.toml of the parent does not parse: %w", err)
	}
	lines := strings.SplitAfter(string(src), "\n")
	for _, e := range edits {
		lit, typed, err := literal(e)
		if err != nil {
			return nil, err
		}
		if lines, err = editLines(lines, e, lit); err != nil {
			return nil, err
		}
		if err := setIn(want, e, typed); err != nil {
			return nil, err
		}
	}
	out := strings.Join(lines, "")
	var got map[string]any
	if _, err := toml.Decode(out, &got); err != nil {
		return nil, fmt.Errorf("editing chain.toml in place gave a file that does not parse (%v): propose the change as a whole chain_toml", err)
	}
	if !reflect.DeepEqual(normalize(got), normalize(want)) {
		return nil, fmt.Errorf("chain.toml could not be edited in place (a key is written in a form this editor does not change, e.g. an inline table): propose the change as a whole chain_toml at the same level")
	}
	return []byte(out), nil
}

// literal is the TOML text of e.Value in the kind the key needs, and the
// value as the TOML decoder gives it back.
func literal(e StepEdit) (string, any, error) {
	where := fmt.Sprintf("params[%q][%q]", e.Step, e.Key)
	switch n := e.Value.(type) { // Go callers; JSON gives float64
	case int:
		e.Value = float64(n)
	case int64:
		e.Value = float64(n)
	}
	switch e.Kind {
	case KindInteger:
		f, ok := e.Value.(float64)
		if !ok || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return "", nil, fmt.Errorf("%s is %s, %v; it must be a whole number (e.g. 256)", where, e.Kind, jsonText(e.Value))
		}
		return strconv.FormatInt(int64(f), 10), int64(f), nil
	case KindFloat:
		f, ok := e.Value.(float64)
		if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
			return "", nil, fmt.Errorf("%s is %s, not %v", where, e.Kind, jsonText(e.Value))
		}
		s := strconv.FormatFloat(f, 'g', -1, 64)
		if !strings.ContainsAny(s, ".eEn") {
			s += ".0" // 1 would be a TOML integer
		}
		return s, f, nil
	case KindString:
		s, ok := e.Value.(string)
		if !ok {
			return "", nil, fmt.Errorf("%s is %s, not %v", where, e.Kind, jsonText(e.Value))
		}
		return strconv.Quote(s), s, nil
	case KindStrings:
		list, ok := e.Value.([]any)
		if !ok {
			return "", nil, fmt.Errorf("%s is %s, not %v", where, e.Kind, jsonText(e.Value))
		}
		parts := make([]string, len(list))
		typed := make([]any, len(list))
		for i, x := range list {
			s, ok := x.(string)
			if !ok {
				return "", nil, fmt.Errorf("%s is %s; element %d is %v", where, e.Kind, i, jsonText(x))
			}
			parts[i], typed[i] = strconv.Quote(s), s
		}
		return "[" + strings.Join(parts, ", ") + "]", typed, nil
	}
	return "", nil, fmt.Errorf("%s: unknown value kind", where)
}

func jsonText(v any) string {
	switch v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case nil:
		return "null"
	}
	return fmt.Sprintf("%v", v)
}

// header is a table header line: "[[steps]]", "[steps.params]".
func header(line string) (name string, array, ok bool) {
	s := strings.TrimSpace(stripComment(line))
	switch {
	case strings.HasPrefix(s, "[[") && strings.HasSuffix(s, "]]"):
		return strings.TrimSpace(s[2 : len(s)-2]), true, true
	case strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]"):
		return strings.TrimSpace(s[1 : len(s)-1]), false, true
	}
	return "", false, false
}

// stripComment drops a trailing comment outside strings.
func stripComment(line string) string {
	inStr := byte(0)
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case inStr != 0 && c == '\\' && inStr == '"':
			i++
		case inStr != 0 && c == inStr:
			inStr = 0
		case inStr == 0 && (c == '"' || c == '\''):
			inStr = c
		case inStr == 0 && c == '#':
			return line[:i]
		}
	}
	return line
}

// assigns reports whether line starts an assignment of key.
func assigns(line, key string) bool {
	t := strings.TrimLeft(line, " \t")
	return strings.HasPrefix(t, key) && strings.HasPrefix(strings.TrimLeft(t[len(key):], " \t"), "=")
}

// keyLine reports whether line assigns key, and where its value starts and
// ends (the rest of the line, a comment say, is kept).
func keyLine(line, key string) (start, end int, ok bool) {
	t := strings.TrimLeft(line, " \t")
	indent := len(line) - len(t)
	if !strings.HasPrefix(t, key) {
		return 0, 0, false
	}
	rest := t[len(key):]
	r := strings.TrimLeft(rest, " \t")
	if !strings.HasPrefix(r, "=") {
		return 0, 0, false
	}
	vstart := indent + len(key) + (len(rest) - len(r)) + 1
	for vstart < len(line) && (line[vstart] == ' ' || line[vstart] == '\t') {
		vstart++
	}
	vend, complete := scanValue(line, vstart)
	if !complete {
		return 0, 0, false
	}
	return vstart, vend, true
}

// scanValue finds the end of the TOML value starting at i on one line;
// complete is false for a value that continues on later lines.
func scanValue(line string, i int) (end int, complete bool) {
	if i >= len(line) {
		return i, false
	}
	switch line[i] {
	case '"', '\'':
		q := line[i]
		if strings.HasPrefix(line[i:], strings.Repeat(string(q), 3)) {
			return i, false // multi-line strings are not edited in place
		}
		for j := i + 1; j < len(line); j++ {
			if q == '"' && line[j] == '\\' {
				j++
				continue
			}
			if line[j] == q {
				return j + 1, true
			}
		}
		return len(line), false
	case '[', '{':
		depth, inStr := 0, byte(0)
		for j := i; j < len(line); j++ {
			c := line[j]
			switch {
			case inStr != 0 && c == '\\' && inStr == '"':
				j++
			case inStr != 0 && c == inStr:
				inStr = 0
			case inStr == 0 && (c == '"' || c == '\''):
				inStr = c
			case inStr == 0 && (c == '[' || c == '{'):
				depth++
			case inStr == 0 && (c == ']' || c == '}'):
				depth--
				if depth == 0 {
					return j + 1, true
				}
			case inStr == 0 && c == '#':
				return j, false
			}
		}
		return len(line), false
	}
	j := i
	for j < len(line) && !strings.ContainsRune(" \t#\r\n", rune(line[j])) {
		j++
	}
	return j, j > i
}

// editLines rewrites (or inserts) the one line of edit e.
func editLines(lines []string, e StepEdit, lit string) ([]string, error) {
	// Find the [[steps]] block whose id is e.Step: from its header to the
	// next [[steps]] or a table that is not one of its sub-tables.
	start, end := -1, len(lines)
	for i := 0; i < len(lines) && start < 0; i++ {
		if name, array, ok := header(lines[i]); !ok || !array || name != "steps" {
			continue
		}
		blockEnd := len(lines)
		for j := i + 1; j < len(lines); j++ {
			if n, a, ok := header(lines[j]); ok && (a || !strings.HasPrefix(n, "steps.")) {
				blockEnd = j
				break
			}
		}
		if stepID(lines[i+1:blockEnd]) == e.Step {
			start, end = i, blockEnd
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("step %q has no [[steps]] table with a plain id = %q line in chain.toml: propose the change as a whole chain_toml", e.Step, e.Step)
	}
	// The section of the block the key lives in.
	want := "steps"
	if e.Table != "" {
		want = "steps." + e.Table
	}
	secStart, secEnd := -1, end
	cur := ""
	for i := start; i < end; i++ {
		if name, _, ok := header(lines[i]); ok {
			if cur == want && secStart >= 0 {
				secEnd = i
				break
			}
			cur = name
			if name == want {
				secStart = i
			}
		}
	}
	if secStart >= 0 {
		last := secStart
		for i := secStart + 1; i < secEnd; i++ {
			if vs, ve, ok := keyLine(lines[i], e.Key); ok {
				lines[i] = lines[i][:vs] + lit + lines[i][ve:]
				return lines, nil
			}
			if strings.TrimSpace(stripComment(lines[i])) != "" {
				last = i
			}
			if assigns(lines[i], e.Key) {
				return nil, fmt.Errorf("step %q: %s is written over several lines in chain.toml: propose the change as a whole chain_toml", e.Step, e.Key)
			}
		}
		return insert(lines, last+1, indentOf(lines, secStart+1, secEnd)+e.Key+" = "+lit+"\n"), nil
	}
	// A new sub-table goes at the end of the step's block, after its last
	// non-blank line.
	last := start
	for i := start + 1; i < end; i++ {
		if strings.TrimSpace(lines[i]) != "" {
			last = i
		}
	}
	if !strings.HasSuffix(lines[last], "\n") {
		lines[last] += "\n"
	}
	return insert(lines, last+1, "["+want+"]\n"+e.Key+" = "+lit+"\n"), nil
}

// stepID reads the plain id = "..." line of a step's own table.
func stepID(block []string) string {
	for _, l := range block {
		if _, _, ok := header(l); ok {
			return ""
		}
		if vs, ve, ok := keyLine(l, "id"); ok {
			var v struct{ V string }
			if _, err := toml.Decode("V = "+l[vs:ve], &v); err == nil {
				return v.V
			}
		}
	}
	return ""
}

func indentOf(lines []string, from, to int) string {
	for i := from; i < to; i++ {
		t := strings.TrimLeft(lines[i], " \t")
		if t != "" && t != "\n" && !strings.HasPrefix(t, "#") {
			return lines[i][:len(lines[i])-len(t)]
		}
	}
	return ""
}

func insert(lines []string, at int, text string) []string {
	if at > 0 && !strings.HasSuffix(lines[at-1], "\n") {
		lines[at-1] += "\n"
	}
	out := make([]string, 0, len(lines)+1)
	out = append(out, lines[:at]...)
	out = append(out, text)
	return append(out, lines[at:]...)
}

// setIn applies e to the decoded document, the reference the edited text
// must decode to.
func setIn(doc map[string]any, e StepEdit, v any) error {
	steps, _ := doc["steps"].([]map[string]any)
	for _, s := range steps {
		if s["id"] != e.Step {
			continue
		}
		t := s
		if e.Table != "" {
			sub, ok := s[e.Table].(map[string]any)
			if !ok {
				sub = map[string]any{}
				s[e.Table] = sub
			}
			t = sub
		}
		t[e.Key] = v
		return nil
	}
	return fmt.Errorf("step %q does not exist in chain.toml", e.Step)
}

// normalize makes decoded documents comparable: arrays of tables decode
// as []map[string]any, other arrays as []any.
func normalize(v any) any {
	switch x := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = normalize(e)
		}
		return out
	case []map[string]any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = normalize(e)
		}
		return out
	}
	return v
}
