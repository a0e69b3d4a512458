package chain

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaURL names a step's schema inside its own compiler; it is never
// fetched.
const schemaURL = "file:///fapo-step-output.json"

// errNoRemoteRefs refuses every $ref that leaves the schema: the validator's
// default loader would read any file:// path on the server's disk (and a
// chain.toml is a file the agent proposes), and the sealed variant's bytes
// are all a step may depend on.
var errNoRemoteRefs = errors.New("a json_schema may only $ref within itself (#/...); inline the referenced schema")

type refuseLoader struct{}

func (refuseLoader) Load(string) (any, error) { return nil, errNoRemoteRefs }

// schemaBody is the schema proper: a step may give the OpenAI response_format
// wrapper {name, schema, strict} instead, which providers accept too.
func schemaBody(sc map[string]any) map[string]any {
	if inner, ok := sc["schema"].(map[string]any); ok && sc["type"] == nil {
		return inner
	}
	return sc
}

// compileSchema compiles a step's json_schema so that a schema the validator
// cannot apply is a load problem, not a failure of every case.
func compileSchema(raw []byte) (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		return nil, err
	}
	obj, ok := doc.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not a JSON object")
	}
	c := jsonschema.NewCompiler()
	c.UseLoader(refuseLoader{})
	// Pinned, so a dependency update cannot change what a schema means.
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(schemaURL, schemaBody(obj)); err != nil {
		return nil, err
	}
	sch, err := c.Compile(schemaURL)
	if err != nil {
		return nil, oneLine(err.Error())
	}
	return sch, nil
}

// validateOutput checks a decoded step output against the step's schema; the
// error is the validator's message on one line, without the schema's name.
func validateOutput(sch *jsonschema.Schema, v any) error {
	if err := sch.Validate(v); err != nil {
		var ve *jsonschema.ValidationError
		if errors.As(err, &ve) && len(ve.Causes) > 0 {
			var parts []string
			for _, c := range ve.Causes {
				parts = append(parts, strings.TrimSpace(strings.ReplaceAll(c.Error(), "\n", "; ")))
			}
			return errors.New(strings.Join(parts, "; "))
		}
		return oneLine(err.Error())
	}
	return nil
}

func oneLine(s string) error {
	s = strings.ReplaceAll(s, schemaURL, "json_schema")
	return errors.New(strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", "; ")), " "))
}
