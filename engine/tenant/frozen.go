package tenant

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/internal/fsx"
	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/scoring"
)

// ScorerDir is the tenant directory for a scorer's own files: everything
// under it is pinned, so a command scorer may keep helper modules there
// beside the script its command names.
const ScorerDir = "scorer"

// PipelineDir is the tenant directory for an external pipeline's program
// (tenant.toml [pipeline]): everything under it is pinned like scorer/, so
// the program, its modules and its data run only as verified.
const PipelineDir = "pipeline"

// CorpusDir is the tenant directory for retrieval corpora: everything under
// it is pinned, and a retrieve step of a sealed tenant's chain may search
// only a pinned corpus (a file under corpus/, or a [tools.NAME] corpus),
// read from the verified bytes.
const CorpusDir = "corpus"

// Frozen is what the server read of a tenant's frozen files at one moment:
// the bytes of tenant.toml and of every file the scorer and the declared
// tools use, and the hash of each (and of data/train.jsonl). The server
// compares the hashes with the ones pinned in the sealed manifest and then
// acts on exactly these bytes: the config is parsed from them and scorer
// and tool files run from a copy of them, never from the workspace again.
type Frozen struct {
	// Dir is the absolute tenant directory.
	Dir string
	// Source is the bytes of tenant.toml; Config was parsed from them,
	// unless ConfigErr says why not.
	Source    []byte
	Config    Config
	ConfigErr error
	// Files are the frozen files other than tenant.toml and the train
	// split, by tenant-relative slash path.
	Files map[string]dataset.MaterializedFile
	// Sums is the sha256 of every frozen file found, tenant.toml and
	// data/train.jsonl included.
	Sums map[string]string
	// Links are frozen paths that are symbolic links: never followed, and
	// never equal to a pinned file.
	Links map[string]bool
}

// ReadFrozen reads the frozen files of the tenant in dir: tenant.toml, the
// files its scorer and tools name, everything under scorer/, and
// data/train.jsonl, plus the paths in also (the ones pinned before, so a
// file the config no longer names is still compared). Files are read
// through an os.Root of the tenant and a symbolic link is never followed.
// A tenant.toml that does not parse is reported in ConfigErr, not as an
// error: the change still has to be shown.
func ReadFrozen(dir string, also []string) (*Frozen, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	root, err := openDir(abs)
	if err != nil {
		return nil, fmt.Errorf("%s: not a tenant directory: %w", dir, err)
	}
	defer root.Close()
	src, _, err := readNoLink(root, ConfigFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, refusal.Wrap(refusal.CreateTenant, dir, fmt.Sprintf("%s: not a tenant (no %s)", dir, ConfigFile), err)
	}
	if err != nil {
		return nil, fmt.Errorf("load tenant %s: %w", dir, err)
	}
	f := &Frozen{Dir: abs, Source: src, Files: map[string]dataset.MaterializedFile{},
		Sums: map[string]string{ConfigFile: sha256Hex(src)}, Links: map[string]bool{}}
	f.Config, f.ConfigErr = Parse(src, filepath.Base(abs))
	var le *LoadError
	if errors.As(f.ConfigErr, &le) {
		le.File = filepath.Join(dir, ConfigFile)
	}
	paths := slices.Clone(also)
	if f.ConfigErr == nil {
		named, err := namedFiles(root.FS(), f.Config)
		if err != nil {
			return nil, err
		}
		paths = append(paths, named...)
	}
	slices.Sort(paths)
	for _, p := range slices.Compact(paths) {
		if p == ConfigFile || p == dataset.TrainFile {
			continue
		}
		b, exec, err := readNoLink(root, p)
		switch {
		case errors.Is(err, errSymlink):
			f.Links[p] = true
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return nil, fmt.Errorf("tenant %s: read %s: %w", filepath.Base(abs), p, err)
		default:
			f.Files[p] = dataset.MaterializedFile{Data: b, Exec: exec}
			f.Sums[p] = sha256Hex(b)
		}
	}
	// The train split can be large: hashed as it streams, not kept.
	sum, err := hashNoLink(root, dataset.TrainFile)
	switch {
	case errors.Is(err, errSymlink):
		f.Links[dataset.TrainFile] = true
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("tenant %s: read %s: %w", filepath.Base(abs), dataset.TrainFile, err)
	default:
		f.Sums[dataset.TrainFile] = sum
	}
	return f, nil
}

// Tenant returns the tenant as its frozen tenant.toml describes it.
func (f *Frozen) Tenant() (*Tenant, error) {
	if f.ConfigErr != nil {
		return nil, f.ConfigErr
	}
	return &Tenant{Dir: f.Dir, Config: f.Config, Source: f.Source, TrainSHA256: f.Sums[dataset.TrainFile]}, nil
}

// FS is the frozen files other than tenant.toml and the train split, as
// read and hashed: the verified bytes that corpora are searched from.
func (f *Frozen) FS() fs.FS {
	m := make(fsx.MapFS, len(f.Files))
	for p, file := range f.Files {
		m[p] = file.Data
	}
	return m
}

