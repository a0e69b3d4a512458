package variant

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/fapo-dev/fapo/engine/internal/fsx"
)

// Store is the variant store of one tenant. The zero value is not usable;
// call Open. A Store holds no open files and is safe for concurrent use, also
// by several processes: ids are reserved with os.Mkdir, which the file
// system makes atomic.
type Store struct {
	dir string
	key []byte
	now func() time.Time
	// unsigned accepts a keyed manifest without checking its signature
	// (WithoutSignature).
	unsigned bool
}

// Option configures a Store.
type Option func(*Store)

// WithKey signs manifests with HMAC-SHA256 under key instead of a plain
// sha256, so a manifest rewritten by someone without the key is detected.
func WithKey(key []byte) Option {
	return func(s *Store) { s.key = append([]byte(nil), key...) }
}

// WithoutSignature opens a keyed store without its key, for a reader that
// must not hold the key (the Explorer): every file is still checked against
// the manifest's hashes, but the manifest's own signature is not, which
// Variant.SignatureChecked reports.
func WithoutSignature() Option {
	return func(s *Store) { s.unsigned = true }
}

// WithClock sets the clock of manifest timestamps (tests).
func WithClock(now func() time.Time) Option {
	return func(s *Store) { s.now = now }
}

// Open returns the store in tenantDir/variants. Nothing is created until the
// first write.
func Open(tenantDir string, opts ...Option) *Store {
	s := &Store{dir: filepath.Join(tenantDir, "variants"), now: time.Now}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Dir is the directory holding the variants.
func (s *Store) Dir() string { return s.dir }

// Variant is a verified variant: its files matched the manifest when it was
// read, and it holds them.
type Variant struct {
	ID       ID
	Manifest Manifest
	// Dir is where the variant lives on disk, for messages. Never read a
	// file from it: the disk may have changed since verification; use FS.
	Dir   string
	files map[string][]byte
	// SignatureChecked is false only for a keyed manifest read by a store
	// opened WithoutSignature.
	SignatureChecked bool
}

// FS serves the variant's verified files (chain.toml, prompts/**), for
// chain.LoadFS: what runs is exactly what was verified.
func (v *Variant) FS() fs.FS { return fsx.MapFS(v.Files()) }

// Files returns a copy of the variant's files, keyed by relative path; a
// caller may modify it to build a proposal.
func (v *Variant) Files() map[string][]byte {
	out := make(map[string][]byte, len(v.files))
	for k, b := range v.files {
		out[k] = append([]byte(nil), b...)
	}
	return out
}

// File returns one file of the variant.
func (v *Variant) File(rel string) ([]byte, bool) {
	b, ok := v.files[rel]
	return append([]byte(nil), b...), ok
}

// Proposal is a new variant as an agent proposes it.
type Proposal struct {
	Parent        ID
	Level         Level
	Rationale     string
	TargetCluster string
	// Files is the complete file set of the new variant (chain.toml and
	// prompts/**), not only what changed: start from the parent's Files().
	Files   map[string][]byte
	Session string
}

// EnsureBaseline materializes v0000 from the tenant's baseline files the
// first time and, on later calls, checks that the baseline still matches
// it: the baseline is where every comparison starts, so it may not drift.
func (s *Store) EnsureBaseline(files map[string][]byte) (*Variant, error) {
	if err := validateFiles(files); err != nil {
		return nil, fmt.Errorf("tenant baseline: %w", err)
	}
	v, err := s.Get(Baseline)
	switch {
	case err == nil:
		return v, s.checkBaseline(v, files)
	case errors.As(err, new(*IncompleteError)):
		// v0000 is never reserved, so an empty directory is not a
		// proposal in flight; os.Remove takes it only if it is still empty.
		if rerr := os.Remove(filepath.Join(s.dir, string(Baseline))); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			return nil, fmt.Errorf("variants/v0000 is an empty directory that cannot be removed (%v): remove it and retry", rerr)
		}
	case !errors.As(err, new(*NotFoundError)):
		return nil, err
	}
	m := Manifest{ID: Baseline, Level: LevelBaseline, Rationale: "the tenant's baseline chain and prompts"}
	// v0000 is never reserved first: it is renamed into a free name, so a
	// crash leaves only a temporary directory and two processes racing here
	// both end up verifying the one that won.
	if err := s.write(context.Background(), m, files, false); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	if v, err = s.Get(Baseline); err != nil {
		return nil, err
	}
	return v, s.checkBaseline(v, files)
}

