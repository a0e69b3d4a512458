package chain

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"github.com/BurntSushi/toml"

	"github.com/fapo-dev/fapo/engine/internal/fsx"
	"github.com/fapo-dev/fapo/engine/internal/suggest"
)

// FileName is the name of the chain file inside a chain directory.
const FileName = "chain.toml"

// Problem is one thing wrong with a chain. Step is empty for problems of the
// file as a whole.
type Problem struct {
	Step string `json:"step,omitempty"`
	Msg  string `json:"msg"`
}

// ValidationError lists every problem found in a chain, so that a user (or
// an agent proposing a variant) can fix them all in one pass.
type ValidationError struct {
	File     string
	Problems []Problem
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(e.File)
		b.WriteString(": ")
		if p.Step != "" {
			fmt.Fprintf(&b, "step %q: ", p.Step)
		}
		b.WriteString(p.Msg)
	}
	return b.String()
}

// Option changes how Load resolves the chain's surroundings.
type Option func(*loader)

// CorpusDir sets the directory corpus paths are relative to. A baseline chain
// lives in the tenant directory, which is the default; a variant lives in
// variants/vNNNN/ but still searches the tenant's corpus. A path that
// leads out of dir, through ".." or a link, is refused.
func CorpusDir(dir string) Option { return CorpusFS(DirFS(dir), dir) }

// CorpusFS makes retrieve steps read their corpora from fsys, described as
// where in messages ("corpus file x.jsonl does not exist in WHERE"). A
// server hands it the verified bytes of a tenant's pinned files, so what a
// step searches is what was checked, never a file read again by path.
func CorpusFS(fsys fs.FS, where string) Option {
	return func(l *loader) { l.corpus, l.corpusWhere = fsys, where }
}

// DirFS is the files under dir as an fs.FS whose paths cannot lead out of
// dir, neither through ".." nor through a symbolic link.
func DirFS(dir string) fs.FS { return confinedDir(dir) }

type confinedDir string

func (d confinedDir) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	p, err := fsx.Confine(string(d), name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return os.Open(p)
}

var idPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

var paramKeys = []string{"temperature", "top_p", "max_tokens", "seed", "stop", "n"}

// Load reads dir/chain.toml and the files it names, and validates the whole
// chain. Problems are returned together as a *ValidationError. The files
// are read through an os.Root, so no name in the chain reaches outside dir;
// a chain whose files must be exactly the ones verified (a variant) is
// loaded with LoadFS over those bytes instead.
func Load(dir string, opts ...Option) (*Chain, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("load chain %s: %w", dir, err)
	}
	root, err := os.OpenRoot(abs)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no %s in %s: create one listing the pipeline's [[steps]]", FileName, dir)
		}
		return nil, fmt.Errorf("load chain: %w", err)
	}
	defer root.Close()
	c, err := LoadFS(root.FS(), append([]Option{CorpusDir(abs)}, opts...)...)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no %s in %s: create one listing the pipeline's [[steps]]", FileName, dir)
		}
		return nil, err
	}
	return c, nil
}

// LoadFiles is LoadFS over files held in memory (slash-separated relative
// paths), such as a variant's verified files or a candidate under review.
func LoadFiles(files map[string][]byte, opts ...Option) (*Chain, error) {
	return LoadFS(fsx.MapFS(files), opts...)
}

// LoadFS reads chain.toml and the files it names from fsys and validates
// the whole chain, like Load. Nothing is read from fsys after LoadFS
// returns: the chain holds the bytes it checked. Corpus files are not part
// of a chain's files; they are found where CorpusFS or CorpusDir says.
func LoadFS(fsys fs.FS, opts ...Option) (*Chain, error) {
	l := &loader{fsys: fsys, files: map[string][]byte{}, ids: map[string]int{}}
	for _, o := range opts {
		o(l)
	}
	raw, err := fs.ReadFile(fsys, FileName)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no %s: create one listing the pipeline's [[steps]]: %w", FileName, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("load chain: %w", err)
	}
	l.files[FileName] = raw
	var c *Chain
	if l.external != nil {
		c = l.loadExternal(string(raw))
	} else {
		c = l.load(string(raw))
	}
	if len(l.problems) > 0 {
		return nil, &ValidationError{File: FileName, Problems: l.problems}
	}
	return c, nil
}

