package fsx

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestConfine(t *testing.T) {
	root := t.TempDir()
	outside := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "prompts"), 0o755))
	require.NoError(t, os.Symlink(outside, filepath.Join(root, "escape")))
	require.NoError(t, os.Symlink(filepath.Join(root, "prompts"), filepath.Join(root, "inside")))

	tests := []struct {
		rel     string
		wantErr string
	}{
		{"prompts/answer.md", ""},
		{"new/file.md", ""},
		{"inside/x.md", ""},
		{"../etc/passwd", "leaves"},
		{"prompts/../../x", "leaves"},
		{"/etc/passwd", "absolute"},
		{"escape/secret", "symlink"},
		{"escape", "symlink"},
		{"", "empty"},
	}
	for _, tt := range tests {
		got, err := Confine(root, tt.rel)
		if tt.wantErr != "" {
			require.ErrorContains(t, err, tt.wantErr, tt.rel)
			continue
		}
		require.NoError(t, err, tt.rel)
		require.Equal(t, filepath.Join(root, tt.rel), got)
	}
}

func TestWriteFileAtomic(t *testing.T) {
	p := filepath.Join(t.TempDir(), "summary.json")
	require.NoError(t, WriteFileAtomic(p, []byte("one"), 0o644))
	require.NoError(t, WriteFileAtomic(p, []byte("two"), 0o600))
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, "two", string(b))
	fi, err := os.Stat(p)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	entries, err := os.ReadDir(filepath.Dir(p))
	require.NoError(t, err)
	require.Len(t, entries, 1, "no temporary file left behind")
}
