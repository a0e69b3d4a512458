package variant

import (
	"fmt"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
)

// ChangedFiles lists the files that differ between two variants (changed,
// added or removed), sorted. Both variants are verified first.
func (s *Store) ChangedFiles(a, b ID) ([]string, error) {
	va, vb, err := s.pair(a, b)
	if err != nil {
		return nil, err
	}
	return changedPaths(va.files, vb.files), nil
}

// Diff is a unified diff of every file that differs between two variants,
// "" when they hold the same files. An added or removed file is diffed
// against /dev/null, as git does.
func (s *Store) Diff(a, b ID) (string, error) {
	va, vb, err := s.pair(a, b)
	if err != nil {
		return "", err
	}
	return UnifiedDiff(string(a), string(b), va.files, vb.files)
}

// UnifiedDiff diffs two file sets (relative path → content), file by file
// in path order, labelling the sides fromLabel/ and toLabel/.
func UnifiedDiff(fromLabel, toLabel string, a, b map[string][]byte) (string, error) {
	var out strings.Builder
	for _, rel := range changedPaths(a, b) {
		x, inA := a[rel]
		y, inB := b[rel]
		from, to := fromLabel+"/"+rel, toLabel+"/"+rel
		if !inA {
			from = "/dev/null"
		}
		if !inB {
			to = "/dev/null"
		}
		text, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
			A: splitLines(x), B: splitLines(y), FromFile: from, ToFile: to, Context: 3,
		})
		if err != nil {
			return "", fmt.Errorf("diff %s: %w", rel, err)
		}
		fmt.Fprintf(&out, "diff %s %s\n%s", fromLabel+"/"+rel, toLabel+"/"+rel, text)
	}
	return out.String(), nil
}

func (s *Store) pair(a, b ID) (*Variant, *Variant, error) {
	va, err := s.Get(a)
	if err != nil {
		return nil, nil, err
	}
	vb, err := s.Get(b)
	if err != nil {
		return nil, nil, err
	}
	return va, vb, nil
}

// splitLines keeps line endings, and marks a missing final newline the way
// diff(1) does so that adding one shows up in the diff.
func splitLines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	lines := strings.SplitAfter(string(b), "\n")
	if lines[len(lines)-1] == "" {
		return lines[:len(lines)-1]
	}
	lines[len(lines)-1] += "\n\\ No newline at end of file\n"
	return lines
}
