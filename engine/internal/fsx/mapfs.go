package fsx

import (
	"bytes"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"
)

// MapFS is a read-only file system over file contents held in memory,
// keyed by slash-separated relative path; directories are implied by the
// paths. It is how verified bytes are handed to a loader: what was hashed
// is what is used, and nothing is read from disk again.
type MapFS map[string][]byte

var (
	_ fs.ReadFileFS = MapFS(nil)
	_ fs.ReadDirFS  = MapFS(nil)
)

// Open implements fs.FS.
func (m MapFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if b, ok := m[name]; ok {
		return &mapFile{info: mapInfo{name: path.Base(name), size: int64(len(b))}, r: bytes.NewReader(b)}, nil
	}
	entries, ok := m.entries(name)
	if !ok {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
	}
	return &mapDir{info: mapInfo{name: path.Base(name), dir: true}, entries: entries}, nil
}

// ReadFile implements fs.ReadFileFS; the caller gets its own copy.
func (m MapFS) ReadFile(name string) ([]byte, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrInvalid}
	}
	b, ok := m[name]
	if !ok {
		if _, isDir := m.entries(name); isDir {
			return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrInvalid}
		}
		return nil, &fs.PathError{Op: "read", Path: name, Err: fs.ErrNotExist}
	}
	return bytes.Clone(b), nil
}

// ReadDir implements fs.ReadDirFS.
func (m MapFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrInvalid}
	}
	entries, ok := m.entries(name)
	if !ok {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	return entries, nil
}

// entries lists the directory dir ("." for the top); ok is false when no
// file lies under it.
func (m MapFS) entries(dir string) ([]fs.DirEntry, bool) {
	prefix := ""
	if dir != "." {
		prefix = dir + "/"
	}
	seen := map[string]fs.DirEntry{}
	for p, b := range m {
		rest, ok := strings.CutPrefix(p, prefix)
		if !ok || rest == "" {
			continue
		}
		if head, _, isDir := strings.Cut(rest, "/"); isDir {
			seen[head] = fs.FileInfoToDirEntry(mapInfo{name: head, dir: true})
		} else {
			seen[head] = fs.FileInfoToDirEntry(mapInfo{name: head, size: int64(len(b))})
		}
	}
	if len(seen) == 0 && dir != "." {
		return nil, false
	}
	out := make([]fs.DirEntry, 0, len(seen))
	for _, e := range seen {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, true
}

type mapInfo struct {
	name string
	size int64
	dir  bool
}

func (i mapInfo) Name() string { return i.name }
func (i mapInfo) Size() int64  { return i.size }
func (i mapInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o555
	}
	return 0o444
}
func (i mapInfo) ModTime() time.Time { return time.Time{} }
func (i mapInfo) IsDir() bool        { return i.dir }
func (i mapInfo) Sys() any           { return nil }

type mapFile struct {
	info mapInfo
	r    *bytes.Reader
}

func (f *mapFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *mapFile) Read(b []byte) (int, error) { return f.r.Read(b) }
func (f *mapFile) Close() error               { return nil }

type mapDir struct {
	info    mapInfo
	entries []fs.DirEntry
	off     int
}

func (d *mapDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *mapDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: fs.ErrInvalid}
}
func (d *mapDir) Close() error { return nil }

// ReadDir implements fs.ReadDirFile.
func (d *mapDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.off:]
	if n <= 0 {
		d.off = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	rest = rest[:min(n, len(rest))]
	d.off += len(rest)
	return rest, nil
}
