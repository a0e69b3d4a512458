package tenant

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/internal/fsx"
	"github.com/fapo-dev/fapo/engine/refusal"
)

// File names and directories inside a tenant.
const (
	ConfigFile  = "tenant.toml"
	ChainFile   = "chain.toml"
	PromptsDir  = "prompts"
	TrainFile   = dataset.TrainFile
	RunsDir     = "runs"
	VariantsDir = "variants"
	JournalFile = "journal.jsonl"
	// TenantsDir is the directory of a workspace that holds its tenants.
	TenantsDir = "tenants"
)

// Tenant is a loaded tenant directory.
type Tenant struct {
	// Dir is the absolute path of the tenant directory.
	Dir    string
	Config Config
	// Source is the bytes of tenant.toml that Config was parsed from.
	Source []byte
	// FilesDir, when set, is the verified copy of the tenant's pinned
	// scorer and tool files in the sealed store: command scorers, rubric
	// files and tools are used from there, never from the workspace, which
	// the agent can change after the check.
	FilesDir string
	// TrainSHA256 is the sha256 of data/train.jsonl as the pin check read
	// it ("" when there was none): whoever reads the split for a run
	// verifies what it reads against it, so the run uses exactly the bytes
	// that matched the pin, whatever happened to the file since.
	TrainSHA256 string
	// Files, when set, are the verified bytes of the tenant's pinned files
	// other than tenant.toml and the train split (scorer, tools, corpus/),
	// by tenant-relative slash path: retrieval corpora are searched from
	// them, never read from the workspace again.
	Files fs.FS
}

// FilesRoot is the directory scorer and tool files are used from: the
// verified copy when there is one, else the tenant directory (a tenant not
// yet sealed has nothing held out to protect).
func (t *Tenant) FilesRoot() string {
	if t.FilesDir != "" {
		return t.FilesDir
	}
	return t.Dir
}

// Load reads and validates dir/tenant.toml and fills the documented
// defaults. A file that is read but wrong yields a *LoadError listing every
// problem; a file that cannot be read yields the I/O error (errors.Is
// fs.ErrNotExist holds for a directory without tenant.toml).
func Load(dir string) (*Tenant, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	file := filepath.Join(dir, ConfigFile)
	data, err := readConfigNoLink(abs)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, refusal.Wrap(refusal.CreateTenant, dir, fmt.Sprintf("%s: not a tenant (no %s)", dir, ConfigFile), err)
		}
		return nil, fmt.Errorf("load tenant %s: %w", dir, err)
	}
	cfg, err := Parse(data, filepath.Base(abs))
	if err != nil {
		var le *LoadError
		if errors.As(err, &le) {
			le.File = file
		}
		return nil, err
	}
	return &Tenant{Dir: abs, Config: cfg, Source: data}, nil
}

// readConfigNoLink reads dir/tenant.toml through an os.Root of dir, never
// following a symbolic link: a linked tenant.toml could name any file the
// server can read, and its keys and values would be echoed to the agent.
func readConfigNoLink(dir string) ([]byte, error) {
	root, err := openDir(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	b, _, err := readNoLink(root, ConfigFile)
	return b, err
}

// Parse decodes and validates the bytes of a tenant.toml. dirName is the base
// name of the tenant directory, which the name key must equal; "" skips that
// check. Problems are reported as a *LoadError with File "tenant.toml".
func Parse(data []byte, dirName string) (Config, error) {
	var cfg Config
	// A UTF-8 BOM is what some editors write; the TOML parser rejects it.
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&cfg)
	if err != nil {
		return Config{}, &LoadError{File: ConfigFile, Problems: []Problem{decodeProblem(err, data)}}
	}
	applyDefaults(&cfg, md)
	ps := unknownKeys(md)
	ps = append(ps, validate(&cfg, dirName)...)
	if len(ps) > 0 {
		return Config{}, &LoadError{File: ConfigFile, Problems: ps}
	}
	return cfg, nil
}

// typeErrRE matches the decoder's type mismatch message, which carries the
// line and key only inside its text.
var typeErrRE = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

func decodeProblem(err error, data []byte) Problem {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		p := Problem{Key: pe.LastKey, Msg: pe.Message, Line: pe.Position.Line, Col: pe.Position.Col}
		if p.Col == 0 && pe.Position.Start > 0 && pe.Position.Start <= len(data) {
			p.Col = pe.Position.Start - bytes.LastIndexByte(data[:pe.Position.Start], '\n')
		}
		return p
	}
	if m := typeErrRE.FindStringSubmatch(err.Error()); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{Key: m[2], Msg: m[3], Line: line}
	}
	return Problem{Msg: strings.TrimPrefix(err.Error(), "toml: ")}
}

// Path returns the absolute path of rel inside the tenant, refusing absolute
// paths, paths that climb out and symlinks that lead out.
func (t *Tenant) Path(rel string) (string, error) {
	p, err := fsx.Confine(t.Dir, rel)
	if err != nil {
		return "", fmt.Errorf("tenant %s: %w", t.Config.Name, err)
	}
	return p, nil
}

// Name is the tenant's name (equal to its directory name).
func (t *Tenant) Name() string { return t.Config.Name }

// TrainPath is data/train.jsonl, the only split written into the workspace.
func (t *Tenant) TrainPath() string { return filepath.Join(t.Dir, filepath.FromSlash(TrainFile)) }

