package chain

import (
	"context"
	"fmt"
	"strings"

	"github.com/fapo-dev/fapo/engine/provider"
)

// A reflect step critiques the output of an earlier (target) step and
// revises it, for at most max_rounds rounds:
//
//	[[steps]]
//	id = "check"
//	kind = "reflect"
//	target = "answer"                   # the earlier step whose output is the first draft
//	critique = "prompts/critique.md"    # reads .draft (and .critique, the previous round's, "" in round 1)
//	revise = "prompts/revise.md"        # reads .draft and .critique
//	max_rounds = 2                      # 1..5, default 2
//	done = "DONE"                       # the critique's stop signal, default DONE
//
// A round is one critique call and, unless the critique says done, one
// revise call whose answer becomes the next draft. The critique says done
// when its first non-empty line is the done word, ignoring case, markdown
// emphasis and trailing punctuation ("Done.", "**DONE**"). The step's
// output is the last draft; later steps read it as .steps.ID.output.
func init() {
	registerKind("reflect", &kindSpec{
		callsModel:  true,
		keys:        []string{"target", "model", "system", "critique", "revise", "max_rounds", "done", "params"},
		roots:       []string{"draft", "critique", "round"},
		compile:     compileReflect,
		views:       func(*step) []string { return []string{"output"} },
		run:         runReflect,
		placeholder: placeholderReflect,
	})
}

const (
	defaultReflectRounds = 2
	// maxReflectRounds bounds the loop: past a few rounds models mostly
	// rephrase, and every round costs two calls per case.
	maxReflectRounds = 5
	defaultDoneWord  = "DONE"
)

func compileReflect(l *loader, s *step) {
	label := s.cfg.ID
	l.earlierStep(label, s, "target", s.cfg.Target)
	if s.cfg.Critique == "" {
		l.problem(label, "critique is empty; name the critique prompt file (it reads {{.draft}}), e.g. critique = \"prompts/%s.critique.md\"", s.cfg.ID)
	} else {
		l.fileTemplate(label, s, "critique", s.cfg.Critique)
	}
	if s.cfg.Revise == "" {
		l.problem(label, "revise is empty; name the revise prompt file (it reads {{.draft}} and {{.critique}}), e.g. revise = \"prompts/%s.revise.md\"", s.cfg.ID)
	} else {
		l.fileTemplate(label, s, "revise", s.cfg.Revise)
	}
	if s.cfg.System != "" {
		l.fileTemplate(label, s, "system", s.cfg.System)
	}
	if s.cfg.MaxRounds < 0 || s.cfg.MaxRounds > maxReflectRounds {
		l.problem(label, "max_rounds = %d is out of range; use 1 to %d (0 means %d)", s.cfg.MaxRounds, maxReflectRounds, defaultReflectRounds)
	}
	if strings.ContainsAny(s.cfg.Done, "\n") {
		l.problem(label, "done = %q must be a single word or phrase on one line", s.cfg.Done)
	}
	checkParams(l, label, s.cfg.Params)
	if s.cfg.Params.N != nil && *s.cfg.Params.N != 1 {
		l.problem(label, "params.n applies to llm and vote steps; a reflect step revises one draft")
	}
}

func (s *step) rounds() int {
	if s.cfg.MaxRounds == 0 {
		return defaultReflectRounds
	}
	return s.cfg.MaxRounds
}

func (s *step) doneWord() string {
	if s.cfg.Done == "" {
		return defaultDoneWord
	}
	return s.cfg.Done
}

// critiqueDone reports whether a critique carries the done signal.
func critiqueDone(critique, word string) bool {
	for line := range strings.SplitSeq(critique, "\n") {
		line = strings.Trim(strings.TrimSpace(line), "*_#`\"' ")
		if line == "" {
			continue
		}
		line = strings.TrimRight(line, ".!:;*_ ")
		return strings.EqualFold(line, word)
	}
	return false
}

func runReflect(ctx context.Context, x *execution, s *step, st *StepTrace) error {
	draft := x.stepOutput(s.cfg.Target)
	c, err := x.caller(s, st)
	if err != nil {
		return err
	}
	prev := "" // the critique template sees the previous round's critique
	for round := 1; round <= s.rounds(); round++ {
		st.Rounds = round
		extra := map[string]any{"draft": draft, "round": round, "critique": prev}
		msgs, err := x.chatMessages(s, "critique", extra)
		if err != nil {
			return err
		}
		resp, err := c.complete(ctx, msgs, nil, 0)
		if err != nil {
			return fmt.Errorf("round %d critique: %w", round, err)
		}
		st.Messages = append(st.Messages, msgs...)
		st.Messages = append(st.Messages, provider.Message{Role: "assistant", Content: resp.Content})
		if critiqueDone(resp.Content, s.doneWord()) {
			break
		}
		prev = resp.Content
		extra["critique"] = resp.Content
		msgs, err = x.chatMessages(s, "revise", extra)
		if err != nil {
			return err
		}
		resp, err = c.complete(ctx, msgs, nil, 0)
		if err != nil {
			return fmt.Errorf("round %d revise: %w", round, err)
		}
		st.Messages = append(st.Messages, msgs...)
		st.Messages = append(st.Messages, provider.Message{Role: "assistant", Content: resp.Content})
		draft = resp.Content
		if resp.FinishReason == "length" {
			break // a cut-off revision would only be critiqued for being cut off
		}
	}
	st.RawOutput = draft
	st.Output = draft
	return nil
}

// stepOutput is the published output of an earlier step.
func (x *execution) stepOutput(id string) string {
	v, _ := x.steps[id].(map[string]any)
	out, _ := v["output"].(string)
	return out
}

func placeholderReflect(x *execution, s *step, st *StepTrace) error {
	extra := map[string]any{"draft": "<draft of " + s.cfg.Target + ">", "critique": "<critique>", "round": 1}
	var errs []error
	for _, role := range []string{"system", "critique", "revise"} {
		if _, err := x.renderWith(s, role, extra); err != nil {
			errs = append(errs, err)
		}
	}
	st.Output = placeholderOutput(s)
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}
