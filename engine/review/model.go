package review

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fapo-dev/fapo/engine/internal/jsontext"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/prompts"
)

// Aspects the model reviewer judges, in the order prompts/reviewer.md lists
// them.
var Aspects = []string{"scope", "overfit", "leak", "coherence"}

// DefaultReviewTimeout bounds one model review when the caller's context has
// no deadline: a reviewer that never answers must fail the review, not hang
// the session.
const DefaultReviewTimeout = 2 * time.Minute

// ModelReviewer asks a model, in a fresh context, for a verdict on a
// proposal.
type ModelReviewer struct {
	client provider.Client
	model  string
	// Timeout overrides DefaultReviewTimeout.
	Timeout time.Duration
}

// NewModelReviewer returns the independent reviewer backed by model (the
// provider's model name) on client.
func NewModelReviewer(client provider.Client, model string) Reviewer {
	return &ModelReviewer{client: client, model: model}
}

// verdictSchema is the strict shape prompts/reviewer.md asks for.
var verdictSchema = func() json.RawMessage {
	aspect := map[string]any{"type": "object", "additionalProperties": false, "required": []string{"ok", "reason"},
		"properties": map[string]any{"ok": map[string]any{"type": "boolean"}, "reason": map[string]any{"type": "string"}}}
	props := map[string]any{"verdict": map[string]any{"type": "string", "enum": []string{"pass", "fail"}}}
	required := []string{"verdict"}
	for _, a := range Aspects {
		props[a] = aspect
		required = append(required, a)
	}
	b, _ := json.Marshal(map[string]any{"type": "object", "additionalProperties": false, "required": required, "properties": props})
	return b
}()

// Review sends only the proposal (scope contract, level, rationale, target
// cluster, diff) under the reviewer's system prompt. Any answer that is not
// a complete verdict is an error, which the gate turns into a failed review.
func (r *ModelReviewer) Review(ctx context.Context, in ModelInput) (ModelVerdict, error) {
	system, err := prompts.Text(prompts.Reviewer)
	if err != nil {
		return ModelVerdict{}, err
	}
	if _, ok := ctx.Deadline(); !ok || r.Timeout > 0 {
		d := r.Timeout
		if d <= 0 {
			d = DefaultReviewTimeout
		}
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d)
		defer cancel()
	}
	zero := 0.0
	resp, err := r.client.Complete(ctx, provider.Request{Model: r.model, JSONSchema: verdictSchema,
		Params: provider.Params{Temperature: &zero},
		Messages: []provider.Message{
			{Role: "system", Content: system},
			{Role: "user", Content: RenderModelInput(in)},
		}})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, provider.ErrTimeout) {
			return ModelVerdict{}, fmt.Errorf("reviewer model %s did not answer in time: %w", r.model, err)
		}
		return ModelVerdict{}, fmt.Errorf("reviewer model %s: %w", r.model, err)
	}
	v, err := parseVerdict(resp.Content)
	if err != nil {
		return ModelVerdict{}, fmt.Errorf("reviewer model %s gave no usable verdict: %w", r.model, err)
	}
	return v, nil
}

// RenderModelInput is the reviewer's user message: everything it may know
// about the proposal, and nothing else.
func RenderModelInput(in ModelInput) string {
	var b strings.Builder
	section := func(title, body string) {
		if strings.TrimSpace(body) == "" {
			body = "(none given)"
		}
		fmt.Fprintf(&b, "## %s\n%s\n\n", title, strings.TrimRight(body, "\n"))
	}
	section("Scope contract", in.Scope)
	section("Declared level", string(in.Level))
	section("Target failure cluster", in.TargetCluster)
	section("Author's rationale", in.Rationale)
	section("Diff", "```diff\n"+strings.TrimRight(in.Diff, "\n")+"\n```")
	return strings.TrimRight(b.String(), "\n") + "\n"
}

type wireAspect struct {
	OK     *bool  `json:"ok"`
	Reason string `json:"reason"`
}

type wireVerdict struct {
	Verdict   string      `json:"verdict"`
	Scope     *wireAspect `json:"scope"`
	Overfit   *wireAspect `json:"overfit"`
	Leak      *wireAspect `json:"leak"`
	Coherence *wireAspect `json:"coherence"`
}

// parseVerdict accepts exactly the reviewer's JSON shape with every aspect
// judged.
func parseVerdict(content string) (ModelVerdict, error) {
	var w wireVerdict
	if err := DecodeJSONAnswer(content, &w); err != nil {
		return ModelVerdict{}, err
	}
	if w.Verdict != "pass" && w.Verdict != "fail" {
		return ModelVerdict{}, errors.New(`"verdict" must be "pass" or "fail"`)
	}
	v := ModelVerdict{Reasons: map[string]string{}}
	var missing []string
	for i, a := range []*wireAspect{w.Scope, w.Overfit, w.Leak, w.Coherence} {
		name := Aspects[i]
		if a == nil || a.OK == nil {
			missing = append(missing, name)
			continue
		}
		v.Reasons[name] = strings.TrimSpace(a.Reason)
		if !*a.OK {
			v.Failed = append(v.Failed, name)
			if v.Reasons[name] == "" {
				v.Reasons[name] = "judged not ok without a reason"
			}
		}
	}
	if len(missing) > 0 {
		return ModelVerdict{}, fmt.Errorf("aspects not judged (each needs {\"ok\": true|false, \"reason\": ...}): %s", strings.Join(missing, ", "))
	}
	// Pass needs both the verdict and every aspect: a reviewer that
	// contradicts itself does not get the benefit of the doubt.
	v.Pass = w.Verdict == "pass" && len(v.Failed) == 0
	if w.Verdict == "fail" && len(v.Failed) == 0 {
		v.Failed = []string{"verdict"}
		v.Reasons["verdict"] = "the reviewer answered fail although it judged every aspect ok"
	}
	return v, nil
}

// DecodeJSONAnswer decodes a model's answer that must be one JSON object of
// v's shape: no unknown fields, nothing after it. A ```json fence around it
// is tolerated, since models add one even when told not to; prose is not.
// The model reviewer and failure analysis share it so that both are equally
// strict.
func DecodeJSONAnswer(content string, v any) error {
	t := jsontext.Unfence(content)
	if t == "" {
		return errors.New("the answer is empty")
	}
	dec := json.NewDecoder(strings.NewReader(t))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("the answer is not the JSON object asked for: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("text follows the JSON object")
	}
	return nil
}
