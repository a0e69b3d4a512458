package provider

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"unicode/utf8"
)

// The cache key is sha256 over a canonical JSON of the request: fixed
// field order, raw JSON (schemas, tool parameters) re-encoded with sorted
// keys and no whitespace, so that formatting never splits entries. The
// version field retires every entry when the layout changes.
//
// It is on every model call's path, so it is written in one pass by hand
// into a pooled buffer rather than by encoding/json's reflection (which
// would also re-validate every raw schema it embeds), and the canonical
// form of a raw schema is computed once per distinct schema. The bytes are
// exactly those json.Marshal gives for keyLayout (a test holds it to
// that), so entries stored before stay hits.

// keyLayout is the layout of the key's JSON, kept for the test that checks
// the hand-written encoder against encoding/json.
type keyLayout struct {
	V          int             `json:"v"`
	Provider   string          `json:"provider"`
	BaseURL    string          `json:"base_url"`
	Model      string          `json:"model"`
	Messages   []Message       `json:"messages"`
	Params     Params          `json:"params"`
	JSONSchema json.RawMessage `json:"json_schema,omitempty"`
	Tools      []ToolDef       `json:"tools,omitempty"`
	Sample     int             `json:"sample"`
	// Repeat is omitted at 0, so a run without repeats keeps the keys
	// (and hits) of every run before repeats existed.
	Repeat int `json:"repeat,omitempty"`
}

var keyBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

func cacheKey(ns CacheNamespace, req Request, repeat int) ([]byte, error) {
	bp := keyBufs.Get().(*[]byte)
	defer keyBufs.Put(bp)
	b, err := appendKeyJSON((*bp)[:0], ns, req, repeat)
	if err != nil {
		return nil, err
	}
	*bp = b
	sum := sha256.Sum256(b)
	return sum[:], nil
}

func appendKeyJSON(b []byte, ns CacheNamespace, req Request, repeat int) ([]byte, error) {
	b = append(b, `{"v":1,"provider":`...)
	b = appendString(b, ns.Provider)
	b = append(b, `,"base_url":`...)
	b = appendString(b, ns.BaseURL)
	b = append(b, `,"model":`...)
	b = appendString(b, req.Model)
	b = append(b, `,"messages":`...)
	if req.Messages == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, '[')
		for i, m := range req.Messages {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendMessage(b, m)
		}
		b = append(b, ']')
	}
	b = append(b, `,"params":{`...)
	var err error
	if b, err = appendParams(b, req.Params); err != nil {
		return nil, err
	}
	b = append(b, '}')
	schema, err := canonicalCached(req.JSONSchema)
	if err != nil {
		return nil, fmt.Errorf("json_schema: %w", err)
	}
	if len(schema) > 0 {
		b = append(b, `,"json_schema":`...)
		b = append(b, schema...)
	}
	if len(req.Tools) > 0 {
		b = append(b, `,"tools":[`...)
		for i, t := range req.Tools {
			p, err := canonicalCached(t.Parameters)
			if err != nil {
				return nil, fmt.Errorf("tool %s parameters: %w", t.Name, err)
			}
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"name":`...)
			b = appendString(b, t.Name)
			if t.Description != "" {
				b = append(b, `,"description":`...)
				b = appendString(b, t.Description)
			}
			if len(p) > 0 {
				b = append(b, `,"parameters":`...)
				b = append(b, p...)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = append(b, `,"sample":`...)
	b = strconv.AppendInt(b, int64(req.Sample), 10)
	if repeat != 0 {
		b = append(b, `,"repeat":`...)
		b = strconv.AppendInt(b, int64(repeat), 10)
	}
	return append(b, '}'), nil
}

func appendMessage(b []byte, m Message) []byte {
	b = append(b, `{"role":`...)
	b = appendString(b, m.Role)
	b = append(b, `,"content":`...)
	b = appendString(b, m.Content)
	if m.Name != "" {
		b = append(b, `,"name":`...)
		b = appendString(b, m.Name)
	}
	if len(m.ToolCalls) > 0 {
		b = append(b, `,"tool_calls":[`...)
		for i, tc := range m.ToolCalls {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"id":`...)
			b = appendString(b, tc.ID)
			b = append(b, `,"name":`...)
			b = appendString(b, tc.Name)
			b = append(b, `,"arguments":`...)
			b = appendString(b, tc.Arguments)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	if m.ToolCallID != "" {
		b = append(b, `,"tool_call_id":`...)
		b = appendString(b, m.ToolCallID)
	}
	return append(b, '}')
}

func appendParams(b []byte, p Params) ([]byte, error) {
	first := true
	field := func(name string) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, name...)
		b = append(b, `":`...)
	}
	var err error
	if p.Temperature != nil {
		field("temperature")
		if b, err = appendFloat(b, *p.Temperature); err != nil {
			return nil, err
		}
	}
	if p.TopP != nil {
		field("top_p")
		if b, err = appendFloat(b, *p.TopP); err != nil {
			return nil, err
		}
	}
	if p.MaxTokens != nil {
		field("max_tokens")
		b = strconv.AppendInt(b, int64(*p.MaxTokens), 10)
	}
	if p.Seed != nil {
		field("seed")
		b = strconv.AppendInt(b, int64(*p.Seed), 10)
	}
	if len(p.Stop) > 0 {
		field("stop")
		b = append(b, '[')
		for i, s := range p.Stop {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, s)
		}
		b = append(b, ']')
	}
	return b, nil
}

var errNonFinite = errors.New("json: unsupported value: a parameter is NaN or infinite")

// appendFloat formats f as encoding/json does.
func appendFloat(b []byte, f float64) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, errNonFinite
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// clean up e-09 to e-9, as encoding/json does
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

const hexDigits = "0123456789abcdef"

// appendString quotes s as encoding/json does with HTML escaping on (its
// default): <, > and & as \u003c…, invalid UTF-8 as \ufffd, U+2028 and
// U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// canonical holds the canonical form of the raw JSON values seen so far
// (a chain has a few schemas and tools, sent with every call); bounded so
// that a process fed endless distinct schemas does not grow without end.
var canonical struct {
	sync.RWMutex
	m map[string]json.RawMessage
}

const maxCanonical = 1024

func canonicalCached(raw json.RawMessage) (json.RawMessage, error) {
	if len(raw) == 0 {
		return nil, nil
	}
	canonical.RLock()
	c, ok := canonical.m[string(raw)]
	canonical.RUnlock()
	if ok {
		return c, nil
	}
	c, err := canonicalJSON(raw)
	if err != nil {
		return nil, err
	}
	canonical.Lock()
	if canonical.m == nil {
		canonical.m = map[string]json.RawMessage{}
	}
	if len(canonical.m) < maxCanonical {
		canonical.m[string(raw)] = c
	}
	canonical.Unlock()
	return c, nil
}

func canonicalJSON(raw json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep numbers as written, not rounded through float64
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(v)
}
