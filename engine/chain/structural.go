package chain

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/fapo-dev/fapo/engine/internal/suggest"
	"github.com/fapo-dev/fapo/engine/provider"
)

// This file holds what the structural kinds (reflect, react, vote, branch)
// share: references to earlier steps by id, rendering with extra template
// roots, and model calls whose usage adds up in one step trace.

// earlierStep checks that key names a step that runs before s, and records
// the read so attribution sees the dependency.
func (l *loader) earlierStep(label string, s *step, key, id string) bool {
	self := l.ids[s.cfg.ID]
	j, ok := l.ids[id]
	switch {
	case id == "":
		l.problem(label, "%s is empty; name an earlier step", key)
	case !ok:
		var earlier []string
		for _, e := range l.steps {
			earlier = append(earlier, e.cfg.ID)
		}
		l.problem(label, "%s = %q names no step%s", key, id, suggest.Hint(id, earlier))
	case id == s.cfg.ID:
		l.problem(label, "%s = %q is this step itself; name an earlier step", key, id)
	case j > self:
		l.problem(label, "%s = %q runs later; a step may read only earlier steps (move it before this one)", key, id)
	default:
		if !slices.Contains(s.reads, id) {
			s.reads = append(s.reads, id)
		}
		return true
	}
	return false
}

// renderWith renders template role of s with extra root values (.draft,
// .samples, ...) next to .context and .steps.
func (x *execution) renderWith(s *step, role string, extra map[string]any) (string, error) {
	t := s.tmpl[role]
	if t == nil {
		return "", nil
	}
	data := maps.Clone(x.data)
	maps.Copy(data, extra)
	return x.execute(t, role, data)
}

// chatMessages renders an optional system template and the user template
// role into messages.
func (x *execution) chatMessages(s *step, role string, extra map[string]any) ([]provider.Message, error) {
	var msgs []provider.Message
	if s.tmpl["system"] != nil {
		sys, err := x.renderWith(s, "system", extra)
		if err != nil {
			return nil, err
		}
		msgs = append(msgs, provider.Message{Role: "system", Content: sys})
	}
	user, err := x.renderWith(s, role, extra)
	if err != nil {
		return nil, err
	}
	return append(msgs, provider.Message{Role: "user", Content: user}), nil
}

// caller makes the model calls of one step and adds their usage to its
// trace.
type caller struct {
	client provider.Client
	model  string
	s      *step
	st     *StepTrace
}

func (x *execution) caller(s *step, st *StepTrace) (*caller, error) {
	if x.models == nil {
		return nil, fmt.Errorf("no models configured for %s step", s.cfg.Kind)
	}
	client, model, err := x.models.Client(s.cfg.Model)
	if err != nil {
		return nil, fmt.Errorf("model %q: %w", s.cfg.Model, err)
	}
	return &caller{client: client, model: model, s: s, st: st}, nil
}

// complete sends one request; sample distinguishes otherwise identical
// requests in the response cache.
func (c *caller) complete(ctx context.Context, msgs []provider.Message, tools []provider.ToolDef, sample int) (provider.Response, error) {
	resp, err := c.client.Complete(ctx, provider.Request{Model: c.model, Messages: msgs, Params: c.s.params(), Tools: tools, Sample: sample})
	if err != nil {
		return resp, err
	}
	c.st.Calls++
	if resp.CacheHit {
		c.st.CacheHits++
		c.st.CacheSavedMS += SavedByCacheMS(resp)
	}
	c.st.PromptTokens += resp.Usage.PromptTokens
	c.st.CompletionTokens += resp.Usage.CompletionTokens
	c.st.FinishReason = resp.FinishReason
	return resp, nil
}
