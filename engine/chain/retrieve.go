package chain

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/fapo-dev/fapo/engine/internal/jsontext"
)

func init() {
	registerKind("retrieve", &kindSpec{
		keys:        []string{"query", "source", "corpus", "k", "fields"},
		compile:     compileRetrieve,
		views:       func(*step) []string { return []string{"output", "retrieved"} },
		run:         runRetrieve,
		placeholder: placeholderRetrieve,
	})
}

var retrieveFields = []string{"title", "text"}

func compileRetrieve(l *loader, s *step) {
	label := s.cfg.ID
	if s.cfg.Query == "" {
		l.problem(label, "query is empty; give a template such as query = \"{{.context.question}}\"")
	} else {
		l.inlineTemplate(label, s, "query", s.cfg.Query)
	}
	switch {
	case !l.exactlyOne(label, "source", s.cfg.Source, "corpus", s.cfg.Corpus,
		": source is a field of the case such as \"context.paragraphs\", corpus a JSONL file of the tenant"):
	case s.cfg.Source != "":
		if rest, ok := strings.CutPrefix(s.cfg.Source, "context."); !ok || rest == "" || slices.Contains(strings.Split(rest, "."), "") {
			l.problem(label, "source = %q must be a field of the case's context, e.g. \"context.paragraphs\"", s.cfg.Source)
		}
	case l.corpus == nil:
		l.problem(label, "corpus %s: this chain was loaded without a corpus directory; load it with chain.CorpusDir(the tenant directory)", s.cfg.Corpus)
	default:
		name, err := corpusName(s.cfg.Corpus)
		if err != nil {
			l.problem(label, "corpus %s: %v", s.cfg.Corpus, err)
			break
		}
		if fi, err := fs.Stat(l.corpus, name); errors.Is(err, fs.ErrNotExist) {
			l.problem(label, "corpus file %s does not exist in %s%s", s.cfg.Corpus, l.corpusWhere, siblingHint(l.corpus, name))
		} else if err != nil {
			l.problem(label, "corpus %s: %v", s.cfg.Corpus, err)
		} else if fi.IsDir() {
			l.problem(label, "corpus %s is a directory; name a JSONL file", s.cfg.Corpus)
		}
	}
	if s.cfg.K < 1 {
		l.problem(label, "k = %d; retrieve at least 1 passage (k = 4 is a common start)", s.cfg.K)
	}
	for _, f := range s.cfg.Fields {
		if !slices.Contains(retrieveFields, f) {
			l.problem(label, "fields: unknown field %q; search title and/or text", f)
		}
	}
}

func (s *step) searchFields() []string {
	if len(s.cfg.Fields) == 0 {
		return retrieveFields
	}
	return s.cfg.Fields
}

func runRetrieve(ctx context.Context, x *execution, s *step, st *StepTrace) error {
	q, err := x.render(s, "query")
	if err != nil {
		return err
	}
	if s.cfg.Corpus != "" {
		ix, err := x.chain.corpusIndex(s)
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err // indexing a large corpus may have outlasted the run
		}
		st.Retrieved = ix.search(q, s.cfg.K)
	} else {
		docs, err := x.sourceDocs(s)
		if err != nil {
			return err
		}
		st.Retrieved = searchDocs(docs, s.searchFields(), q, s.cfg.K)
	}
	st.Output = formatPassages(st.Retrieved)
	st.RawOutput = st.Output
	return nil
}

func placeholderRetrieve(x *execution, s *step, st *StepTrace) error {
	if _, err := x.render(s, "query"); err != nil {
		return err
	}
	if s.cfg.Source != "" {
		if _, err := x.sourceDocs(s); err != nil {
			return err
		}
	}
	st.Retrieved = []RetrievedDoc{{ID: "0", Title: "<title>", Text: "<passage retrieved by " + s.cfg.ID + ">"}}
	st.Output = formatPassages(st.Retrieved)
	return nil
}

