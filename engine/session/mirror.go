package session

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
)

// Names of the mirror inside a tenant directory. They are what an earlier
// fapo kept as the truth, and what ImportWorkspace reads once.
const (
	// JournalFile is the journal's mirror: one JSON entry per line.
	JournalFile = "journal.jsonl"
	// SessionsDir holds sNNNN/scope.json, each session's contract.
	SessionsDir = "sessions"
	scopeFile   = "scope.json"
)

// writeMirror rewrites the mirror in tenantDir from the journal's encoded
// lines and the sessions.
// Files are replaced by a rename, so an edited, truncated or symlinked
// mirror is replaced as a whole, and the tenant directory is opened as an
// os.Root, so a planted link cannot send the writes outside it.
func writeMirror(tenantDir string, lines [][]byte, sessions []Scope) error {
	root, err := os.OpenRoot(tenantDir)
	if err != nil {
		return err
	}
	defer root.Close()
	errs := []error{replaceFile(root, JournalFile, bytes.Join(lines, nil))}
	for _, sc := range sessions {
		raw, err := json.MarshalIndent(sc, "", "  ")
		if err != nil {
			errs = append(errs, err)
			continue
		}
		dir := path.Join(SessionsDir, sc.ID)
		if err := root.MkdirAll(dir, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, replaceFile(root, path.Join(dir, scopeFile), append(raw, '\n')))
	}
	return errors.Join(errs...)
}

// replaceFile writes b to a fresh temporary file beside name and renames it
// over name.
func replaceFile(root *os.Root, name string, b []byte) error {
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp := path.Join(path.Dir(name), "."+path.Base(name)+".tmp-"+hex.EncodeToString(rnd[:]))
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("write mirror %s: %w", name, err)
	}
	_, werr := f.Write(b)
	if err := errors.Join(werr, f.Close()); err != nil {
		_ = root.Remove(tmp)
		return fmt.Errorf("write mirror %s: %w", name, err)
	}
	if err := root.Rename(tmp, name); err != nil {
		_ = root.Remove(tmp)
		return fmt.Errorf("write mirror %s: %w", name, err)
	}
	return nil
}
