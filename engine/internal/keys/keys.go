// Package keys keeps the sealed store's secret keys: 32 random bytes a file,
// in a directory only its owner may enter. Every fapo key goes through it,
// so every key is created whole (another process never reads half of one),
// read without following a planted link, and narrowed to its owner.
package keys

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fapo-dev/fapo/engine/internal/fsx"
)

// Get returns the key in file name of dir. When it does not exist, create
// makes one (racing processes agree on the first one written); otherwise
// the error wraps fs.ErrNotExist.
func Get(dir, name string, create bool) ([]byte, error) {
	if !create {
		if _, err := os.Lstat(dir); err != nil {
			return nil, err
		}
	}
	root, err := openKeyDir(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	for range 3 {
		key, err := readKey(root, name)
		if !create || !errors.Is(err, fs.ErrNotExist) {
			return key, err
		}
		key, err = createKey(root, name)
		if !errors.Is(err, fs.ErrExist) {
			return key, err
		}
		// Another process won the race: read its key.
	}
	return nil, fmt.Errorf("key file %s keeps appearing and vanishing: something else is changing the sealed store's keys; stop it, then try again", filepath.Join(root.Name(), name))
}

// openKeyDir creates the key directory 0700 if needed and opens it as a
// root; a link in its place is refused, and a directory others can enter is
// narrowed to its owner.
func openKeyDir(dir string) (*os.Root, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create key directory: %w", err)
	}
	root, err := fsx.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("key directory of the sealed store: %w", err)
	}
	fi, err := root.Stat(".")
	if err == nil && fi.Mode().Perm() != 0o700 {
		err = root.Chmod(".", 0o700)
	}
	if err != nil {
		root.Close()
		return nil, fmt.Errorf("restrict key directory %s to its owner: %w", dir, err)
	}
	return root, nil
}

// readKey reads an existing key file, refusing a link or special file, and
// narrows a key file others may read to 0600.
func readKey(root *os.Root, name string) ([]byte, error) {
	f, err := fsx.Open(root, name)
	if err != nil {
		var np *fsx.NotPlainError
		if errors.As(err, &np) {
			return nil, fmt.Errorf("key file %s: %w", filepath.Join(root.Name(), name), err)
		}
		return nil, err
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm() != 0o600 {
		if err := f.Chmod(0o600); err != nil {
			return nil, fmt.Errorf("restrict key file %s to its owner: %w", filepath.Join(root.Name(), name), err)
		}
	}
	b, err := io.ReadAll(io.LimitReader(f, 64))
	if err != nil {
		return nil, err
	}
	if len(b) != 32 {
		return nil, fmt.Errorf("key file %s is corrupt (%d bytes, want 32)", filepath.Join(root.Name(), name), len(b))
	}
	return b, nil
}

// createKey writes a new random key whole under a temporary name, then
// links it into place: another fapo process reading the key at this moment
// finds none or all of it, never an empty file, and the link fails with
// fs.ErrExist if that process got there first.
func createKey(root *os.Root, name string) ([]byte, error) {
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	suffix := make([]byte, 6)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	tmp := ".key-" + hex.EncodeToString(suffix)
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	defer root.Remove(tmp) //nolint:errcheck // gone already after a failed write; the link keeps the key
	if _, err := f.Write(key); err != nil {
		_ = f.Close()
		return nil, err
	}
	if err := f.Chmod(0o600); err != nil { // the umask may have narrowed it; never widened
		_ = f.Close()
		return nil, err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	if err := root.Link(tmp, name); err != nil {
		return nil, err
	}
	return key, nil
}
