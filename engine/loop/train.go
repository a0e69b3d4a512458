package loop

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/internal/fsx"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/tenant"
)

// trainMemLimit is the size up to which a verified train split is held in
// memory; a larger one is held in an unlinked file of the sealed store.
var trainMemLimit int64 = 16 << 20

// trainSplit is a tenant's data/train.jsonl as read once from the
// workspace and verified against the hash the pin check saw
// (tenant.TrainSHA256): every case a run, a review or an attribution sees
// comes from these bytes, never from the file again, which the agent can
// rewrite at any moment.
type trainSplit struct {
	name string // data/train.jsonl of the tenant, for messages
	mem  []byte
	file *os.File // set when the split outgrew trainMemLimit
	size int64
}

// readTrain reads the tenant's train split through an os.Root of the
// tenant directory (a link at data/ or at the file is refused), hashing it
// as it goes, and refuses it when the hash is not the one the pin check
// verified: the file was changed between the check and this read. The
// refusal is the pin check's (journaled, *tenant.PinError), so the operator
// is told the same thing either way. Close the split when done.
func (w *Workspace) readTrain(t *tenant.Tenant) (*trainSplit, error) {
	root, err := fsx.OpenRoot(t.Dir)
	if err != nil {
		return nil, fmt.Errorf("read train split: %w", err)
	}
	defer root.Close()
	src, err := fsx.Open(root, tenant.TrainFile)
	if err != nil {
		return nil, fmt.Errorf("read train split: %w", err)
	}
	defer func() { _ = src.Close() }()
	ts := &trainSplit{name: t.TrainPath()}
	h := sha256.New()
	var buf bytes.Buffer
	n, err := io.Copy(io.MultiWriter(h, &buf), io.LimitReader(src, trainMemLimit+1))
	if err == nil && n > trainMemLimit {
		// Too large to hold: spill into a private file of the sealed store,
		// unlinked at once, so that nothing but this process can reach it.
		if ts.file, err = w.spoolFile(); err == nil {
			_, err = ts.file.Write(buf.Bytes())
			buf = bytes.Buffer{}
			if err == nil {
				var more int64
				more, err = io.Copy(io.MultiWriter(h, ts.file), src)
				n += more
			}
		}
	}
	if err != nil {
		ts.close()
		return nil, fmt.Errorf("read train split: %w", err)
	}
	ts.mem, ts.size = buf.Bytes(), n
	if got := hex.EncodeToString(h.Sum(nil)); t.TrainSHA256 != "" && got != t.TrainSHA256 {
		ts.close()
		return nil, w.trainChanged(t)
	}
	return ts, nil
}

// trainChanged is the refusal of a train split that no longer matches the
// hash the pin check verified, journaled like the check's own.
func (w *Workspace) trainChanged(t *tenant.Tenant) error {
	perr := &tenant.PinError{Tenant: t.Name(), Changes: []tenant.Change{{Path: tenant.TrainFile, Status: tenant.Changed}}, Since: "sealed"}
	if m, err := w.store.Manifest(t.Name()); err == nil && m.PinnedAt.After(m.CreatedAt) {
		perr.Since = "last pinned"
	}
	if err := w.appendJournal(t.Dir, t.Name(), session.Entry{Kind: session.KindPinMismatch,
		Data: map[string]any{"changes": perr.Changes, "during": "read of the train split after the pin check"}}); err != nil {
		slog.Error("journal a pin mismatch", "tenant", t.Name(), "err", err)
	}
	return perr
}

// spoolFile creates a file in $FAPO_HOME/tmp (0700) and unlinks it where
// the system allows an open file to be unlinked.
func (w *Workspace) spoolFile() (*os.File, error) {
	dir := filepath.Join(w.opts.Home, "tmp")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "train-*")
	if err != nil {
		return nil, err
	}
	_ = os.Remove(f.Name()) // fails on Windows while open; close removes it there
	return f, nil
}

// each streams the split's cases to fn. It may be called more than once.
func (ts *trainSplit) each(fn func(dataset.Case) error) error {
	var r io.Reader = bytes.NewReader(ts.mem)
	if ts.file != nil {
		r = io.NewSectionReader(ts.file, 0, ts.size)
	}
	return dataset.Read(r, ts.name, func(_ int, c dataset.Case) error { return fn(c) })
}

func (ts *trainSplit) close() {
	if ts.file != nil {
		name := ts.file.Name()
		_ = ts.file.Close()
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			slog.Warn("remove the train split's spool file", "file", name, "err", err)
		}
	}
}

// trainAll is every case of the verified train split (see readTrain).
func (w *Workspace) trainAll(t *tenant.Tenant) ([]dataset.Case, error) {
	ts, err := w.readTrain(t)
	if err != nil {
		return nil, err
	}
	defer ts.close()
	var out []dataset.Case
	err = ts.each(func(c dataset.Case) error {
		out = append(out, c)
		return nil
	})
	return out, err
}
