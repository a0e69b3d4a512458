package chain

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/fapo-dev/fapo/engine/provider"
)

func init() {
	registerKind("llm", &kindSpec{
		callsModel:  true,
		keys:        []string{"model", "system", "prompt", "params", "json_schema"},
		compile:     compileLLM,
		views:       llmViews,
		run:         runLLM,
		placeholder: placeholderLLM,
	})
}

// maxSamples bounds n: more samples multiply cost without helping a vote.
const maxSamples = 16

func llmViews(s *step) []string {
	if s.schema != nil {
		return []string{"output", "parsed"}
	}
	return []string{"output"}
}

// compilePromptTemplates compiles the user and system templates and checks
// the sampling parameters of a step that talks to a model (llm, react, vote).
func compilePromptTemplates(l *loader, s *step) {
	label := s.cfg.ID
	if s.cfg.Prompt == "" {
		l.problem(label, "prompt is empty; name the user prompt template file, e.g. prompt = \"prompts/%s.md\"", s.cfg.ID)
	} else {
		l.fileTemplate(label, s, "prompt", s.cfg.Prompt)
	}
	if s.cfg.System != "" {
		l.fileTemplate(label, s, "system", s.cfg.System)
	}
	checkParams(l, label, s.cfg.Params)
}

func compileLLM(l *loader, s *step) {
	label := s.cfg.ID
	compilePromptTemplates(l, s)
	switch sc := s.cfg.JSONSchema.(type) {
	case nil:
	case map[string]any:
		b, err := json.Marshal(sc)
		if err != nil {
			l.problem(label, "json_schema: %v", err)
			return
		}
		s.schema = b
		s.texts["json_schema"] = string(b)
		compileStepSchema(l, s)
	case string:
		data, ok := l.readFile(label, "json_schema file", sc)
		if !ok {
			return
		}
		var obj map[string]any
		if err := json.Unmarshal(data, &obj); err != nil {
			l.problem(label, "json_schema file %s is not a JSON object: %v", sc, err)
			return
		}
		s.schema = json.RawMessage(data)
		s.texts["json_schema"] = string(data)
		compileStepSchema(l, s)
	default:
		l.problem(label, "json_schema must be an inline table or a path to a JSON file, not a %T", sc)
	}
}

func compileStepSchema(l *loader, s *step) {
	sch, err := compileSchema(s.schema)
	if err != nil {
		l.problem(s.cfg.ID, "json_schema does not compile as a JSON Schema: %v", err)
		return
	}
	s.validator = sch
}

// checkParams checks [steps.params] of any step that calls a model.
func checkParams(l *loader, label string, p paramsConfig) {
	if p.Temperature != nil && (*p.Temperature < 0 || *p.Temperature > 2) {
		l.problem(label, "params.temperature = %g is out of range; use 0 to 2", *p.Temperature)
	}
	if p.TopP != nil && (*p.TopP < 0 || *p.TopP > 1) {
		l.problem(label, "params.top_p = %g is out of range; use 0 to 1", *p.TopP)
	}
	if p.MaxTokens != nil && *p.MaxTokens <= 0 {
		l.problem(label, "params.max_tokens = %d must be positive", *p.MaxTokens)
	}
	if p.N != nil && (*p.N < 1 || *p.N > maxSamples) {
		l.problem(label, "params.n = %d is out of range; use 1 to %d", *p.N, maxSamples)
	}
}

func (x *execution) messages(s *step) ([]provider.Message, error) {
	var msgs []provider.Message
	if s.tmpl["system"] != nil {
		sys, err := x.render(s, "system")
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, provider.Message{Role: "system", Content: sys})
	}
	user, err := x.render(s, "prompt")
	if err != nil {
		return nil, err
	}
	return append(msgs, provider.Message{Role: "user", Content: user}), nil
}

func runLLM(ctx context.Context, x *execution, s *step, st *StepTrace) error {
	msgs, err := x.messages(s)
	st.Messages = msgs
	if err != nil {
		return err
	}
	if x.models == nil {
		return fmt.Errorf("no models configured for llm step")
	}
	client, model, err := x.models.Client(s.cfg.Model)
	if err != nil {
		return fmt.Errorf("model %q: %w", s.cfg.Model, err)
	}
	n := s.n()
	reqs := make([]provider.Request, n)
	for i := range reqs {
		reqs[i] = provider.Request{Model: model, Messages: msgs, Params: s.params(), JSONSchema: s.schema, Sample: i}
	}
	resps := make([]provider.Response, n)
	errs := make([]error, n)
	if n == 1 {
		resps[0], errs[0] = client.Complete(ctx, reqs[0])
	} else {
		// Samples are independent requests; issuing them together keeps a
		// voting step's latency that of one call.
		var wg sync.WaitGroup
		for i := range reqs {
			wg.Go(func() { resps[i], errs[i] = client.Complete(ctx, reqs[i]) })
		}
		wg.Wait()
	}
	for i, r := range resps {
		if errs[i] != nil {
			continue
		}
		st.Calls++
		if r.CacheHit {
			st.CacheHits++
		}
		st.PromptTokens += r.Usage.PromptTokens
		st.CompletionTokens += r.Usage.CompletionTokens
	}
	st.CacheSavedMS += SavedByCacheMS(resps...)
	for i, e := range errs {
		if e != nil {
			if n > 1 {
				return fmt.Errorf("sample %d: %w", i, e)
			}
			return e
		}
	}
	first := resps[0]
	st.RawOutput = first.Content
	st.Output = first.Content
	st.FinishReason = first.FinishReason
	if n > 1 {
		st.Samples = make([]string, n)
		for i, r := range resps {
			st.Samples[i] = r.Content
		}
	}
	if s.schema != nil {
		v, err := parseJSONText(first.Content)
		if err == nil && s.validator != nil {
			err = validateOutput(s.validator, v)
		}
		if err != nil {
			// The model answered; what it answered does not parse. That
			// is the variant's format, never the infrastructure.
			st.ParseError = err.Error()
			if first.FinishReason == "length" {
				return fmt.Errorf("output is not the JSON the schema asks for (cut off at max_tokens): %w", err)
			}
			return fmt.Errorf("output is not the JSON the schema asks for: %w", err)
		}
		st.Parsed = v
	}
	return nil
}

func placeholderLLM(x *execution, s *step, st *StepTrace) error {
	msgs, err := x.messages(s)
	st.Messages = msgs
	if err != nil {
		return err
	}
	st.Output = placeholderOutput(s)
	if s.schema != nil {
		var sc map[string]any
		_ = json.Unmarshal(s.schema, &sc) // validated at Load
		st.Parsed = placeholderFromSchema(schemaBody(sc), s.cfg.ID)
	}
	return nil
}

// placeholderFromSchema builds a value with every property the schema
// declares, so that templates reading .steps.ID.parsed.field dry-run.
func placeholderFromSchema(sc map[string]any, path string) any {
	switch sc["type"] {
	case "object":
		props, _ := sc["properties"].(map[string]any)
		out := make(map[string]any, len(props))
		for k, v := range props {
			sub, _ := v.(map[string]any)
			out[k] = placeholderFromSchema(sub, path+"."+k)
		}
		return out
	case "array":
		item, _ := sc["items"].(map[string]any)
		return []any{placeholderFromSchema(item, path+"[0]")}
	case "number", "integer":
		return 0.0
	case "boolean":
		return false
	}
	return "<" + path + ">"
}