type loader struct {
	// fsys holds the chain's own files (chain.toml, prompts, schemas).
	fsys fs.FS
	// corpus holds retrieve steps' corpora; corpusWhere names it.
	corpus      fs.FS
	corpusWhere string
	files       map[string][]byte
	problems    []Problem
	// ids maps every step id to its position, so that a reference to a later
	// step can be told apart from a reference to no step at all.
	ids   map[string]int
	steps []*step
	// tools are the react tools the tenant declares (WithTools); nil means
	// none, so a react step naming any tool fails to load.
	tools map[string]Tool
	// external is set when the tenant's program runs the chain (External).
	external *ExternalSpec
}

// exactlyOne checks a pair of mutually exclusive keys of which one is
// required; what explains the choice when both are missing.
func (l *loader) exactlyOne(label, a, av, b, bv, what string) bool {
	switch {
	case av == "" && bv == "":
		l.problem(label, "set one of %s or %s%s", a, b, what)
	case av != "" && bv != "":
		l.problem(label, "set only one of %s and %s", a, b)
	default:
		return true
	}
	return false
}

func (l *loader) problem(stepID, format string, args ...any) {
	l.problems = append(l.problems, Problem{Step: stepID, Msg: fmt.Sprintf(format, args...)})
}

// decode parses chain.toml into v; a syntax error is a problem with its
// line, and ok is false.
func (l *loader) decode(text string, v any) (md toml.MetaData, ok bool) {
	md, err := toml.Decode(text, v)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			l.problem("", "line %d: %s", pe.Position.Line, pe.Message)
		} else {
			l.problem("", "%v", err)
		}
		return md, false
	}
	return md, true
}

func (l *loader) load(text string) *Chain {
	var fc fileConfig
	md, ok := l.decode(text, &fc)
	if !ok {
		return nil
	}
	for _, k := range md.Undecoded() {
		if len(k) > 0 && k[0] == "steps" {
			continue // reported per step below, with the step's id
		}
		l.problem("", "unknown key %q%s", k.String(), suggest.Hint(k.String(), []string{"output", "steps"}))
	}
	// A second, untyped decode tells which keys each step set, which the
	// typed decode cannot attribute to a step of an array of tables.
	var rawSteps struct {
		Steps []map[string]any `toml:"steps"`
	}
	if _, err := toml.Decode(text, &rawSteps); err != nil {
		l.problem("", "%v", err)
		return nil
	}
	if len(fc.Steps) == 0 {
		l.problem("", "no steps: add at least one [[steps]] table with an id and a kind (%s)", strings.Join(kindNames(), ", "))
		return nil
	}

	for i, cfg := range fc.Steps {
		label := cfg.ID
		switch {
		case cfg.ID == "":
			label = fmt.Sprintf("#%d", i+1)
			l.problem(label, "id is empty; give every step a unique id")
		case !idPattern.MatchString(cfg.ID):
			l.problem(label, "id must be letters, digits and _ (not starting with a digit) so templates can write {{.steps.%s.output}}", cfg.ID)
		}
		if j, dup := l.ids[cfg.ID]; dup && cfg.ID != "" {
			l.problem(label, "duplicate id: steps #%d and #%d are both %q", j+1, i+1, cfg.ID)
		} else if cfg.ID != "" {
			l.ids[cfg.ID] = i
		}
	}

	var ks []string
	for i, cfg := range fc.Steps {
		s := &step{cfg: cfg, tmpl: map[string]*template.Template{}, texts: map[string]string{}}
		label := cfg.ID
		if label == "" || l.ids[label] != i {
			label = fmt.Sprintf("#%d", i+1)
		}
		k, ok := kinds[cfg.Kind]
		switch {
		case cfg.Kind == "":
			l.problem(label, "kind is empty; use one of %s", strings.Join(kindNames(), ", "))
		case !ok:
			l.problem(label, "unknown kind %q%s (known: %s)", cfg.Kind, suggest.Hint(cfg.Kind, kindNames()), strings.Join(kindNames(), ", "))
		}
		if i < len(rawSteps.Steps) {
			l.checkKeys(label, k, rawSteps.Steps[i])
		}
		if ok {
			s.kind = k
			k.compile(l, s)
			for _, role := range slices.Sorted(maps.Keys(s.tmpl)) {
				l.checkRefs(label, i, s, role)
			}
		}
		l.steps = append(l.steps, s)
		ks = append(ks, cfg.ID)
	}

	out := fc.Output
	if out == "" {
		out = fc.Steps[len(fc.Steps)-1].ID
	} else if _, ok := l.ids[out]; !ok {
		l.problem("", "output = %q names no step%s", out, suggest.Hint(out, ks))
	}
	c := &Chain{corpus: l.corpus, output: out, steps: l.steps, byID: map[string]*step{}, files: l.files}
	c.tokenKey = newTokenKey()
	for _, s := range l.steps {
		c.byID[s.cfg.ID] = s
	}
	return c
}