// ChainPath is the baseline chain.toml.
func (t *Tenant) ChainPath() string { return filepath.Join(t.Dir, ChainFile) }

// PromptsDir holds the baseline prompt templates.
func (t *Tenant) PromptsDir() string { return filepath.Join(t.Dir, PromptsDir) }

// RunsDir holds train runs (and summaries of validation runs).
func (t *Tenant) RunsDir() string { return filepath.Join(t.Dir, RunsDir) }

// VariantsDir holds the immutable variant snapshots.
func (t *Tenant) VariantsDir() string { return filepath.Join(t.Dir, VariantsDir) }

// JournalPath is the append-only session journal.
func (t *Tenant) JournalPath() string { return filepath.Join(t.Dir, JournalFile) }

// List loads every workspace/tenants/*/tenant.toml, sorted by name. A tenant
// that fails to load is reported in the errors and left out of the list, so
// one broken tenant does not hide the others.
func List(workspace string) ([]*Tenant, []error) {
	matches, err := filepath.Glob(filepath.Join(workspace, TenantsDir, "*", ConfigFile))
	if err != nil {
		return nil, []error{err}
	}
	var (
		out  []*Tenant
		errs []error
	)
	for _, m := range matches {
		dir := filepath.Dir(m)
		if fi, err := os.Lstat(dir); err == nil && fi.Mode()&os.ModeSymlink != 0 {
			errs = append(errs, &LinkedDirError{Tenant: filepath.Base(dir), Path: dir})
			continue
		}
		t, err := Load(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b *Tenant) int { return strings.Compare(a.Config.Name, b.Config.Name) })
	return out, errs
}

// Resolve finds and loads a tenant by name ("capitals") or by path relative
// to the workspace ("tenants/capitals"); see ResolveDir.
func Resolve(workspace, nameOrPath string) (*Tenant, error) {
	dir, err := ResolveDir(workspace, nameOrPath)
	if err != nil {
		return nil, err
	}
	return Load(dir)
}

// ResolveDir returns the absolute directory of the tenant named by
// nameOrPath without requiring it to exist (fapo init uses it before the
// directory is made). It accepts a bare name, a path relative to the
// workspace or an absolute path, and refuses anything that is not a direct
// child of workspace/tenants with a valid tenant name: every tenant lives
// there, and a path from a caller must never reach elsewhere.
func ResolveDir(workspace, nameOrPath string) (string, error) {
	if strings.TrimSpace(nameOrPath) == "" {
		return "", fmt.Errorf("no tenant given; name one, e.g. \"capitals\" or \"tenants/capitals\"")
	}
	absWS, err := filepath.Abs(workspace)
	if err != nil {
		return "", err
	}
	root := filepath.Join(absWS, TenantsDir)
	p := nameOrPath
	if !filepath.IsAbs(p) {
		p = filepath.Join(absWS, p)
		if !strings.ContainsAny(nameOrPath, `/\`) && nameOrPath != "." && nameOrPath != ".." {
			p = filepath.Join(root, nameOrPath)
		}
	}
	p = filepath.Clean(p)
	rel, err := filepath.Rel(root, p)
	if err != nil || rel == "." || !filepath.IsLocal(rel) || strings.ContainsAny(rel, `/\`) {
		return "", fmt.Errorf("%q is not a tenant of workspace %s: tenants live directly in %s/<name>", nameOrPath, workspace, filepath.Join(workspace, TenantsDir))
	}
	if !ValidName(rel) {
		return "", fmt.Errorf("%q is not a valid tenant name: use lowercase letters, digits, '_' and '-', starting with a letter or digit", rel)
	}
	// The text of the path stays inside; a symlinked tenant directory could
	// still lead out.
	if _, err := os.Stat(root); err == nil {
		if _, err := fsx.Confine(root, rel); err != nil {
			return "", fmt.Errorf("tenant %q: %w", rel, err)
		}
	}
	// Even a link that stays inside (tenants/x → tenants/y) is refused: every
	// operation opens the tenant by this path again, so the link could be
	// pointed elsewhere between the pin check and the run, and two names
	// would share one directory's runs and variants.
	if fi, err := os.Lstat(p); err == nil && fi.Mode()&os.ModeSymlink != 0 {
		return "", &LinkedDirError{Tenant: rel, Path: filepath.Join(workspace, TenantsDir, rel)}
	}
	return p, nil
}

// openDir opens a tenant directory as an os.Root. A link in its place is
// refused, even one swapped in after ResolveDir looked at the path: what
// is opened is compared with what was checked.
func openDir(dir string) (*os.Root, error) {
	root, err := fsx.OpenRoot(dir)
	var np *fsx.NotPlainError
	if errors.As(err, &np) && np.Linked() {
		return nil, &LinkedDirError{Tenant: filepath.Base(dir), Path: dir}
	}
	return root, err
}

// LinkedDirError refuses a tenant whose directory is a symbolic link.
type LinkedDirError struct {
	Tenant string
	Path   string
}

func (e *LinkedDirError) Error() string {
	return fmt.Sprintf("tenant %q: %s is a symbolic link; fapo works only on a tenant directory itself, never through a link (it could be repointed while the server works): move the directory there in place of the link (mv), then try again",
		e.Tenant, e.Path)
}