// Pinned returns what a seal or pin records: the bytes of the frozen files
// other than the train split (whose hash the seal computes as it writes it).
func (f *Frozen) Pinned() map[string][]byte {
	out := map[string][]byte{ConfigFile: f.Source}
	for p, file := range f.Files {
		out[p] = file.Data
	}
	return out
}

var errSymlink = errors.New("is a symbolic link; fapo does not follow links among a tenant's frozen files")

// openNoLink opens rel inside root, refusing a symbolic link at its end
// (os.Root already keeps every step of the way inside the tenant).
func openNoLink(root *os.Root, rel string) (*os.File, fs.FileInfo, error) {
	name := filepath.FromSlash(rel)
	fi, err := root.Lstat(name)
	if err != nil {
		return nil, nil, err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, nil, fmt.Errorf("%s %w", rel, errSymlink)
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s is not a regular file", rel)
	}
	fh, err := root.Open(name)
	if err != nil {
		return nil, nil, err
	}
	// The file opened must be the one checked: a link swapped in between
	// the Lstat and the Open is caught here.
	if ofi, err := fh.Stat(); err != nil || !os.SameFile(fi, ofi) {
		_ = fh.Close()
		return nil, nil, fmt.Errorf("%s changed while it was opened; try again", rel)
	}
	return fh, fi, nil
}

func readNoLink(root *os.Root, rel string) ([]byte, bool, error) {
	fh, fi, err := openNoLink(root, rel)
	if err != nil {
		return nil, false, err
	}
	defer func() { _ = fh.Close() }()
	b, err := io.ReadAll(fh)
	return b, fi.Mode().Perm()&0o100 != 0, err
}

func hashNoLink(root *os.Root, rel string) (string, error) {
	fh, _, err := openNoLink(root, rel)
	if err != nil {
		return "", err
	}
	defer func() { _ = fh.Close() }()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// namedFiles lists the tenant files the config makes the server use besides
// chain and prompts (which variants pin): the files a command scorer's or an
// MCP tool's command names, rubric files, everything under scorer/ and
// corpus/, and retrieval tools' corpora. An argument names a file when it is a relative
// path to a regular file of the tenant (also as the value of --flag=VALUE);
// executables found on PATH are not tenant files.
func namedFiles(fsys fs.FS, cfg Config) ([]string, error) {
	var out []string
	add := func(p string) {
		if p = localPath(p); p != "" {
			if fi, err := fs.Lstat(fsys, p); err == nil && (fi.Mode().IsRegular() || fi.Mode()&fs.ModeSymlink != 0) {
				out = append(out, p)
			}
		}
	}
	args := func(argv []string) {
		for _, a := range argv {
			add(a)
			if _, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(a, "-") {
				add(v)
			}
		}
	}
	walkSpec(cfg.Scorer, "scorer", func(_ string, s scoring.Spec) {
		args(s.Command)
		if s.RubricFile != "" {
			add(s.RubricFile)
		}
	})
	for _, name := range slices.Sorted(maps.Keys(cfg.Tools)) {
		t := cfg.Tools[name]
		if t.Corpus != "" {
			add(t.Corpus)
		}
		args(t.Command)
	}
	if cfg.Pipeline != nil {
		args(cfg.Pipeline.Command)
	}
	for _, dir := range []string{ScorerDir, PipelineDir, CorpusDir} {
		err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) && p == dir {
					return fs.SkipAll
				}
				return err
			}
			if !d.IsDir() {
				out = append(out, p) // links too: they are refused, not skipped
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list %s/: %w", dir, err)
		}
	}
	return out, nil
}

// localPath returns p as a clean slash path inside the tenant, or "".
func localPath(p string) string {
	if p == "" || filepath.IsAbs(p) || !filepath.IsLocal(p) {
		return ""
	}
	p = path.Clean(filepath.ToSlash(p))
	if p == "." || !fs.ValidPath(p) {
		return ""
	}
	return p
}

// Seal splits req.Source into the tenant's train, validation and test splits
// and pins its frozen files in the same manifest (req names the source,
// force, origin and progress; the tenant fields are filled in here), with
// the model endpoints as getenv (the operator's environment) makes them.
// The split configuration comes from the tenant.toml bytes that are pinned,
// so what was sealed is what is recorded.
func Seal(ctx context.Context, store *dataset.Store, dir string, req dataset.SealRequest, getenv func(string) string) (*Tenant, *dataset.Manifest, error) {
	f, err := ReadFrozen(dir, nil)
	if err != nil {
		return nil, nil, err
	}
	t, err := f.Tenant()
	if err != nil {
		return nil, nil, err
	}
	for p := range f.Links {
		if p == dataset.TrainFile {
			continue // the seal replaces it
		}
		return nil, nil, fmt.Errorf("tenant %s: %s %w: replace it with the file itself, then seal", t.Name(), p, errSymlink)
	}
	req.TenantName, req.TenantDir, req.Split, req.TaskType, req.Pinned = t.Name(), t.Dir, t.Config.Data.Split(), t.Config.TaskType, f.Pinned()
	req.Endpoints = t.Config.Endpoints(getenv)
	m, err := store.Seal(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	return t, m, nil
}
