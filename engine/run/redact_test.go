package run

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/provider"
)

// keptStepText are the StepTrace text fields a redacted held-out result
// keeps: names and a fixed vocabulary, never content. A text field added
// to StepTrace fails TestRedactClearsEveryStepText until redact clears it
// or it is named here.
var keptStepText = map[string]bool{"StepID": true, "Kind": true, "FinishReason": true}

// TestRedactClearsEveryStepText fills every text-bearing field of a step
// (strings, lists, maps, any) with a canary, by reflection, and finds none
// after redact but in the fields kept on purpose.
func TestRedactClearsEveryStepText(t *testing.T) {
	const canary = "CANARY-HELD-OUT"
	var st chain.StepTrace
	v := reflect.ValueOf(&st).Elem()
	for i := range v.NumField() {
		f, name := v.Field(i), v.Type().Field(i).Name
		switch f.Kind() {
		case reflect.String:
			if keptStepText[name] {
				f.SetString("kept")
			} else {
				f.SetString(canary)
			}
		case reflect.Interface:
			f.Set(reflect.ValueOf(canary))
		case reflect.Slice:
			elem := reflect.New(f.Type().Elem()).Elem()
			fillStrings(elem, canary)
			f.Set(reflect.Append(f, elem))
		}
	}
	st.Messages = []provider.Message{{Role: "user", Content: canary}}
	cr := CaseResult{CaseID: "c1", ExecError: canary, ScoreError: canary,
		Trace: chain.Trace{CaseID: "c1", Final: canary, Error: canary, Steps: []chain.StepTrace{st}}}
	cr.redact()
	b, err := json.Marshal(cr)
	require.NoError(t, err)
	require.NotContains(t, string(b), canary, "%s", b)
	require.True(t, strings.Contains(string(b), `"step_id":"kept"`))
}

// fillStrings sets every string reachable in v (a struct or a string) to s.
func fillStrings(v reflect.Value, s string) {
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Field(i).CanSet() {
				fillStrings(v.Field(i), s)
			}
		}
	case reflect.Map:
		if v.Type().Key().Kind() == reflect.String {
			m := reflect.MakeMap(v.Type())
			val := reflect.New(v.Type().Elem()).Elem()
			fillStrings(val, s)
			m.SetMapIndex(reflect.ValueOf(s), val)
			v.Set(m)
		}
	case reflect.Interface:
		v.Set(reflect.ValueOf(s))
	}
}
