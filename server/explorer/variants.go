package explorer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/fapo-dev/fapo/engine/tenant"
	"github.com/fapo-dev/fapo/engine/variant"
)

// Integrity says how far a variant shown was verified.
const (
	// IntegrityVerified: the manifest digest and every file hash matched.
	IntegrityVerified = "verified"
	// IntegrityFilesVerified: every file matched its manifest hash, but the
	// manifest is signed with the workspace key, which lives in the sealed
	// store and is never read here.
	IntegrityFilesVerified = "files verified; manifest signature not checked (its key is in the sealed store)"
	// IntegrityTampered: the variant does not match its manifest.
	IntegrityTampered = "tampered"
)

const keyedDigestPrefix = `digest = "hmac-sha256:`

// shownVariant is a variant as read for display.
type shownVariant struct {
	Manifest  variant.Manifest
	Files     map[string][]byte
	Integrity string
}

// readVariant reads and checks a variant. An unkeyed store is verified by
// variant.Store.Get in full. A store the loop wrote is keyed with a secret
// from the sealed store, which the Explorer must not open: there the
// manifest's signature cannot be checked, so the files are checked against
// the manifest's hashes and the page says what was not checked. A variant
// that fails either check is a *variant.TamperedError.
func readVariant(t *tenant.Tenant, id variant.ID) (*shownVariant, error) {
	if _, err := variant.ParseID(string(id)); err != nil {
		return nil, err
	}
	dir, err := t.Path(filepath.Join(tenant.VariantsDir, string(id)))
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(dir, variant.ManifestFile))
	if err != nil || !bytes.HasPrefix(raw, []byte(keyedDigestPrefix)) {
		v, err := variant.Open(t.Dir).Get(id)
		if err != nil {
			return nil, err
		}
		return &shownVariant{Manifest: v.Manifest, Files: v.Files(), Integrity: IntegrityVerified}, nil
	}
	_, body, _ := bytes.Cut(raw, []byte("\n"))
	var m variant.Manifest
	if _, err := toml.Decode(string(body), &m); err != nil {
		return nil, &variant.TamperedError{ID: id, File: variant.ManifestFile, Problem: fmt.Sprintf("does not parse: %v", err)}
	}
	if m.ID != id {
		return nil, &variant.TamperedError{ID: id, File: variant.ManifestFile, Problem: fmt.Sprintf("names variant %q, not %s", m.ID, id)}
	}
	files, err := checkFiles(id, dir, m.Files)
	if err != nil {
		return nil, err
	}
	return &shownVariant{Manifest: m, Files: files, Integrity: IntegrityFilesVerified}, nil
}

// checkFiles reads the files of a variant directory and checks that they
// are exactly the manifest's, with its hashes.
func checkFiles(id variant.ID, dir string, want map[string]string) (map[string][]byte, error) {
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		rel = filepath.ToSlash(rel)
		switch {
		case rel == "." || rel == variant.ManifestFile || d.IsDir():
			return nil
		case !d.Type().IsRegular():
			return &variant.TamperedError{ID: id, File: rel, Problem: "is not a regular file"}
		}
		sum, ok := want[rel]
		if !ok {
			return &variant.TamperedError{ID: id, File: rel, Problem: "was added after the variant was written"}
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		if got := hex.EncodeToString(h[:]); got != sum {
			return &variant.TamperedError{ID: id, File: rel, Problem: fmt.Sprintf("was changed (sha256 %.12s… on disk, %.12s… in the manifest)", got, sum)}
		}
		files[rel] = b
		return nil
	})
	if err != nil {
		return nil, err
	}
	for rel := range want {
		if _, ok := files[rel]; !ok {
			return nil, &variant.TamperedError{ID: id, File: rel, Problem: "is missing"}
		}
	}
	return files, nil
}

// variantIDs lists the ids present in the tenant's variant store, in order.
func variantIDs(t *tenant.Tenant) ([]variant.ID, error) {
	entries, err := os.ReadDir(t.VariantsDir())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ids []variant.ID
	for _, e := range entries {
		if id, err := variant.ParseID(e.Name()); err == nil && e.IsDir() {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b variant.ID) int { return a.Num() - b.Num() })
	return ids, nil
}

// isIncomplete reports a reservation whose proposal never finished; the
// store skips those too.
func isIncomplete(err error) bool {
	return errors.As(err, new(*variant.IncompleteError)) || errors.As(err, new(*variant.NotFoundError))
}

// tamperProblem is the one-line problem of a variant that failed its check.
func tamperProblem(err error) string {
	var te *variant.TamperedError
	if errors.As(err, &te) {
		return strings.TrimSpace(te.File + " " + te.Problem)
	}
	return err.Error()
}
