package fsx

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

func randomSuffix() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on supported platforms
	return hex.EncodeToString(b[:])
}

// The workspace is the agent's: any file or directory in it may have been
// replaced by a symbolic link into the sealed store, or by a device, a FIFO
// or a socket. Everything the server reads or writes there goes through an
// os.Root, which no path can leave, and each component of the path is
// checked with Lstat so that even a link staying inside the root is refused
// rather than followed. What is opened is then compared with what was
// checked (os.SameFile), so a swap between the check and the open is caught.

// NotPlainError reports a link, or anything but a regular file or a
// directory, where fapo expects one of its own files.
type NotPlainError struct {
	// Path is the offending path as the user sees it.
	Path string
	// Kind says what was found ("a symbolic link", "a named pipe", ...).
	Kind string
}

// Linked reports a symbolic link, or a file or directory replaced between
// its check and its open: something that can be repointed.
func (e *NotPlainError) Linked() bool {
	return e.Kind == kindLink || strings.HasSuffix(e.Kind, replacedSuffix)
}

const (
	kindLink       = "a symbolic link"
	replacedSuffix = "that was replaced while it was opened"
)

func (e *NotPlainError) Error() string {
	return fmt.Sprintf("%s is %s: fapo follows no link and reads no special file among runs, variants and data; remove it (the server writes these files itself)", e.Path, e.Kind)
}

func kindOf(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return kindLink
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	case m.IsDir():
		return "a directory"
	default:
		return "not a regular file"
	}
}

// OpenRoot opens dir as an os.Root. dir itself must be a directory, not a
// link to one: a planted tenants/X/runs pointing into the sealed store
// would otherwise become the root.
func OpenRoot(dir string) (*os.Root, error) {
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, &NotPlainError{Path: dir, Kind: kindOf(fi.Mode())}
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return nil, err
	}
	opened, err := r.Stat(".")
	if err != nil {
		r.Close()
		return nil, err
	}
	if !os.SameFile(fi, opened) {
		r.Close()
		return nil, &NotPlainError{Path: dir, Kind: "a directory " + replacedSuffix}
	}
	return r, nil
}

// Check refuses name inside root when any component of it is a link or
// a special file; the last component must be a regular file or, with
// dirOK, a directory. It returns the last component's Lstat.
func Check(root *os.Root, name string, dirOK bool) (fs.FileInfo, error) {
	name = path.Clean(filepath.ToSlash(name))
	if name == "." {
		return root.Lstat(".")
	}
	if !fs.ValidPath(name) {
		return nil, fmt.Errorf("%s: not a path inside %s", name, root.Name())
	}
	parts := strings.Split(name, "/")
	var fi fs.FileInfo
	for i := range parts {
		p := strings.Join(parts[:i+1], "/")
		var err error
		if fi, err = root.Lstat(p); err != nil {
			return nil, err
		}
		last := i == len(parts)-1
		m := fi.Mode()
		switch {
		case m.IsDir() && (!last || dirOK):
		case m.IsRegular() && last:
		default:
			return nil, &NotPlainError{Path: filepath.Join(root.Name(), filepath.FromSlash(p)), Kind: kindOf(m)}
		}
	}
	return fi, nil
}

// Open opens the regular file name inside root for reading, refusing links
// and special files on the way.
func Open(root *os.Root, name string) (*os.File, error) {
	return OpenFile(root, name, os.O_RDONLY, 0)
}

// OpenFile is Open with flags. With O_CREATE a missing file is created
// (never through a link: O_EXCL or not, a dangling link is refused by the
// check after the open).
func OpenFile(root *os.Root, name string, flag int, perm fs.FileMode) (*os.File, error) {
	if dir := path.Dir(filepath.ToSlash(name)); dir != "." {
		if _, err := Check(root, dir, true); err != nil {
			return nil, err
		}
	}
	if flag&os.O_CREATE == 0 {
		if _, err := Check(root, name, false); err != nil {
			return nil, err
		}
	}
	f, err := root.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	checked, err := Check(root, name, false)
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	opened, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	if !os.SameFile(checked, opened) {
		_ = f.Close()
		return nil, &NotPlainError{Path: filepath.Join(root.Name(), filepath.FromSlash(name)), Kind: "a file " + replacedSuffix}
	}
	return f, nil
}

// ReadFile reads the regular file name inside root (see Open).
func ReadFile(root *os.Root, name string) ([]byte, error) {
	f, err := Open(root, name)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	return io.ReadAll(f)
}

// WriteFileAtomicIn is WriteFileAtomic inside root: the temporary file is
// created exclusively and renamed over name, so a link planted at name is
// replaced, never written through.
func WriteFileAtomicIn(root *os.Root, name string, data []byte, perm fs.FileMode) error {
	dir, base := path.Split(filepath.ToSlash(name))
	if dir != "" {
		if _, err := Check(root, path.Clean(dir), true); err != nil {
			return err
		}
	}
	var tmp string
	var f *os.File
	for i := 0; ; i++ {
		tmp = dir + "." + base + ".tmp-" + randomSuffix()
		var err error
		f, err = root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrExist) || i == 9 {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	defer func() { _ = root.Remove(tmp) }() // no-op after a successful rename
	// The mode is set on the open file, not by name: the umask applied
	// at creation is undone without a path that could be swapped.
	err := f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, name)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}
