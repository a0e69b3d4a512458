// Package review is the gate a proposed variant must pass before it may touch
// validation data: deterministic checks (scope, validity, leakage,
// memorization, size) and, when configured, an independent model reviewer
// that sees only the diff, the rationale, the level and the scope contract.
package review

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/fapo-dev/fapo/engine/variant"
)

// Change is one difference between a parent and a candidate, with the level
// it requires.
type Change struct {
	File   string        `json:"file" jsonschema:"the changed file"`
	Level  variant.Level `json:"level" jsonschema:"the level the change belongs to"`
	Detail string        `json:"detail" jsonschema:"what changed"`
}

// Classification says what a candidate changes relative to its parent.
type Classification struct {
	Changes []Change `json:"changes"`
	// Level is the highest level any change requires ("" when nothing changed).
	Level variant.Level `json:"level"`
}

// Files lists the changed files, sorted.
func (c Classification) Files() []string {
	seen := map[string]bool{}
	var out []string
	for _, ch := range c.Changes {
		if !seen[ch.File] {
			seen[ch.File] = true
			out = append(out, ch.File)
		}
	}
	sort.Strings(out)
	return out
}

// parameterKeys are step keys whose change is a parameter change: they tune
// how a step runs without changing what it is or what it reads.
var parameterKeys = map[string]bool{"params": true, "k": true, "model": true, "n": true, "rounds": true,
	"max_rounds": true, "max_iterations": true, "max_tool_calls": true, "on_fail": true}

// templateKeys hold inline template text: editing them is a prompt change.
var templateKeys = map[string]bool{"query": true, "input": true, "system_text": true, "prompt_text": true}

// Classify compares candidate files with parent files (relative path →
// content) and reports each change and the level it requires. A chain.toml
// that does not parse is reported as an error: the validity check says why.
func Classify(parent, candidate map[string][]byte) (Classification, error) {
	var cl Classification
	paths := map[string]bool{}
	for p := range parent {
		paths[p] = true
	}
	for p := range candidate {
		paths[p] = true
	}
	sorted := make([]string, 0, len(paths))
	for p := range paths {
		sorted = append(sorted, p)
	}
	sort.Strings(sorted)

	for _, p := range sorted {
		old, inOld := parent[p]
		cur, inNew := candidate[p]
		if inOld && inNew && bytes.Equal(old, cur) {
			continue
		}
		switch {
		case p == "chain.toml":
			changes, err := classifyChain(old, cur)
			if err != nil {
				return cl, err
			}
			cl.Changes = append(cl.Changes, changes...)
		case strings.HasPrefix(p, "prompts/") && inOld && inNew:
			cl.Changes = append(cl.Changes, Change{File: p, Level: variant.LevelPrompt, Detail: "prompt text edited"})
		case strings.HasPrefix(p, "prompts/") && !inOld:
			// A new prompt file is used only if the chain changes to read it,
			// which classifyChain reports as structural; alone it is text.
			cl.Changes = append(cl.Changes, Change{File: p, Level: variant.LevelPrompt, Detail: "prompt file added"})
		case strings.HasPrefix(p, "prompts/") && !inNew:
			cl.Changes = append(cl.Changes, Change{File: p, Level: variant.LevelStructural, Detail: "prompt file removed"})
		default:
			cl.Changes = append(cl.Changes, Change{File: p, Level: variant.LevelStructural, Detail: "file outside chain.toml and prompts/ changed"})
		}
	}
	for _, ch := range cl.Changes {
		if ch.Level.Rank() > cl.Level.Rank() {
			cl.Level = ch.Level
		}
	}
	return cl, nil
}

func classifyChain(old, cur []byte) ([]Change, error) {
	var a, b map[string]any
	if _, err := toml.Decode(string(old), &a); err != nil {
		return nil, fmt.Errorf("parent chain.toml does not parse: %w", err)
	}
	if _, err := toml.Decode(string(cur), &b); err != nil {
		return nil, fmt.Errorf("chain.toml does not parse: %w", err)
	}
	var out []Change
	structural := func(detail string) {
		out = append(out, Change{File: "chain.toml", Level: variant.LevelStructural, Detail: detail})
	}

	for k := range union(a, b) {
		if k != "steps" && !reflect.DeepEqual(a[k], b[k]) {
			structural(fmt.Sprintf("top-level %q changed", k))
		}
	}
	sa, sb := steps(a), steps(b)
	if len(sa) != len(sb) {
		structural(fmt.Sprintf("step count changed from %d to %d", len(sa), len(sb)))
		return out, nil
	}
	for i := range sa {
		ida, idb := fmt.Sprint(sa[i]["id"]), fmt.Sprint(sb[i]["id"])
		if ida != idb || !reflect.DeepEqual(sa[i]["kind"], sb[i]["kind"]) {
			structural(fmt.Sprintf("step %d changed from %s to %s (id or kind)", i+1, ida, idb))
			continue
		}
		keys := union(sa[i], sb[i])
		sortedKeys := make([]string, 0, len(keys))
		for k := range keys {
			sortedKeys = append(sortedKeys, k)
		}
		sort.Strings(sortedKeys)
		for _, k := range sortedKeys {
			if reflect.DeepEqual(sa[i][k], sb[i][k]) {
				continue
			}
			switch {
			case parameterKeys[k]:
				out = append(out, Change{File: "chain.toml", Level: variant.LevelParameter, Detail: fmt.Sprintf("step %q: %s changed", ida, k)})
			case templateKeys[k]:
				out = append(out, Change{File: "chain.toml", Level: variant.LevelPrompt, Detail: fmt.Sprintf("step %q: inline template %s edited", ida, k)})
			default:
				structural(fmt.Sprintf("step %q: %s changed", ida, k))
			}
		}
	}
	return out, nil
}

func steps(m map[string]any) []map[string]any {
	raw, _ := m["steps"].([]map[string]any)
	if raw != nil {
		return raw
	}
	list, _ := m["steps"].([]any)
	out := make([]map[string]any, 0, len(list))
	for _, s := range list {
		if sm, ok := s.(map[string]any); ok {
			out = append(out, sm)
		}
	}
	return out
}

func union(a, b map[string]any) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}
