package tenant

import (
	"reflect"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/fapo-dev/fapo/engine/internal/suggest"
)

// unknownKeys turns keys the decoder did not use into problems, each with a
// did-you-mean hint against the keys of the table it sits in. The known keys
// come from the toml tags of Config, so a field added there is known here
// without a second list to keep in sync.
func unknownKeys(md toml.MetaData) []Problem {
	undecoded := md.Undecoded()
	seen := make(map[string]bool, len(undecoded))
	for _, k := range undecoded {
		seen[k.String()] = true
	}
	var out []Problem
	for _, k := range undecoded {
		// A whole unknown table is one problem, not one per key inside it.
		if hasUndecodedParent(k, seen) {
			continue
		}
		known := knownKeysAt(reflect.TypeFor[Config](), k[:len(k)-1])
		last := k[len(k)-1]
		hint := suggest.Hint(last, known)
		msg := "unknown key" + hint
		if hint == "" && len(known) > 0 {
			msg += "; known keys here: " + strings.Join(known, ", ")
		}
		out = append(out, Problem{Key: k.String(), Msg: msg})
	}
	slices.SortStableFunc(out, func(a, b Problem) int { return strings.Compare(a.Key, b.Key) })
	return out
}

func hasUndecodedParent(k toml.Key, seen map[string]bool) bool {
	for i := 1; i < len(k); i++ {
		if seen[k[:i].String()] {
			return true
		}
	}
	return false
}

// knownKeysAt walks the table path through t and returns the keys that table
// accepts, or nil when the path does not lead to a struct.
func knownKeysAt(t reflect.Type, path []string) []string {
	for _, seg := range path {
		t = deref(t)
		switch t.Kind() {
		case reflect.Map:
			// The segment is the map key (models.NAME); descend into the value.
			t = t.Elem()
		case reflect.Struct:
			f, ok := fieldByTag(t, seg)
			if !ok {
				return nil
			}
			t = f.Type
		default:
			return nil
		}
		// Arrays of tables report their keys without an index.
		if t = deref(t); t.Kind() == reflect.Slice {
			t = t.Elem()
		}
	}
	t = deref(t)
	if t.Kind() != reflect.Struct {
		return nil
	}
	var keys []string
	for i := range t.NumField() {
		if name := tagName(t.Field(i)); name != "" {
			keys = append(keys, name)
		}
	}
	slices.Sort(keys)
	return keys
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func fieldByTag(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := range t.NumField() {
		if tagName(t.Field(i)) == name {
			return t.Field(i), true
		}
	}
	return reflect.StructField{}, false
}

func tagName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		return f.Name
	}
	return name
}
