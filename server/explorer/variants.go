package explorer

import (
	"errors"
	"io/fs"
	"os"
	"slices"
	"strings"

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

// shownVariant is a variant as read for display.
type shownVariant struct {
	Manifest  variant.Manifest
	Files     map[string][]byte
	Integrity string
}

// readVariant reads and checks a variant through variant.Store, which
// opens its files without following links. A store the loop wrote is keyed
// with a secret from the sealed store, which the Explorer must not hold:
// there every file is checked against the manifest's hashes but the
// manifest's signature is not, and the page says so. A variant that fails
// a check is a *variant.TamperedError.
func readVariant(t *tenant.Tenant, id variant.ID) (*shownVariant, error) {
	v, err := variant.Open(t.Dir, variant.WithoutSignature()).Get(id)
	if err != nil {
		return nil, err
	}
	integrity := IntegrityVerified
	if !v.SignatureChecked {
		integrity = IntegrityFilesVerified
	}
	return &shownVariant{Manifest: v.Manifest, Files: v.Files(), Integrity: integrity}, nil
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
