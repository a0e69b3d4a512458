package chain

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/template"
	"text/template/parse"

	"github.com/fapo-dev/fapo/engine/internal/suggest"
)

// rootFields are the names a template can read at its top level: inputs,
// never identities. expected is absent because a pipeline that saw the
// expected values would be graded on its own answers; case_id and metadata
// because a prompt that can name its case can carry a table of answers keyed
// by it. case_token is an opaque id, random per run, for a template that
// truly needs one (a cache-busting nonce, a trace tag).
var rootFields = []string{"context", "steps", "case_token"}

// identityFields are case fields a template might reach for that identify a
// case rather than describe its input; each refusal says what to use.
var identityFields = map[string]string{
	"case_id":  "templates see inputs, not identities (a case id lets a prompt carry a table of answers keyed by it); use .context, or .case_token for an opaque id that changes every run",
	"metadata": "templates see inputs, not identities (metadata such as ids and sources can key a table of answers); put what the pipeline needs into .context when sealing the dataset",
}

// stringBuilders are text/template builtins that assemble a string from
// literals ({{print "CWE-25" "7"}} spells a label no literal contains, which
// hides a table of answers from every text check). Prompt text is written
// as text; values come from .context and .steps.
var stringBuilders = map[string]bool{"print": true, "printf": true, "println": true,
	"html": true, "js": true, "urlquery": true, "call": true}

var funcs = template.FuncMap{
	"join":       join,
	"json":       toJSON,
	"numbered":   numbered,
	"lower":      strings.ToLower,
	"upper":      strings.ToUpper,
	"trim":       strings.TrimSpace,
	"paragraphs": paragraphs,
}

func newTemplate(name string) *template.Template {
	return template.New(name).Funcs(funcs).Option("missingkey=error")
}

// join follows sprig's argument order so that `{{.x | join ", "}}` reads
// naturally.
func join(sep string, list any) (string, error) {
	items, err := stringList(list)
	if err != nil {
		return "", fmt.Errorf("join: %w", err)
	}
	return strings.Join(items, sep), nil
}

func numbered(list any) (string, error) {
	items, err := stringList(list)
	if err != nil {
		return "", fmt.Errorf("numbered: %w", err)
	}
	var b strings.Builder
	for i, s := range items {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(strconv.Itoa(i + 1))
		b.WriteString(". ")
		b.WriteString(s)
	}
	return b.String(), nil
}

func toJSON(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("json: %w", err)
	}
	return string(b), nil
}

// paragraphs formats a list of passages (strings, {title, text} or the
// HotpotQA {title, sentences}) the way a retrieve step does.
func paragraphs(v any) (string, error) {
	docs, err := docsFromValue(v)
	if err != nil {
		return "", fmt.Errorf("paragraphs: %w", err)
	}
	var b strings.Builder
	for i, d := range docs {
		if i > 0 {
			b.WriteString("\n\n")
		}
		writePassage(&b, d.Title, d.Text)
	}
	return b.String(), nil
}

func writePassage(b *strings.Builder, title, text string) {
	if title != "" {
		b.WriteByte('[')
		b.WriteString(title)
		b.WriteString("] ")
	}
	b.WriteString(text)
}

func stringList(list any) ([]string, error) {
	switch l := list.(type) {
	case nil:
		return nil, nil
	case []string:
		return l, nil
	case []any:
		out := make([]string, len(l))
		for i, v := range l {
			out[i] = toText(v)
		}
		return out, nil
	case []map[string]any:
		out := make([]string, len(l))
		for i, v := range l {
			out[i] = toText(v)
		}
		return out, nil
	case string:
		return []string{l}, nil
	}
	return nil, fmt.Errorf("want a list, got %T", list)
}

