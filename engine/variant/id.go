// Package variant is the immutable store of chain variants of a tenant:
// <tenantDir>/variants/vNNNN/ holds a chain.toml, its prompts and a
// manifest.toml recording lineage and the sha256 of every file. Variants are
// written once and re-verified on every read, so an agent that edits a file
// in place is caught instead of silently changing what gets evaluated; the
// only way to change a chain is to propose a new variant.
package variant

import (
	"fmt"
	"regexp"
	"strconv"
)

// ID names a variant: "v" and at least four digits, e.g. v0007.
type ID string

// Baseline is the variant materialized from the tenant's own chain.toml and
// prompts; every lineage starts there.
const Baseline ID = "v0000"

var idPattern = regexp.MustCompile(`^v[0-9]{4,9}$`)

// FormatID returns the id of the n-th variant.
func FormatID(n int) ID { return ID(fmt.Sprintf("v%04d", n)) }

// ParseID validates s as a variant id. Ids become directory names, so
// anything but the canonical form is refused: that also rules out path
// traversal through an id.
func ParseID(s string) (ID, error) {
	if !idPattern.MatchString(s) {
		return "", fmt.Errorf("invalid variant id %q: want \"v\" followed by four digits, e.g. v0007", s)
	}
	n, _ := strconv.Atoi(s[1:])
	if id := FormatID(n); string(id) != s {
		return "", fmt.Errorf("invalid variant id %q: did you mean %s?", s, id)
	}
	return ID(s), nil
}

// Num is the number of a valid id; -1 for an invalid one.
func (id ID) Num() int {
	if _, err := ParseID(string(id)); err != nil {
		return -1
	}
	n, _ := strconv.Atoi(string(id)[1:])
	return n
}

func (id ID) String() string { return string(id) }
