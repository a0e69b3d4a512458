package variant

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fapo-dev/fapo/engine/internal/fsx"
)

// ChainFile is the one file every variant has.
const ChainFile = "chain.toml"

// PromptsDir holds a variant's prompt templates.
const PromptsDir = "prompts"

// MaxFileBytes bounds one file of a variant; a prompt larger than this is a
// mistake, not a prompt.
const MaxFileBytes = 1 << 20

// ValidatePath refuses a path that is not a variant file: variants hold
// chain.toml and prompts/** only, so the scorer, the data and tenant.toml can
// never be changed through a proposal.
func ValidatePath(rel string) error {
	switch {
	case rel == "":
		return fmt.Errorf("empty file path in a variant: name chain.toml or a file under prompts/")
	case strings.Contains(rel, `\`):
		return fmt.Errorf("file %q: use forward slashes in variant paths", rel)
	case path.IsAbs(rel) || filepath.IsAbs(rel):
		return fmt.Errorf("file %q is absolute: use a path relative to the variant, e.g. prompts/answer.md", rel)
	case !filepath.IsLocal(rel) || path.Clean(rel) != rel:
		return fmt.Errorf("file %q is not a clean relative path (no \"..\", \".\" or doubled slashes): use e.g. prompts/answer.md", rel)
	}
	for _, part := range strings.Split(rel, "/") {
		if strings.HasPrefix(part, ".") {
			return fmt.Errorf("file %q: hidden files are not part of a variant", rel)
		}
	}
	if rel != ChainFile && !strings.HasPrefix(rel, PromptsDir+"/") {
		return fmt.Errorf("file %q is not part of a variant: a variant holds only chain.toml and prompts/**; the scorer, data and tenant.toml are frozen", rel)
	}
	return nil
}

// validateFiles checks a whole file set of a variant.
func validateFiles(files map[string][]byte) error {
	if _, ok := files[ChainFile]; !ok {
		return fmt.Errorf("a variant needs a chain.toml: include the whole chain, changed or not")
	}
	for _, rel := range slices.Sorted(maps.Keys(files)) {
		if err := ValidatePath(rel); err != nil {
			return err
		}
		if len(files[rel]) > MaxFileBytes {
			return fmt.Errorf("file %s is %d bytes, over the %d-byte limit of a variant file: shorten it", rel, len(files[rel]), MaxFileBytes)
		}
	}
	// A file and a directory of the same name cannot both exist on disk.
	for rel := range files {
		for dir := path.Dir(rel); dir != "."; dir = path.Dir(dir) {
			if _, clash := files[dir]; clash {
				return fmt.Errorf("file %s and directory %s/ clash: rename one of them", dir, dir)
			}
		}
	}
	return nil
}

// ReadBaseline collects a tenant's baseline files (chain.toml and
// prompts/**) for EnsureBaseline, through an os.Root of the tenant
// directory: a link among them (into the sealed store, say) is refused,
// never followed into what would become v0000.
func ReadBaseline(tenantDir string) (map[string][]byte, error) {
	root, err := fsx.OpenRoot(tenantDir)
	if err != nil {
		return nil, fmt.Errorf("read the tenant's baseline: %w", err)
	}
	defer root.Close()
	files := map[string][]byte{}
	b, err := fsx.ReadFile(root, ChainFile)
	if err != nil {
		return nil, fmt.Errorf("read the tenant's baseline chain: %w; every tenant needs a chain.toml", err)
	}
	files[ChainFile] = b
	if _, err := fsx.Check(root, PromptsDir, true); errors.Is(err, fs.ErrNotExist) {
		return files, validateFiles(files)
	} else if err != nil {
		return nil, fmt.Errorf("read the tenant's baseline prompts: %w", err)
	}
	err = fs.WalkDir(root.FS(), PromptsDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if strings.HasPrefix(d.Name(), ".") && p != PromptsDir {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file: the baseline's prompts must be plain files (remove the link)", filepath.Join(tenantDir, filepath.FromSlash(p)))
		}
		b, err := fsx.ReadFile(root, p)
		if err != nil {
			return err
		}
		files[p] = b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the tenant's baseline prompts: %w", err)
	}
	return files, validateFiles(files)
}

func sameFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}
