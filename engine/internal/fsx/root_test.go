package fsx

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"
)

func TestMapFS(t *testing.T) {
	m := MapFS{"chain.toml": []byte("x"), "prompts/a.md": []byte("a"), "prompts/sub/b.md": []byte("b")}
	require.NoError(t, fstest.TestFS(m, "chain.toml", "prompts/a.md", "prompts/sub/b.md"))
	b, err := m.ReadFile("prompts/a.md")
	require.NoError(t, err)
	b[0] = 'z'
	require.Equal(t, []byte("a"), m["prompts/a.md"], "a reader gets its own copy")
}

// TestRootRefusesLinksAndSpecialFiles: a link on the way to a file, or in
// its place, is refused with the path and what to do, whether it leads
// out of the root or stays inside it.
func TestRootRefusesLinksAndSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(outside, []byte("SECRET"), 0o600))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "runs", "r1"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "runs", "r1", "cases.jsonl"), []byte("ok\n"), 0o644))
	require.NoError(t, os.Symlink(outside, filepath.Join(dir, "runs", "out")))
	require.NoError(t, os.Symlink("r1/cases.jsonl", filepath.Join(dir, "runs", "in")))
	require.NoError(t, os.Symlink("r1", filepath.Join(dir, "runs", "r2")))
	require.NoError(t, syscall.Mkfifo(filepath.Join(dir, "runs", "fifo"), 0o644))
	require.NoError(t, os.Symlink(filepath.Join(dir, "runs"), filepath.Join(dir, "linked")))

	root, err := OpenRoot(dir)
	require.NoError(t, err)
	defer root.Close()
	for _, tc := range []struct{ name, want string }{
		{"runs/r1/cases.jsonl", ""},
		{"runs/out", "runs/out is a symbolic link"},
		{"runs/in", "runs/in is a symbolic link"},
		{"runs/r2/cases.jsonl", "runs/r2 is a symbolic link"},
		{"runs/fifo", "runs/fifo is a named pipe"},
		{"runs/r1", "runs/r1 is a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ReadFile(root, tc.name)
			if tc.want == "" {
				require.NoError(t, err)
				require.Equal(t, "ok\n", string(b))
				return
			}
			require.ErrorContains(t, err, filepath.Join(dir, tc.want))
			require.ErrorContains(t, err, "remove it")
			require.NotContains(t, string(b), "SECRET")
		})
	}
	_, err = OpenRoot(filepath.Join(dir, "linked"))
	require.ErrorContains(t, err, "linked is a symbolic link")

	// A write never goes through a link planted at its name: the link is
	// replaced, its target untouched.
	require.NoError(t, WriteFileAtomicIn(root, "runs/out", []byte("new"), 0o600))
	b, err := os.ReadFile(outside)
	require.NoError(t, err)
	require.Equal(t, "SECRET", string(b))
	fi, err := os.Lstat(filepath.Join(dir, "runs", "out"))
	require.NoError(t, err)
	require.True(t, fi.Mode().IsRegular())
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
}
