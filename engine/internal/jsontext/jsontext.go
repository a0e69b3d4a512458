// Package jsontext holds the few JSON chores that the chain, the scorers,
// the review gate and the datasets share: taking the body out of the
// Markdown code fence models wrap JSON in, naming a decoded value's kind in
// messages, and following a dotted path ("a.b", "items.0") into decoded
// JSON. One reading each, so a path or a fenced answer means the same
// thing at every step of a run.
package jsontext

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

const fence = "```"

// Unfence returns the body of one code fence that makes up all of s
// (trimmed, language tag dropped), or s trimmed when s is not fenced. Text
// around a fence is not tolerated here: a caller that wants that uses
// FirstFence.
func Unfence(s string) string {
	t := strings.TrimSpace(s)
	if len(t) < 2*len(fence) || !strings.HasPrefix(t, fence) || !strings.HasSuffix(t, fence) {
		return t
	}
	return strings.TrimSpace(dropTag(t[len(fence) : len(t)-len(fence)]))
}

// FirstFence returns the body of the first code fence in s, with whatever
// chatter surrounds it dropped; ok is false when s has no fence. An
// unclosed fence runs to the end of s.
func FirstFence(s string) (body string, ok bool) {
	i := strings.Index(s, fence)
	if i < 0 {
		return "", false
	}
	rest := s[i+len(fence):]
	if j := strings.Index(rest, fence); j >= 0 {
		rest = rest[:j]
	}
	return strings.TrimSpace(dropTag(rest)), true
}

// dropTag removes a fence's language tag ("json", "JSON", "jsonc"): the
// first line when it holds no JSON.
func dropTag(body string) string {
	if nl := strings.IndexByte(body, '\n'); nl >= 0 && !strings.ContainsAny(body[:nl], "{[\"") {
		return body[nl+1:]
	}
	// A one-line fence: ```json {"a":1}```.
	tag := body
	if k := strings.IndexAny(body, "{[\""); k >= 0 {
		tag = body[:k]
	}
	if t := strings.TrimSpace(tag); t != "" && !strings.ContainsAny(t, " \t") {
		return body[len(tag):]
	}
	return body
}

// Kind names the kind of a value decoded by encoding/json, with its
// article, for messages: "an object", "a list", "a string", "a number",
// "a boolean", "null".
func Kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	case string:
		return "a string"
	case float64, int, int64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return fmt.Sprintf("a %T", v)
}

// Lookup follows a dotted path into decoded JSON: a segment is an object key,
// or a decimal index into a list. The empty path is v itself. The error says
// which segment failed and why.
func Lookup(v any, path string) (any, error) {
	if path == "" {
		return v, nil
	}
	cur := v
	for seg := range strings.SplitSeq(path, ".") {
		switch c := cur.(type) {
		case map[string]any:
			next, ok := c[seg]
			if !ok {
				return nil, fmt.Errorf("no key %q", seg)
			}
			cur = next
		case []any:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(c) {
				return nil, fmt.Errorf("%q is not an index of a %d-element list", seg, len(c))
			}
			cur = c[i]
		default:
			return nil, fmt.Errorf("cannot look up %q in %s", seg, Kind(cur))
		}
	}
	return cur, nil
}
