package dataset

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/fapo-dev/fapo/engine/internal/fsx"
	"github.com/fapo-dev/fapo/engine/refusal"
)

// TrainFile is where a seal writes the train split, relative to the tenant
// directory; it is pinned like the tenant's other frozen files.
const TrainFile = "data/train.jsonl"

func (s *Store) pinnedDir(name string) string { return filepath.Join(s.tenantDir(name), "pinned") }

// blobPath is where the copy of a pinned file lives: named by its hash, so
// a copy is written once and one path never holds two contents.
func (s *Store) blobPath(name, sum string) string { return filepath.Join(s.pinnedDir(name), sum) }

func sha256Hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func sortedPaths[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// pinSums is the manifest's Pinned map for files and the train split.
func pinSums(files map[string][]byte, trainSHA string) map[string]string {
	out := make(map[string]string, len(files)+1)
	for p, b := range files {
		out[p] = sha256Hex(b)
	}
	if trainSHA != "" {
		out[TrainFile] = trainSHA
	}
	return out
}

// Pin records new hashes of a sealed tenant's frozen files: files are their
// bytes as the caller read and verified them (train.jsonl excepted, whose
// hash is trainSHA, "" when it is absent), and endpoints its model
// endpoints as the operator's environment makes them. The split is not
// touched. This is the operator accepting a change of the frozen files or
// of the endpoints (fapo pin).
func (s *Store) Pin(name string, files map[string][]byte, trainSHA string, endpoints map[string]Endpoint) (*Manifest, error) {
	m, err := s.Manifest(name)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(s.pinnedDir(name), 0o700); err != nil {
		return nil, fmt.Errorf("create sealed store: %w", err)
	}
	for _, rel := range sortedPaths(files) {
		p := s.blobPath(name, sha256Hex(files[rel]))
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		if err := fsx.WriteFileAtomic(p, files[rel], 0o600); err != nil {
			return nil, fmt.Errorf("pin %s: %w", rel, err)
		}
	}
	// Not truncated like CreatedAt: a pin is later than its seal even
	// within the same second, and the messages say which one they compare with.
	m.Pinned, m.PinnedAt, m.Endpoints = pinSums(files, trainSHA), time.Now().UTC(), endpoints
	if trainSHA != "" {
		m.TrainSHA256 = trainSHA
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := fsx.WriteFileAtomic(s.ManifestPath(name), append(b, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("write manifest: %w", err)
	}
	return m, nil
}

// PinnedFile returns the copy of a pinned file kept when it was pinned,
// checked against the manifest's hash. It is how a change can be shown key
// by key: the workspace's copy may already be the changed one.
func (s *Store) PinnedFile(name, rel string) ([]byte, error) {
	m, err := s.Manifest(name)
	if err != nil {
		return nil, err
	}
	sum, ok := m.Pinned[rel]
	if !ok {
		return nil, fmt.Errorf("%s of tenant %s is not pinned", rel, name)
	}
	b, err := os.ReadFile(s.blobPath(name, sum))
	if err != nil {
		return nil, refusal.Wrap(refusal.Pin, name, fmt.Sprintf("read the pinned copy of %s", rel), err)
	}
	if sha256Hex(b) != sum {
		return nil, refusal.New(refusal.Pin, name, fmt.Sprintf("the pinned copy of %s in %s does not match its hash: the sealed store was modified", rel, s.pinnedDir(name)))
	}
	return b, nil
}

// MaterializedFile is one file of a verified copy: its bytes and whether it
// is executable (a command scorer may run a script directly).
type MaterializedFile struct {
	Data []byte
	Exec bool
}

// Materialize writes files (verified bytes, by tenant-relative slash path)
// into a private directory of the sealed store and returns it: directories
// 0700, files 0600 (0700 when executable). A command scorer or tool server
// runs from there, so swapping a script in the workspace after the check
// cannot change what runs. The directory is named by its content and
// written once, through a temporary directory renamed into place, so it is
// complete or absent.
func (s *Store) Materialize(name string, files map[string]MaterializedFile) (string, error) {
	if err := checkName(name); err != nil {
		return "", err
	}
	h := sha256.New()
	for _, rel := range sortedPaths(files) {
		f := files[rel]
		fmt.Fprintf(h, "%s\x00%s\x00%t\x00", rel, sha256Hex(f.Data), f.Exec)
	}
	id := hex.EncodeToString(h.Sum(nil))[:32]
	parent := s.pinnedDir(name)
	dest := filepath.Join(parent, "files-"+id)
	if fi, err := os.Lstat(dest); err == nil && fi.IsDir() {
		return dest, nil
	}
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return "", fmt.Errorf("create sealed store: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, ".files-*")
	if err != nil {
		return "", fmt.Errorf("materialize pinned files: %w", err)
	}
	defer func() { _ = os.RemoveAll(tmp) }() // a no-op after the rename
	for _, rel := range sortedPaths(files) {
		if !fs.ValidPath(rel) || rel == "." {
			return "", fmt.Errorf("materialize pinned files: %q is not a relative path", rel)
		}
		p := filepath.Join(tmp, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return "", fmt.Errorf("materialize %s: %w", rel, err)
		}
		perm := os.FileMode(0o600)
		if files[rel].Exec {
			perm = 0o700
		}
		if err := os.WriteFile(p, files[rel].Data, perm); err != nil {
			return "", fmt.Errorf("materialize %s: %w", rel, err)
		}
		if err := os.Chmod(p, perm); err != nil { // the umask may have narrowed it
			return "", fmt.Errorf("materialize %s: %w", rel, err)
		}
	}
	if err := os.Chmod(tmp, 0o700); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dest); err != nil {
		if fi, serr := os.Lstat(dest); serr == nil && fi.IsDir() {
			return dest, nil // another process materialized the same files
		}
		return "", fmt.Errorf("materialize pinned files: %w", err)
	}
	return dest, nil
}

// PinnedPaths returns the manifest's pinned paths, sorted.
func (m *Manifest) PinnedPaths() []string { return sortedPaths(m.Pinned) }
