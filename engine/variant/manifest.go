package variant

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// ManifestFile is the name of the manifest inside a variant directory.
const ManifestFile = "manifest.toml"

// Manifest is a variant's manifest.toml: where it came from, why, and the
// sha256 of every file it holds.
type Manifest struct {
	ID            ID        `toml:"id" json:"id"`
	Parent        ID        `toml:"parent" json:"parent,omitempty"`
	Level         Level     `toml:"level" json:"level"`
	Rationale     string    `toml:"rationale" json:"rationale"`
	TargetCluster string    `toml:"target_cluster" json:"target_cluster,omitempty"`
	Session       string    `toml:"session" json:"session,omitempty"`
	Created       time.Time `toml:"created" json:"created"`
	// Files maps a path relative to the variant directory to the hex sha256
	// of its content.
	Files map[string]string `toml:"files" json:"files"`
}

// The manifest's first line is a digest of the rest of the file, so an edit
// of the manifest (a new rationale, a hash rewritten to match an edited file)
// is caught like an edit of any other file. Without a key it is a plain
// sha256, which catches edits by hand; with a key only the holder of the key
// can produce it, which also catches a deliberate rewrite.
const (
	digestPrefix     = `digest = "`
	schemeSHA256     = "sha256:"
	schemeHMACSHA256 = "hmac-sha256:"
)

func manifestDigest(body, key []byte) string {
	if len(key) == 0 {
		sum := sha256.Sum256(body)
		return schemeSHA256 + hex.EncodeToString(sum[:])
	}
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return schemeHMACSHA256 + hex.EncodeToString(m.Sum(nil))
}

func encodeManifest(m Manifest, key []byte) ([]byte, error) {
	var body bytes.Buffer
	if err := toml.NewEncoder(&body).Encode(m); err != nil {
		return nil, fmt.Errorf("encode manifest of %s: %w", m.ID, err)
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "%s%s\"\n", digestPrefix, manifestDigest(body.Bytes(), key))
	out.Write(body.Bytes())
	return out.Bytes(), nil
}

// decodeManifest verifies the digest line and decodes the rest. The problem
// string it returns on failure is phrased for a TamperedError.
func decodeManifest(raw, key []byte) (Manifest, string) {
	first, body, ok := bytes.Cut(raw, []byte("\n"))
	line := string(first)
	if !ok || !strings.HasPrefix(line, digestPrefix) || !strings.HasSuffix(line, `"`) {
		return Manifest{}, "has lost its digest line (it was edited)"
	}
	got := strings.TrimSuffix(strings.TrimPrefix(line, digestPrefix), `"`)
	keyed := strings.HasPrefix(got, schemeHMACSHA256)
	switch {
	case keyed && len(key) == 0:
		return Manifest{}, "is signed with a key this store was not opened with (open the store with the workspace key)"
	case !keyed && len(key) > 0:
		return Manifest{}, "is not signed with the store's key (it was rewritten)"
	}
	if !hmac.Equal([]byte(got), []byte(manifestDigest(body, key))) {
		return Manifest{}, "was edited after the variant was written (its digest does not match)"
	}
	var m Manifest
	if _, err := toml.Decode(string(body), &m); err != nil {
		return Manifest{}, fmt.Sprintf("does not parse: %v", err)
	}
	return m, ""
}

func hashBytes(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
