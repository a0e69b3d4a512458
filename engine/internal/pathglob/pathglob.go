// Package pathglob is the one reading of the scope contract's frozen-file
// patterns, shared by propose (which refuses before writing) and the review
// gate (which reports a finding): two readings would let a change through
// the one that reads less.
package pathglob

import (
	"fmt"
	"path"
	"path/filepath"
	"strings"
)

// Match reports whether rel, a slash path relative to the tenant, is matched
// by any pattern: an exact path, a path.Match pattern, or "dir/**" for dir
// and everything below it.
func Match(patterns []string, rel string) bool {
	rel = path.Clean(filepath.ToSlash(rel))
	for _, pat := range patterns {
		if dir, ok := strings.CutSuffix(pat, "/**"); ok {
			if rel == dir || strings.HasPrefix(rel, dir+"/") {
				return true
			}
			continue
		}
		if ok, _ := path.Match(pat, rel); ok || pat == rel {
			return true
		}
	}
	return false
}

// Check refuses a pattern Match could not apply as written: absolute,
// escaping the tenant, unclean, or malformed.
func Check(pat string) error {
	dir := strings.TrimSuffix(pat, "/**")
	if pat == "" || path.IsAbs(pat) || !filepath.IsLocal(dir) || path.Clean(dir) != dir {
		return fmt.Errorf("use a clean path relative to the tenant, e.g. tenant.toml or data/**")
	}
	if _, err := path.Match(pat, ""); err != nil {
		return fmt.Errorf("not a valid pattern: %w", err)
	}
	return nil
}
