package tenant

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/refusal"
)

// Change statuses of a frozen file.
const (
	Changed  = "changed"
	Missing  = "missing"
	Added    = "added"
	Symlinks = "symlink"
)

// Change is one frozen file that differs from its pinned version.
type Change struct {
	// Path is tenant-relative, slash-separated ("tenant.toml").
	Path string `json:"path"`
	// Status is Changed, Missing (pinned, now gone), Added (named by the
	// config, not pinned) or Symlinks (replaced by a symbolic link).
	Status string `json:"status"`
	// Keys are the dotted tenant.toml keys whose values differ
	// ("scorer.kind"); empty with Unparsable when the file is no longer
	// TOML, or when only comments and layout changed.
	Keys       []string `json:"keys,omitempty"`
	Unparsable bool     `json:"unparsable,omitempty"`
}

// String renders the change for a message: "tenant.toml (scorer.kind)".
func (c Change) String() string {
	switch c.Status {
	case Missing:
		return c.Path + " (deleted)"
	case Added:
		return c.Path + " (new, not pinned)"
	case Symlinks:
		return c.Path + " (replaced by a symbolic link)"
	}
	switch {
	case c.Unparsable:
		return c.Path + " (no longer valid TOML)"
	case len(c.Keys) > 0:
		return c.Path + " (" + strings.Join(c.Keys, ", ") + ")"
	case c.Path == ConfigFile:
		return c.Path + " (comments or layout only)"
	}
	return c.Path
}

// Changes compares f with the pinned hashes. pinnedConfig returns the
// pinned bytes of tenant.toml, asked for only when it changed, so that the
// change can name the keys.
func (f *Frozen) Changes(pinned map[string]string, pinnedConfig func() ([]byte, error)) []Change {
	paths := map[string]bool{}
	for p := range pinned {
		paths[p] = true
	}
	for p := range f.Sums {
		paths[p] = true
	}
	for p := range f.Links {
		paths[p] = true
	}
	var out []Change
	for _, p := range slices.Sorted(maps.Keys(paths)) {
		want, isPinned := pinned[p]
		got, found := f.Sums[p]
		var c Change
		switch {
		case f.Links[p]:
			c = Change{Path: p, Status: Symlinks}
		case isPinned && !found:
			c = Change{Path: p, Status: Missing}
		case !isPinned:
			c = Change{Path: p, Status: Added}
		case want != got:
			c = Change{Path: p, Status: Changed}
			if p == ConfigFile {
				if old, err := pinnedConfig(); err == nil {
					keys, err := DiffConfig(old, f.Source)
					c.Unparsable = err != nil
					for _, k := range keys {
						c.Keys = append(c.Keys, k.Key)
					}
				}
			}
		default:
			continue
		}
		out = append(out, c)
	}
	// tenant.toml first: it says why the other files matter.
	slices.SortStableFunc(out, func(a, b Change) int {
		return boolInt(b.Path == ConfigFile) - boolInt(a.Path == ConfigFile)
	})
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Verify compares f with the pins of the sealed manifest m and returns the
// refusal to give, or nil when every frozen file is the pinned one.
func (f *Frozen) Verify(m *dataset.Manifest, pinnedConfig func() ([]byte, error)) *PinError {
	if m.Pinned == nil {
		return &PinError{Tenant: m.Tenant, Unpinned: true}
	}
	changes := f.Changes(m.Pinned, pinnedConfig)
	if len(changes) == 0 {
		return nil
	}
	since := "sealed"
	if m.PinnedAt.After(m.CreatedAt) {
		since = "last pinned"
	}
	return &PinError{Tenant: m.Tenant, Changes: changes, Since: since}
}

// KeyChange is one key of tenant.toml whose value differs; Old or New is
// nil when the key is absent on that side.
type KeyChange struct {
	Key string
	Old any
	New any
}

// DiffConfig compares two tenant.toml texts key by key: tables are
// descended, arrays of tables element by element ("scorer.components[1]
// .scorer.kind"), any other value is compared whole. The error says the
// new text is not TOML (the old one was pinned, so it is).
func DiffConfig(old, cur []byte) ([]KeyChange, error) {
	var a, b map[string]any
	if err := toml.Unmarshal(old, &a); err != nil {
		return nil, fmt.Errorf("the pinned tenant.toml: %w", err)
	}
	if err := toml.Unmarshal(cur, &b); err != nil {
		return nil, err
	}
	var out []KeyChange
	diffValue("", a, b, &out)
	return out, nil
}

func diffValue(key string, a, b any, out *[]KeyChange) {
	am, aok := a.(map[string]any)
	bm, bok := b.(map[string]any)
	if aok && bok {
		keys := map[string]bool{}
		for k := range am {
			keys[k] = true
		}
		for k := range bm {
			keys[k] = true
		}
		for _, k := range slices.Sorted(maps.Keys(keys)) {
			sub := k
			if key != "" {
				sub = key + "." + k
			}
			diffValue(sub, am[k], bm[k], out)
		}
		return
	}
	at, aok := a.([]map[string]any)
	bt, bok := b.([]map[string]any)
	if aok && bok {
		for i := range max(len(at), len(bt)) {
			var x, y any
			if i < len(at) {
				x = at[i]
			}
			if i < len(bt) {
				y = bt[i]
			}
			diffValue(fmt.Sprintf("%s[%d]", key, i), x, y, out)
		}
		return
	}
	if !reflect.DeepEqual(a, b) {
		*out = append(*out, KeyChange{Key: key, Old: a, New: b})
	}
}

// PinError refuses an operation on a tenant whose frozen files differ from
// the ones pinned when it was sealed (or last pinned). It is a neutral
// description; the CLI and the MCP tools each tell their reader what to do.
type PinError struct {
	Tenant  string
	Changes []Change
	// Unpinned is set for a tenant sealed before fapo pinned frozen files:
	// there is nothing to compare with until the operator pins.
	Unpinned bool
	// Since is "sealed" or "last pinned": what the files are compared with.
	Since string
}

// What lists the changes: "tenant.toml (scorer.kind), scorer/score.py".
func (e *PinError) What() string {
	parts := make([]string, len(e.Changes))
	for i, c := range e.Changes {
		parts[i] = c.String()
	}
	return strings.Join(parts, ", ")
}

func (e *PinError) Error() string { return e.Refusal().Error() }

// Refusal says what changed; who may accept it, and how, is the front
// end's to say (only the operator can pin).
func (e *PinError) Refusal() *refusal.Refusal {
	return refusal.New(refusal.Pin, e.Tenant, e.message())
}

func (e *PinError) message() string {
	if e.Unpinned {
		return fmt.Sprintf("tenant %s was sealed by a fapo that did not pin its frozen files (tenant.toml, scorer and tool files, data/train.jsonl), so nothing vouches for them", e.Tenant)
	}
	since := e.Since
	if since == "" {
		since = "sealed"
	}
	if len(e.Changes) == 1 {
		c := e.Changes[0]
		what := verb(c) + " since it was " + since
		if c.Status == Changed {
			what += strings.TrimPrefix(c.String(), c.Path) // " (scorer.kind)"
		}
		return fmt.Sprintf("tenant %s: %s %s", e.Tenant, c.Path, what)
	}
	return fmt.Sprintf("tenant %s: frozen files changed since they were %s: %s", e.Tenant, since, e.What())
}

func verb(c Change) string {
	switch c.Status {
	case Missing:
		return "was deleted"
	case Added:
		return "appeared (a frozen file: named by tenant.toml, or under scorer/ or corpus/)"
	case Symlinks:
		return "was replaced by a symbolic link"
	}
	return "changed"
}
