// Package fsx holds the two file-system disciplines every fapo artifact
// follows: writes are atomic (a crash leaves the old file or the new one,
// never half of either), and paths taken from configuration or from an agent
// stay inside the directory they are relative to.
package fsx

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// WriteFileAtomic writes data to path through a temporary file in the same
// directory, synced and renamed into place.
func WriteFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer func() { _ = os.Remove(tmp) }() // no-op after a successful rename
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp, perm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Confine resolves rel against root and returns the absolute path, refusing
// absolute paths, paths that climb out with "..", and paths whose existing
// prefix is a symlink leading outside root.
func Confine(root, rel string) (string, error) {
	if rel == "" {
		return "", fmt.Errorf("empty path")
	}
	if filepath.IsAbs(rel) || strings.HasPrefix(rel, "/") || strings.HasPrefix(rel, `\`) || filepath.VolumeName(rel) != "" {
		return "", fmt.Errorf("path %q is absolute; use a path relative to %s", rel, root)
	}
	if !filepath.IsLocal(rel) {
		return "", fmt.Errorf("path %q leaves %s; use a path inside it", rel, root)
	}
	absRoot, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	realRoot, err := filepath.EvalSymlinks(absRoot)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", root, err)
	}
	joined := filepath.Join(absRoot, rel)
	// Resolve the longest existing prefix: a symlink anywhere on the way may
	// point outside the root even though the text of the path does not.
	probe := joined
	for {
		real, err := filepath.EvalSymlinks(probe)
		if err == nil {
			if !within(realRoot, real) {
				return "", fmt.Errorf("path %q resolves outside %s through a symlink", rel, root)
			}
			break
		}
		parent := filepath.Dir(probe)
		if parent == probe || !within(absRoot, parent) && parent != absRoot {
			break
		}
		probe = parent
	}
	return joined, nil
}

func within(root, p string) bool {
	r, err := filepath.Rel(root, p)
	return err == nil && (r == "." || filepath.IsLocal(r))
}
