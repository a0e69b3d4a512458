package tenant

import (
	"fmt"
	"strings"
)

// Problem is one thing wrong with a tenant file. Key is the dotted key path
// ("scorer.kind"); Line and Col are set when the TOML parser located it.
type Problem struct {
	Key  string
	Msg  string
	Line int
	Col  int
}

func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d", p.Line)
		if p.Col > 0 {
			fmt.Fprintf(&b, ", column %d", p.Col)
		}
		b.WriteString(": ")
	}
	if p.Key != "" {
		b.WriteString(p.Key)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// LoadError lists every problem found in one file, so that a user fixes them
// in one pass instead of one per run.
type LoadError struct {
	File     string
	Problems []Problem
}

// Error prints one problem per line, each prefixed with the file, so that
// every line is self-contained when grepped or pasted.
func (e *LoadError) Error() string {
	lines := make([]string, 0, len(e.Problems))
	for _, p := range e.Problems {
		if p.Line > 0 {
			// file:line:col is the form editors and terminals link.
			loc := fmt.Sprintf("%s:%d", e.File, p.Line)
			if p.Col > 0 {
				loc += fmt.Sprintf(":%d", p.Col)
			}
			q := p
			q.Line, q.Col = 0, 0
			lines = append(lines, loc+": "+q.String())
			continue
		}
		lines = append(lines, e.File+": "+p.String())
	}
	if len(lines) == 0 {
		return e.File + ": invalid"
	}
	return strings.Join(lines, "\n")
}

// problems collects problems during validation.
type problems []Problem

func (ps *problems) add(key, format string, a ...any) {
	*ps = append(*ps, Problem{Key: key, Msg: fmt.Sprintf(format, a...)})
}
