package chain

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// A schema is compiled with a loader that refuses everything: the
// validator's default would read any file the server can, and a proposed
// chain.toml must not reach outside its variant.
func TestCompileSchemaRefusesRefsOutsideItself(t *testing.T) {
	other := filepath.Join(t.TempDir(), "other.json")
	require.NoError(t, os.WriteFile(other, []byte(`{"type":"string"}`), 0o644))
	for _, ref := range []string{"file://" + filepath.ToSlash(other), "other.json", "https://x.test/s.json"} {
		_, err := compileSchema([]byte(`{"properties":{"a":{"$ref":"` + ref + `"}}}`))
		require.ErrorContains(t, err, "may only $ref within itself", ref)
	}
	sch, err := compileSchema([]byte(`{"properties":{"a":{"$ref":"#/$defs/s"}},"$defs":{"s":{"type":"string"}}}`))
	require.NoError(t, err)
	require.NoError(t, validateOutput(sch, map[string]any{"a": "x"}))
	require.ErrorContains(t, validateOutput(sch, map[string]any{"a": 1.0}), "at '/a': got number, want string")
}
