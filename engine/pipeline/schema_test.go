package pipeline

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSchemaMatchesWireTypes keeps protocol.schema.json and the Go wire
// types in step: every field fapo sends or reads is in the schema, and the
// schema names no field fapo ignores.
func TestSchemaMatchesWireTypes(t *testing.T) {
	b, err := os.ReadFile("protocol.schema.json")
	require.NoError(t, err)
	var s struct {
		Defs map[string]struct {
			Properties map[string]any `json:"properties"`
		} `json:"$defs"`
	}
	require.NoError(t, json.Unmarshal(b, &s))
	for def, v := range map[string]any{"request": wireRequest{}, "response": wireResponse{}, "step": wireStep{}} {
		var fields []string
		rt := reflect.TypeOf(v)
		for i := range rt.NumField() {
			fields = append(fields, strings.Split(rt.Field(i).Tag.Get("json"), ",")[0])
		}
		var props []string
		for k := range s.Defs[def].Properties {
			props = append(props, k)
		}
		slices.Sort(fields)
		slices.Sort(props)
		require.Equal(t, fields, props, def)
	}
}
