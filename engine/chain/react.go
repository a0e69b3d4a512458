package chain

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/fapo-dev/fapo/engine/internal/suggest"
	"github.com/fapo-dev/fapo/engine/provider"
)

// A react step lets the model call the tenant's declared tools through the
// chat-completions tools API until it answers without a tool call:
//
//	[[steps]]
//	id = "agent"
//	kind = "react"
//	system = "prompts/agent.system.md"
//	prompt = "prompts/agent.md"
//	tools = ["search", "calc"]    # names of [tools.NAME] blocks of tenant.toml
//	max_iterations = 5            # model calls, 1..20, default 5
//	max_tool_calls = 8            # tool calls in all, 1..50, default 8
//
// Both bounds hold whatever the model does: a tool call past max_tool_calls
// is not run and answered with an error telling the model to answer, and a
// model still calling tools at the last iteration fails the step. Each tool
// call is in StepTrace.ToolCalls with its arguments, result size, error and
// latency.
func init() {
	registerKind("react", &kindSpec{
		callsModel:  true,
		keys:        []string{"model", "system", "prompt", "tools", "max_iterations", "max_tool_calls", "params"},
		compile:     compileReact,
		views:       func(*step) []string { return []string{"output"} },
		run:         runReact,
		placeholder: placeholderReact,
	})
}

const (
	defaultReactIterations = 5
	maxReactIterations     = 20
	defaultReactToolCalls  = 8
	maxReactToolCalls      = 50
	// maxToolResultChars bounds what one tool result adds to the context.
	maxToolResultChars = 8000
	// maxTracedResultChars bounds the result text kept in the trace, which is
	// stored for every case; ResultChars keeps the full size.
	maxTracedResultChars = 2000
)

type reactTool struct {
	name string
	tool Tool
}

func compileReact(l *loader, s *step) {
	label := s.cfg.ID
	compilePromptTemplates(l, s)
	if s.cfg.Params.N != nil && *s.cfg.Params.N != 1 {
		l.problem(label, "params.n applies to llm and vote steps; a react step follows one conversation")
	}
	if s.cfg.MaxIterations < 0 || s.cfg.MaxIterations > maxReactIterations {
		l.problem(label, "max_iterations = %d is out of range; use 1 to %d (0 means %d)", s.cfg.MaxIterations, maxReactIterations, defaultReactIterations)
	}
	if s.cfg.MaxToolCalls < 0 || s.cfg.MaxToolCalls > maxReactToolCalls {
		l.problem(label, "max_tool_calls = %d is out of range; use 1 to %d (0 means %d)", s.cfg.MaxToolCalls, maxReactToolCalls, defaultReactToolCalls)
	}
	declared := slices.Sorted(maps.Keys(l.tools))
	if len(s.cfg.Tools) == 0 {
		if len(declared) == 0 {
			l.problem(label, "tools is empty and the tenant declares none; add a [tools.NAME] block to tenant.toml (kind = \"retrieval\", \"calculator\" or \"mcp\") and list it here")
		} else {
			l.problem(label, "tools is empty; list the tools the model may call (declared in tenant.toml: %s)", strings.Join(declared, ", "))
		}
	}
	var ts []reactTool
	for _, name := range s.cfg.Tools {
		t, ok := l.tools[name]
		switch {
		case !ok && len(declared) == 0:
			l.problem(label, "tool %q is not declared: the tenant declares no tools; a chain may use only tools declared as [tools.NAME] in tenant.toml", name)
		case !ok:
			l.problem(label, "tool %q is not declared in tenant.toml%s (declared: %s); a chain may use only declared tools", name, suggest.Hint(name, declared), strings.Join(declared, ", "))
		case slices.ContainsFunc(ts, func(r reactTool) bool { return r.name == name }):
			l.problem(label, "tool %q is listed twice", name)
		default:
			ts = append(ts, reactTool{name: name, tool: t})
		}
	}
	s.ext = ts
}

func (s *step) maxIterations() int {
	if s.cfg.MaxIterations == 0 {
		return defaultReactIterations
	}
	return s.cfg.MaxIterations
}

func (s *step) maxToolCalls() int {
	if s.cfg.MaxToolCalls == 0 {
		return defaultReactToolCalls
	}
	return s.cfg.MaxToolCalls
}

func runReact(ctx context.Context, x *execution, s *step, st *StepTrace) error {
	tools, _ := s.ext.([]reactTool)
	defs := make([]provider.ToolDef, 0, len(tools))
	byName := make(map[string]Tool, len(tools))
	for _, t := range tools {
		d, err := t.tool.Def(ctx)
		if err != nil {
			return fmt.Errorf("tool %s is unavailable: %w", t.name, err)
		}
		d.Name = t.name // the model calls tools by the names the tenant declared
		defs = append(defs, d)
		byName[t.name] = t.tool
	}
	msgs, err := x.messages(s)
	st.Messages = msgs
	if err != nil {
		return err
	}
	c, err := x.caller(s, st)
	if err != nil {
		return err
	}
	for iter := 1; iter <= s.maxIterations(); iter++ {
		st.Rounds = iter
		resp, err := c.complete(ctx, msgs, defs, 0)
		if err != nil {
			return fmt.Errorf("iteration %d: %w", iter, err)
		}
		msgs = append(msgs, provider.Message{Role: "assistant", Content: resp.Content, ToolCalls: resp.ToolCalls})
		st.Messages = msgs
		if len(resp.ToolCalls) == 0 {
			st.RawOutput = resp.Content
			st.Output = resp.Content
			return nil
		}
		for _, call := range resp.ToolCalls {
			result := x.callTool(ctx, s, st, byName, call)
			msgs = append(msgs, provider.Message{Role: "tool", ToolCallID: call.ID, Name: call.Name, Content: result})
		}
		st.Messages = msgs
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return fmt.Errorf("no final answer after %d iterations: the model was still calling tools at max_iterations; raise max_iterations or tell the model to answer once it has what it needs", s.maxIterations())
}

// callTool runs one tool call within the step's budget and records it; the
// returned text is what the model sees as the tool's result.
func (x *execution) callTool(ctx context.Context, s *step, st *StepTrace, tools map[string]Tool, call provider.ToolCall) string {
	tc := ToolCallTrace{Name: call.Name, Arguments: call.Arguments}
	defer func() { st.ToolCalls = append(st.ToolCalls, tc) }()
	used := len(st.ToolCalls)
	t, ok := tools[call.Name]
	var result string
	var err error
	switch {
	case used >= s.maxToolCalls():
		err = fmt.Errorf("not run: the tool-call limit of this step (%d) is reached; answer now with what you have", s.maxToolCalls())
	case !ok:
		err = fmt.Errorf("unknown tool %q; the tools are %s", call.Name, strings.Join(slices.Sorted(maps.Keys(tools)), ", "))
	default:
		start := time.Now()
		result, err = t.Call(ctx, call.Arguments)
		tc.LatencyMS = float64(time.Since(start).Microseconds()) / 1000
	}
	if err != nil {
		tc.Error = err.Error()
		return "error: " + err.Error()
	}
	tc.ResultChars = len(result)
	tc.Result = truncate(result, maxTracedResultChars)
	return truncate(result, maxToolResultChars)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "\n[... truncated]"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

func placeholderReact(x *execution, s *step, st *StepTrace) error {
	msgs, err := x.messages(s)
	st.Messages = msgs
	st.Output = placeholderOutput(s)
	return err
}