// checkKeys reports keys a step sets that its kind does not use, naming the
// kind that does use them when there is one.
func (l *loader) checkKeys(label string, k *kindSpec, raw map[string]any) {
	for _, key := range slices.Sorted(maps.Keys(raw)) {
		if key == "id" || key == "kind" {
			continue
		}
		if key == "params" {
			if p, ok := raw[key].(map[string]any); ok {
				for _, pk := range slices.Sorted(maps.Keys(p)) {
					if !slices.Contains(paramKeys, pk) {
						l.problem(label, "unknown key params.%s%s (known: %s)", pk, suggest.Hint(pk, paramKeys), strings.Join(paramKeys, ", "))
					}
				}
			}
		}
		if k != nil && slices.Contains(k.keys, key) {
			continue
		}
		if k == nil {
			if !slices.Contains(allStepKeys(), key) {
				l.problem(label, "unknown key %q%s", key, suggest.Hint(key, allStepKeys()))
			}
			continue
		}
		if owner := keyOwner(key); owner != "" {
			l.problem(label, "key %q belongs to kind %s, not %s", key, owner, kindOf(k))
			continue
		}
		l.problem(label, "unknown key %q%s (kind %s accepts: %s)", key, suggest.Hint(key, k.keys), kindOf(k), strings.Join(k.keys, ", "))
	}
}

func kindOf(k *kindSpec) string {
	for name, v := range kinds {
		if v == k {
			return name
		}
	}
	return ""
}

func keyOwner(key string) string {
	for _, name := range kindNames() {
		if slices.Contains(kinds[name].keys, key) {
			return name
		}
	}
	return ""
}

func allStepKeys() []string {
	keys := []string{"id", "kind"}
	for _, name := range kindNames() {
		for _, k := range kinds[name].keys {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	return keys
}

// readFile reads a file named by the chain from the chain's files and
// remembers it for Files.
func (l *loader) readFile(label, what, rel string) ([]byte, bool) {
	name, err := chainPath(rel)
	if err != nil {
		l.problem(label, "%s %s: %v", what, rel, err)
		return nil, false
	}
	data, err := fs.ReadFile(l.fsys, name)
	if errors.Is(err, fs.ErrNotExist) {
		l.problem(label, "%s %s does not exist%s", what, rel, siblingHint(l.fsys, name))
		return nil, false
	}
	if err != nil {
		l.problem(label, "%s %s: %v", what, rel, err)
		return nil, false
	}
	l.files[name] = data
	return data, true
}

// chainPath turns a path written in chain.toml into a name inside the
// chain's files, refusing what would leave them.
func chainPath(rel string) (string, error) {
	slash := filepath.ToSlash(rel)
	switch {
	case rel == "":
		return "", fmt.Errorf("empty path")
	case path.IsAbs(slash) || filepath.IsAbs(rel) || filepath.VolumeName(rel) != "":
		return "", fmt.Errorf("path %q is absolute; use a path relative to the chain directory", rel)
	}
	name := path.Clean(slash)
	if !fs.ValidPath(name) || name == "." {
		return "", fmt.Errorf("path %q leaves the chain directory; use a path inside it", rel)
	}
	return name, nil
}

// siblingHint suggests an existing file next to a missing one.
func siblingHint(fsys fs.FS, name string) string {
	entries, err := fs.ReadDir(fsys, path.Dir(name))
	if err != nil {
		return ""
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() {
			names = append(names, e.Name())
		}
	}
	return suggest.Hint(path.Base(name), names)
}

// fileTemplate compiles the template file rel as role of s.
func (l *loader) fileTemplate(label string, s *step, role, rel string) {
	data, ok := l.readFile(label, "prompt file", rel)
	if !ok {
		return
	}
	name, _ := chainPath(rel) // readFile succeeded, so rel is a valid path
	l.compileTemplate(label, s, role, name, string(data))
}

// inlineTemplate compiles a template written in chain.toml itself.
func (l *loader) inlineTemplate(label string, s *step, role, text string) {
	l.compileTemplate(label, s, role, s.cfg.ID+"."+role, text)
}

func (l *loader) compileTemplate(label string, s *step, role, name, text string) {
	s.texts[role] = text
	t, err := newTemplate(name).Parse(text)
	if err != nil {
		l.problem(label, "%s: %v", role, err)
		return
	}
	s.tmpl[role] = t
}