func (s *Store) checkBaseline(v *Variant, files map[string][]byte) error {
	if sameFiles(v.files, files) {
		return nil
	}
	changed := changedPaths(v.files, files)
	return fmt.Errorf("the tenant's baseline no longer matches variants/v0000 (%s differs); v0000 is immutable: restore the tenant's baseline files, or propose the change as a new variant",
		strings.Join(changed, ", "))
}

// Create writes a proposal as a new variant with the next free id.
func (s *Store) Create(ctx context.Context, p Proposal) (*Variant, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := ParseLevel(string(p.Level)); err != nil {
		return nil, err
	}
	if strings.TrimSpace(p.Rationale) == "" {
		return nil, fmt.Errorf("a proposal needs a rationale: say which failures it targets and why the change should fix them")
	}
	if err := validateFiles(p.Files); err != nil {
		return nil, err
	}
	if _, err := ParseID(string(p.Parent)); err != nil {
		return nil, fmt.Errorf("parent: %w", err)
	}
	parent, err := s.Get(p.Parent)
	if err != nil {
		return nil, fmt.Errorf("parent %s: %w", p.Parent, err)
	}
	if sameFiles(parent.files, p.Files) {
		return nil, fmt.Errorf("the proposal is identical to its parent %s: change at least one file", p.Parent)
	}
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, fmt.Errorf("create variant store: %w", err)
	}
	id, err := s.reserve()
	if err != nil {
		return nil, err
	}
	m := Manifest{ID: id, Parent: p.Parent, Level: p.Level, Rationale: p.Rationale,
		TargetCluster: p.TargetCluster, Session: p.Session}
	if err := s.write(ctx, m, p.Files, true); err != nil {
		// Free the reservation: nothing refers to the id yet.
		_ = os.Remove(filepath.Join(s.dir, string(id)))
		return nil, err
	}
	return s.Get(id)
}

// reserve takes the next free id by creating its directory, which fails
// with EEXIST for every process but one.
func (s *Store) reserve() (ID, error) {
	n := max(s.maxNum()+1, 1)
	for range 10000 {
		id := FormatID(n)
		err := os.Mkdir(filepath.Join(s.dir, string(id)), 0o755)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("reserve variant %s: %w", id, err)
		}
		n++
	}
	return "", fmt.Errorf("could not reserve a variant id in %s: too many concurrent proposals", s.dir)
}

func (s *Store) maxNum() int {
	ids, _ := s.ids()
	if len(ids) == 0 {
		return 0
	}
	return ids[len(ids)-1].Num()
}

// ids lists the directory names that are variant ids, in order.
func (s *Store) ids() ([]ID, error) {
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list variants: %w", err)
	}
	var ids []ID
	for _, e := range entries {
		if id, err := ParseID(e.Name()); err == nil {
			ids = append(ids, id)
		}
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].Num() < ids[j].Num() })
	return ids, nil
}

