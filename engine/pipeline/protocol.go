package pipeline

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/provider"
)

// wireRequest is one line fapo writes (or one POST body): see
// protocol.schema.json, which a test keeps in step with these types.
type wireRequest struct {
	Protocol      int                       `json:"protocol"`
	ID            string                    `json:"id"`
	CaseToken     string                    `json:"case_token"`
	Inputs        map[string]any            `json:"inputs"`
	Prompts       map[string]string         `json:"prompts"`
	SystemPrompts map[string]string         `json:"system_prompts"`
	Params        map[string]map[string]any `json:"params"`
	Switches      map[string]any            `json:"switches"`
	Override      *chain.ExternalOverride   `json:"override,omitempty"`
	Model         *wireModel                `json:"model,omitempty"`
}

// wireModel tells the program where fapo's model endpoint is for this case.
type wireModel struct {
	BaseURL string `json:"base_url"`
	APIKey  string `json:"api_key"`
	Name    string `json:"name"`
}

// wireResponse is the program's answer to one request.
type wireResponse struct {
	ID     string          `json:"id"`
	Output json.RawMessage `json:"output"`
	Steps  []wireStep      `json:"steps"`
	// Error is a failure of the case; Infrastructure says it was not the
	// variant's doing (the program's own model server was down), which
	// errors the case instead of scoring it.
	Error          string `json:"error"`
	Infrastructure bool   `json:"infrastructure"`
}

type wireStep struct {
	ID           string               `json:"id"`
	Kind         string               `json:"kind"`
	Input        json.RawMessage      `json:"input"`
	Output       json.RawMessage      `json:"output"`
	Messages     []provider.Message   `json:"messages"`
	FinishReason string               `json:"finish_reason"`
	Tokens       *wireTokens          `json:"tokens"`
	LatencyMS    float64              `json:"latency_ms"`
	Error        string               `json:"error"`
	Retrieved    []chain.RetrievedDoc `json:"retrieved"`
}

type wireTokens struct {
	Prompt     int `json:"prompt"`
	Completion int `json:"completion"`
}

func newRequest(id string, x chain.ExternalCase) wireRequest {
	return wireRequest{Protocol: Protocol, ID: id, CaseToken: x.Token, Inputs: x.Inputs, Prompts: x.Prompts,
		SystemPrompts: x.Systems, Params: x.Params, Switches: x.Switches, Override: x.Override}
}

// decodeResponse parses and checks one answer; the error says what is
// wrong in words a program's author can act on.
func decodeResponse(line []byte, wantID string) (*wireResponse, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	var r wireResponse
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("not a JSON object (%v); it began %q: write only protocol answers to stdout, logs to stderr", err, head(string(line), 120))
	}
	if r.ID != wantID {
		return nil, fmt.Errorf("answered id %q to request %q: answer each request once, in order, with its id", head(r.ID, 40), wantID)
	}
	var problems []string
	seen := map[string]bool{}
	for i, s := range r.Steps {
		switch {
		case s.ID == "":
			problems = append(problems, fmt.Sprintf("steps[%d] has no id", i))
		case seen[s.ID]:
			problems = append(problems, fmt.Sprintf("steps[%d]: id %q is repeated", i, s.ID))
		}
		seen[s.ID] = true
		if !slices.Contains(chain.ExternalKinds, s.Kind) {
			problems = append(problems, fmt.Sprintf("steps[%d] (%s): kind %q is not one of %s", i, s.ID, s.Kind, strings.Join(chain.ExternalKinds, ", ")))
		}
		if s.Tokens != nil && (s.Tokens.Prompt < 0 || s.Tokens.Completion < 0) {
			problems = append(problems, fmt.Sprintf("steps[%d] (%s): negative tokens", i, s.ID))
		}
	}
	if r.Error == "" && len(r.Output) == 0 {
		problems = append(problems, `no "output" and no "error"`)
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("malformed answer: %s", strings.Join(problems, "; "))
	}
	return &r, nil
}

// text renders a reported value as the text later readers see: a string
// as itself, anything else as compact JSON (then also returned parsed).
func text(raw json.RawMessage) (string, any) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var v any
	_ = json.Unmarshal(raw, &v) // raw came out of a decoded document
	var b bytes.Buffer
	_ = json.Compact(&b, raw)
	return b.String(), v
}

func head(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