// toText is how a non-string value appears in text: strings as they are,
// everything else as JSON.
func toText(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// checkRefs checks every root field chain in template role of step i:
// readable root names, earlier steps only, and values those steps expose.
func (l *loader) checkRefs(label string, i int, s *step, role string) {
	t := s.tmpl[role]
	var refs [][]string
	for _, tt := range t.Templates() {
		if tt.Tree == nil {
			continue
		}
		// A {{define}}d template runs with whatever dot it is given, so
		// only its $-rooted references are known to start at the root.
		collectRefs(tt.Root, tt.Name() == t.Name(), &refs)
	}
	for _, name := range usedBuilders(t) {
		l.problem(label, "%s calls %s, which prompt templates may not use: it assembles strings from literals, which can spell answers no text check sees; write the text itself, and read values from .context and .steps", role, name)
	}
	earlier := make([]string, 0, i)
	for _, e := range l.steps[:i] {
		earlier = append(earlier, e.cfg.ID)
	}
	seen := map[string]bool{}
	for _, r := range refs {
		key := strings.Join(r, ".")
		if seen[key] {
			continue
		}
		seen[key] = true
		switch {
		case identityFields[r[0]] != "":
			l.problem(label, "%s reads .%s: %s", role, key, identityFields[r[0]])
			continue
		case r[0] == "expected":
			l.problem(label, "%s reads .%s: a pipeline must not see expected values; use .context instead", role, key)
			continue
		case s.kind != nil && slices.Contains(s.kind.roots, r[0]):
			continue
		case !slices.Contains(rootFields, r[0]):
			l.problem(label, "%s reads unknown field .%s%s (templates see .context, .steps and .case_token)", role, key, suggest.Hint(r[0], rootFields))
			continue
		case r[0] != "steps" || len(r) < 2:
			continue
		}
		id := r[1]
		j, exists := l.ids[id]
		switch {
		case exists && j == i:
			l.problem(label, "%s reads .steps.%s, its own output; a step may read only earlier steps", role, id)
			continue
		case exists && j > i:
			l.problem(label, "%s reads .steps.%s, which runs later; a step may read only earlier steps (move it before this one)", role, id)
			continue
		case !exists:
			l.problem(label, "%s reads .steps.%s, but no step has that id%s", role, id, suggest.Hint(id, earlier))
			continue
		}
		if !slices.Contains(s.reads, id) {
			s.reads = append(s.reads, id)
		}
		if len(r) < 3 {
			continue
		}
		view := r[2]
		if !slices.Contains(viewNames, view) {
			l.problem(label, "%s reads .steps.%s.%s; a step exposes only output, parsed and retrieved%s", role, id, view, suggest.Hint(view, viewNames))
			continue
		}
		src := l.steps[j]
		if src.kind == nil {
			continue
		}
		if views := src.kind.views(src); !slices.Contains(views, view) {
			l.problem(label, "%s reads .steps.%s.%s, but step %q (%s) exposes only %s", role, id, view, id, src.cfg.Kind, strings.Join(views, ", "))
		}
	}
}

// usedBuilders lists the string-building builtins t calls, sorted.
func usedBuilders(t *template.Template) []string {
	seen := map[string]bool{}
	for _, tt := range t.Templates() {
		if tt.Tree != nil {
			walkIdents(tt.Root, func(name string) {
				if stringBuilders[name] {
					seen[name] = true
				}
			})
		}
	}
	return slices.Sorted(maps.Keys(seen))
}

// walkIdents calls fn with the name of every function n calls.
func walkIdents(n parse.Node, fn func(string)) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walkIdents(c, fn)
		}
	case *parse.ActionNode:
		walkIdents(n.Pipe, fn)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			walkIdents(c, fn)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			walkIdents(a, fn)
		}
	case *parse.IdentifierNode:
		fn(n.Ident)
	case *parse.ChainNode:
		walkIdents(n.Node, fn)
	case *parse.IfNode:
		walkIdents(n.Pipe, fn)
		walkIdents(n.List, fn)
		walkIdents(n.ElseList, fn)
	case *parse.WithNode:
		walkIdents(n.Pipe, fn)
		walkIdents(n.List, fn)
		walkIdents(n.ElseList, fn)
	case *parse.RangeNode:
		walkIdents(n.Pipe, fn)
		walkIdents(n.List, fn)
		walkIdents(n.ElseList, fn)
	case *parse.TemplateNode:
		walkIdents(n.Pipe, fn)
	}
}

// collectRefs gathers the field chains of n that start at the template's
// root data; atRoot says whether dot is still the root here.
func collectRefs(n parse.Node, atRoot bool, refs *[][]string) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			collectRefs(c, atRoot, refs)
		}
	case *parse.ActionNode:
		collectRefs(n.Pipe, atRoot, refs)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			collectRefs(c, atRoot, refs)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			collectRefs(a, atRoot, refs)
		}
	case *parse.FieldNode:
		if atRoot {
			*refs = append(*refs, n.Ident)
		}
	case *parse.VariableNode:
		if len(n.Ident) > 1 && n.Ident[0] == "$" {
			*refs = append(*refs, n.Ident[1:])
		}
	case *parse.ChainNode:
		// (.steps).x.output: the parenthesized part is a field chain too.
		if f, ok := n.Node.(*parse.FieldNode); ok && atRoot {
			*refs = append(*refs, append(slices.Clone(f.Ident), n.Field...))
			return
		}
		if p, ok := n.Node.(*parse.PipeNode); ok && atRoot && len(p.Cmds) == 1 && len(p.Cmds[0].Args) == 1 {
			if f, ok := p.Cmds[0].Args[0].(*parse.FieldNode); ok {
				*refs = append(*refs, append(slices.Clone(f.Ident), n.Field...))
				return
			}
		}
		collectRefs(n.Node, atRoot, refs)
	case *parse.IfNode:
		collectRefs(n.Pipe, atRoot, refs)
		collectRefs(n.List, atRoot, refs)
		collectRefs(n.ElseList, atRoot, refs)
	case *parse.WithNode:
		collectRefs(n.Pipe, atRoot, refs)
		collectRefs(n.List, false, refs)
		collectRefs(n.ElseList, atRoot, refs)
	case *parse.RangeNode:
		collectRefs(n.Pipe, atRoot, refs)
		collectRefs(n.List, false, refs)
		collectRefs(n.ElseList, atRoot, refs)
	case *parse.TemplateNode:
		collectRefs(n.Pipe, atRoot, refs)
	}
}