// write builds the variant in a temporary directory, seals it read-only and
// renames it into place, so no reader ever sees half a variant. With
// reserved, the destination is the empty directory reserve created, which
// rename(2) replaces atomically; otherwise the destination must not exist
// and fs.ErrExist reports that another writer won.
func (s *Store) write(ctx context.Context, m Manifest, files map[string][]byte, reserved bool) error {
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return fmt.Errorf("create variant store: %w", err)
	}
	tmp, err := os.MkdirTemp(s.dir, "."+string(m.ID)+".tmp-")
	if err != nil {
		return fmt.Errorf("write variant %s: %w", m.ID, err)
	}
	committed := false
	defer func() {
		if !committed {
			unseal(tmp)
			_ = os.RemoveAll(tmp)
		}
	}()
	m.Created = s.now().UTC().Truncate(time.Millisecond)
	m.Files = make(map[string]string, len(files))
	for _, rel := range slices.Sorted(maps.Keys(files)) {
		if err := ctx.Err(); err != nil {
			return err
		}
		dst, err := fsx.Confine(tmp, rel)
		if err != nil {
			return fmt.Errorf("write variant %s: %w", m.ID, err)
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return fmt.Errorf("write variant %s: %w", m.ID, err)
		}
		if err := writeSynced(dst, files[rel]); err != nil {
			return fmt.Errorf("write variant %s: %w", m.ID, err)
		}
		m.Files[rel] = hashBytes(files[rel])
	}
	raw, err := encodeManifest(m, s.key)
	if err != nil {
		return err
	}
	if err := writeSynced(filepath.Join(tmp, ManifestFile), raw); err != nil {
		return fmt.Errorf("write variant %s: %w", m.ID, err)
	}
	if err := seal(tmp); err != nil {
		return fmt.Errorf("seal variant %s: %w", m.ID, err)
	}
	dst := filepath.Join(s.dir, string(m.ID))
	if !reserved {
		if _, err := os.Lstat(dst); err == nil {
			return fs.ErrExist
		}
	}
	// os.Rename refuses an existing directory as destination; rename(2)
	// replaces an empty one, which is exactly the reservation.
	if err := syscall.Rename(tmp, dst); err != nil {
		if errors.Is(err, syscall.ENOTEMPTY) || errors.Is(err, syscall.EEXIST) {
			return fs.ErrExist
		}
		return fmt.Errorf("write variant %s: %w", m.ID, err)
	}
	committed = true
	syncDir(s.dir)
	return nil
}

func writeSynced(p string, b []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// syncDir makes a rename durable where it can. It is best effort: some
// file systems refuse fsync on a directory, and the rename has happened.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}

// seal makes a variant tree read-only: files 0444, directories 0555. It
// does not stop a determined owner, but it stops an editor or a tool from
// writing into a variant by accident; the hashes catch the rest.
// The walk's names are chmodded through an os.Root, so a link planted
// in the tree between the walk and the chmod cannot lead outside it.
func seal(root string) error {
	r, err := os.OpenRoot(root)
	if err != nil {
		return err
	}
	defer func() { _ = r.Close() }()
	var dirs []string
	err = fs.WalkDir(r.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		return r.Chmod(p, 0o444)
	})
	if err != nil {
		return err
	}
	// Deepest first, so a parent stays writable until its children are done.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := r.Chmod(dirs[i], 0o555); err != nil {
			return err
		}
	}
	return nil
}

// unseal makes a tree writable again so it can be removed. It is best
// effort, ahead of a removal whose own failure is what matters.
// Like seal, it chmods through an os.Root so a planted link leads nowhere.
func unseal(root string) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return
	}
	defer func() { _ = r.Close() }()
	_ = fs.WalkDir(r.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = r.Chmod(p, 0o755)
		}
		return nil
	})
}