func formatPassages(docs []RetrievedDoc) string {
	var b strings.Builder
	for i, d := range docs {
		if i > 0 {
			b.WriteString("\n\n")
		}
		writePassage(&b, d.Title, d.Text)
	}
	return b.String()
}

// corpusIndex builds the step's corpus index on first use and shares it with
// every later case; a read error is kept and fails every case the same way.
func (ch *Chain) corpusIndex(s *step) (*bm25Index, error) {
	s.corpusOnce.Do(func() {
		name, err := corpusName(s.cfg.Corpus)
		if err != nil {
			s.corpusErr = fmt.Errorf("corpus %s: %w", s.cfg.Corpus, err)
			return
		}
		docs, err := loadCorpus(ch.corpus, name, s.cfg.Corpus)
		if err != nil {
			s.corpusErr = err
			return
		}
		s.corpus = newBM25(docs, s.searchFields())
	})
	return s.corpus, s.corpusErr
}

// corpusName is a corpus path of chain.toml as a path of an fs.FS: slash
// separated, relative, never climbing out.
func corpusName(p string) (string, error) {
	if filepath.IsAbs(p) || strings.HasPrefix(p, "/") || strings.HasPrefix(p, `\`) {
		return "", fmt.Errorf("path %q is absolute; use a path relative to the tenant directory", p)
	}
	name := path.Clean(filepath.ToSlash(p))
	if !fs.ValidPath(name) || name == "." {
		return "", fmt.Errorf("path %q leaves the tenant directory; use a path inside it", p)
	}
	return name, nil
}

// sourceDocs reads the step's source field from the case.
func (x *execution) sourceDocs(s *step) ([]doc, error) {
	var cur any = x.c.Context
	path := strings.Split(strings.TrimPrefix(s.cfg.Source, "context."), ".")
	for i, seg := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("source %s: context.%s is not an object", s.cfg.Source, strings.Join(path[:i], "."))
		}
		if cur, ok = m[seg]; !ok {
			return nil, fmt.Errorf("source %s: case %s has no such field", s.cfg.Source, x.c.CaseID)
		}
	}
	docs, err := docsFromValue(cur)
	if err != nil {
		return nil, fmt.Errorf("source %s: %w", s.cfg.Source, err)
	}
	return docs, nil
}

// docsFromValue accepts the passage shapes datasets use: a list of strings,
// of {title, text} objects, of HotpotQA {title, sentences} objects, or of
// HotpotQA's original [title, [sentences]] pairs.
func docsFromValue(v any) ([]doc, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("want a list of passages, got %s", jsontext.Kind(v))
	}
	docs := make([]doc, 0, len(list))
	for i, item := range list {
		d := doc{ID: strconv.Itoa(i)}
		switch it := item.(type) {
		case string:
			d.Text = it
		case map[string]any:
			if id, ok := it["id"]; ok {
				d.ID = toText(id)
			}
			d.Title, _ = it["title"].(string)
			if t, ok := it["text"].(string); ok {
				d.Text = t
			} else if sents, ok := it["sentences"].([]any); ok {
				d.Text = joinSentences(sents)
			} else {
				return nil, fmt.Errorf("passage %d has neither text nor sentences", i)
			}
		case []any:
			if len(it) != 2 {
				return nil, fmt.Errorf("passage %d is a list of %d items; want [title, [sentences]]", i, len(it))
			}
			d.Title, _ = it[0].(string)
			sents, ok := it[1].([]any)
			if !ok {
				return nil, fmt.Errorf("passage %d: want [title, [sentences]]", i)
			}
			d.Text = joinSentences(sents)
		default:
			return nil, fmt.Errorf("passage %d is %s; want a string or an object with title and text", i, jsontext.Kind(item))
		}
		docs = append(docs, d)
	}
	return docs, nil
}

// joinSentences joins with "" because HotpotQA sentences carry their own
// leading spaces.
func joinSentences(sents []any) string {
	var b strings.Builder
	for _, s := range sents {
		b.WriteString(toText(s))
	}
	return b.String()
}
