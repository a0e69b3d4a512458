package tools

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestToolSchemasMatchSnapshots pins every tool's definition (name,
// description, annotations, input and output schema) to a golden file in
// __toolsnaps__. A schema change is a change of the product's interface:
// regenerate deliberately with UPDATE_TOOLSNAPS=1 go test ./tools/ and
// review the diff. CI fails on drift and on a missing snapshot.
func TestToolSchemasMatchSnapshots(t *testing.T) {
	update := os.Getenv("UPDATE_TOOLSNAPS") == "1"
	seen := map[string]bool{}
	for _, st := range All(Deps{}) {
		name := st.Tool.Name
		require.False(t, seen[name], "duplicate tool %s", name)
		seen[name] = true
		got, err := json.MarshalIndent(st.Tool, "", "  ")
		require.NoError(t, err)
		got = append(got, '\n')
		path := filepath.Join("__toolsnaps__", name+".snap")
		if update {
			require.NoError(t, os.MkdirAll("__toolsnaps__", 0o755))
			require.NoError(t, os.WriteFile(path, got, 0o644))
			continue
		}
		want, err := os.ReadFile(path)
		require.NoError(t, err, "no snapshot for tool %s: run UPDATE_TOOLSNAPS=1 go test ./tools/ and commit %s", name, path)
		require.Equal(t, string(want), string(got), "tool %s drifted from its snapshot: if intended, run UPDATE_TOOLSNAPS=1 go test ./tools/ and review the diff", name)
	}
	entries, err := os.ReadDir("__toolsnaps__")
	require.NoError(t, err)
	for _, e := range entries {
		name := e.Name()[:len(e.Name())-len(".snap")]
		require.True(t, seen[name], "snapshot %s has no tool: delete it or restore the tool", e.Name())
	}
}

func TestEveryToolIsAnnotatedAndDescribed(t *testing.T) {
	for _, st := range All(Deps{}) {
		tool := st.Tool
		require.NotEmpty(t, tool.Description, tool.Name)
		require.NotNil(t, tool.Annotations.ReadOnlyHint, tool.Name)
		require.NotNil(t, tool.Annotations.DestructiveHint, tool.Name)
		require.NotNil(t, tool.Annotations.OpenWorldHint, tool.Name)
		require.NotEmpty(t, tool.RawInputSchema, "%s has no input schema", tool.Name)
		require.Equal(t, "object", tool.OutputSchema.Type, "%s has no output schema", tool.Name)
	}
}

// TestEveryOutputFieldIsDescribed: an agent reads a result through its
// output schema, so every field of every tool's result says what it means.
func TestEveryOutputFieldIsDescribed(t *testing.T) {
	var missing []string
	var walk func(path string, n any)
	walk = func(path string, n any) {
		m, ok := n.(map[string]any)
		if !ok {
			return
		}
		if props, ok := m["properties"].(map[string]any); ok {
			for name, p := range props {
				pm, _ := p.(map[string]any)
				if d, _ := pm["description"].(string); d == "" {
					missing = append(missing, path+"."+name)
				}
				walk(path+"."+name, p)
			}
		}
		if items, ok := m["items"]; ok {
			walk(path+"[]", items)
		}
		if ap, ok := m["additionalProperties"].(map[string]any); ok {
			walk(path+"{}", ap)
		}
	}
	for _, st := range All(Deps{}) {
		b, err := json.Marshal(st.Tool.OutputSchema)
		require.NoError(t, err)
		var schema any
		require.NoError(t, json.Unmarshal(b, &schema))
		walk(st.Tool.Name, schema)
	}
	sort.Strings(missing)
	require.Empty(t, missing, "output fields without a description (add a jsonschema tag)")
}