// Get reads a variant and verifies every file against its manifest: the
// manifest's digest, the hash of each file, and that the file set is exactly
// the one recorded. Any mismatch is a *TamperedError. The files are read
// through an os.Root refusing links, once: the Variant holds the bytes that
// were verified, and FS serves them, so nothing is read from disk again.
func (s *Store) Get(id ID) (*Variant, error) {
	if _, err := ParseID(string(id)); err != nil {
		return nil, err
	}
	dir := filepath.Join(s.dir, string(id))
	root, err := fsx.OpenRoot(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, s.notFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("read variant %s: %w", id, err)
	}
	defer root.Close()
	fi, err := root.Lstat(string(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, s.notFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("read variant %s: %w", id, err)
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, &TamperedError{ID: id, File: string(id), Problem: "is a symlink, which no variant is: remove it"}
	}
	if !fi.IsDir() {
		return nil, &TamperedError{ID: id, File: string(id), Problem: "is not a directory"}
	}
	read := func(rel string) ([]byte, error) {
		b, err := fsx.ReadFile(root, string(id)+"/"+rel)
		var np *fsx.NotPlainError
		if errors.As(err, &np) {
			return nil, &TamperedError{ID: id, File: rel, Problem: "is " + np.Kind + ", which no variant contains: remove it"}
		}
		return b, err
	}
	raw, err := read(ManifestFile)
	if errors.Is(err, fs.ErrNotExist) {
		if entries, _ := fs.ReadDir(root.FS(), string(id)); len(entries) == 0 {
			return nil, &IncompleteError{ID: id}
		}
		return nil, &TamperedError{ID: id, File: ManifestFile, Problem: "is missing"}
	}
	if err != nil {
		if te := (*TamperedError)(nil); errors.As(err, &te) {
			return nil, te
		}
		return nil, &TamperedError{ID: id, File: ManifestFile, Problem: err.Error()}
	}
	signed := true
	m, problem := decodeManifest(raw, s.key)
	if problem != "" && s.unsigned && len(s.key) == 0 && bytes.HasPrefix(raw, []byte(digestPrefix+schemeHMACSHA256)) {
		_, body, _ := bytes.Cut(raw, []byte("\n"))
		m, problem, signed = Manifest{}, "", false
		if _, err := toml.Decode(string(body), &m); err != nil {
			problem = "does not parse"
		}
	}
	if problem != "" {
		return nil, &TamperedError{ID: id, File: ManifestFile, Problem: problem}
	}
	if m.ID != id {
		return nil, &TamperedError{ID: id, File: ManifestFile, Problem: fmt.Sprintf("names variant %q, not %s", m.ID, id)}
	}
	files := make(map[string][]byte, len(m.Files))
	err = fs.WalkDir(root.FS(), string(id), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(strings.TrimPrefix(p, string(id)), "/")
		switch {
		case rel == "" || rel == ManifestFile:
			return nil
		case d.Type()&fs.ModeSymlink != 0:
			return &TamperedError{ID: id, File: rel, Problem: "is a symlink, which no variant contains: remove it"}
		case d.IsDir():
			return nil
		case !d.Type().IsRegular():
			return &TamperedError{ID: id, File: rel, Problem: "is not a regular file"}
		}
		want, ok := m.Files[rel]
		if !ok {
			return &TamperedError{ID: id, File: rel, Problem: "was added after the variant was written"}
		}
		b, err := read(rel)
		if err != nil {
			if te := (*TamperedError)(nil); errors.As(err, &te) {
				return te
			}
			return fmt.Errorf("read variant %s: %w", id, err)
		}
		if got := hashBytes(b); got != want {
			return &TamperedError{ID: id, File: rel, Problem: fmt.Sprintf("was changed (sha256 %.12s… on disk, %.12s… in the manifest)", got, want)}
		}
		files[rel] = b
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, rel := range slices.Sorted(maps.Keys(m.Files)) {
		if _, ok := files[rel]; !ok {
			return nil, &TamperedError{ID: id, File: rel, Problem: "is missing"}
		}
	}
	return &Variant{ID: id, Manifest: m, Dir: dir, files: files, SignatureChecked: signed}, nil
}

func (s *Store) notFound(id ID) error {
	ids, _ := s.ids()
	e := &NotFoundError{ID: id}
	if len(ids) > 0 {
		e.Latest = ids[len(ids)-1]
	}
	return e
}

// List returns the manifests of every complete variant in id order, each
// verified like Get. Variants that fail verification are left out and
// reported together in the error, so one tampered variant does not hide the
// others; reservations of interrupted proposals are skipped.
func (s *Store) List() ([]Manifest, error) {
	ids, err := s.ids()
	if err != nil {
		return nil, err
	}
	var out []Manifest
	var errs []error
	for _, id := range ids {
		v, err := s.Get(id)
		if errors.As(err, new(*IncompleteError)) || errors.As(err, new(*NotFoundError)) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		out = append(out, v.Manifest)
	}
	return out, errors.Join(errs...)
}

// Lineage returns id and its ancestors, newest first, down to v0000.
func (s *Store) Lineage(id ID) ([]Manifest, error) {
	var out []Manifest
	for seen := map[ID]bool{}; id != ""; {
		if seen[id] {
			return nil, &TamperedError{ID: id, File: ManifestFile, Problem: "closes a parent cycle"}
		}
		seen[id] = true
		v, err := s.Get(id)
		if err != nil {
			return nil, err
		}
		out = append(out, v.Manifest)
		id = v.Manifest.Parent
	}
	return out, nil
}

func changedPaths(a, b map[string][]byte) []string {
	all := maps.Clone(a)
	maps.Copy(all, b)
	var out []string
	for _, rel := range slices.Sorted(maps.Keys(all)) {
		x, inA := a[rel]
		y, inB := b[rel]
		if inA != inB || string(x) != string(y) {
			out = append(out, rel)
		}
	}
	return out
}
