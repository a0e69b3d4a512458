package tenant

import (
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fapo-dev/fapo/engine/internal/suggest"
)

// ToolConfig is a [tools.NAME] block: a tool react steps may call. The
// tenant declares tools so that a variant proposed by an agent can choose
// among them but never add one.
type ToolConfig struct {
	// Kind is "retrieval", "calculator" or "mcp".
	Kind string `toml:"kind"`
	// Description is what the model is told the tool does; each kind has a
	// default (an mcp tool's is the server's own description).
	Description string `toml:"description"`
	// Corpus is the JSONL file a retrieval tool searches, relative to the
	// tenant directory (the format of a retrieve step's corpus); K is the
	// number of passages returned (default 4).
	Corpus string `toml:"corpus"`
	K      int    `toml:"k"`
	// Command starts the MCP server (executable and arguments, run in the
	// tenant directory, spoken to over stdio); Tool is the server's tool to
	// call, default NAME; Env adds KEY=VALUE variables to the server's
	// environment.
	Command []string `toml:"command"`
	Tool    string   `toml:"tool"`
	Env     []string `toml:"env"`
	// TimeoutSeconds bounds one call of the tool (default 30), and the
	// start of an mcp server.
	TimeoutSeconds float64 `toml:"timeout_seconds"`
}

// ToolKinds lists the kinds of [tools.NAME] blocks.
var ToolKinds = []string{"retrieval", "calculator", "mcp"}

// DefaultToolTimeoutSeconds bounds one tool call when timeout_seconds is unset.
const DefaultToolTimeoutSeconds = 30

// validateTools checks every [tools.NAME] block; which keys apply depends
// on the kind, and a key the kind ignores is reported rather than dropped.
func validateTools(ps *problems, tools map[string]ToolConfig) {
	for _, name := range slices.Sorted(maps.Keys(tools)) {
		t := tools[name]
		key := "tools." + name
		if !stepIDRE.MatchString(name) {
			ps.add(key, "tool name %q must be an identifier (letters, digits, '_'): models call tools by name", name)
		}
		switch {
		case t.Kind == "":
			ps.add(key+".kind", "missing; set one of %s", strings.Join(ToolKinds, ", "))
		case !slices.Contains(ToolKinds, t.Kind):
			ps.add(key+".kind", "unknown %q%s; use one of %s", t.Kind, suggest.Hint(t.Kind, ToolKinds), strings.Join(ToolKinds, ", "))
		}
		only := func(k string, set bool, kind string) {
			if set && t.Kind != kind && slices.Contains(ToolKinds, t.Kind) {
				ps.add(key+"."+k, "does not apply to kind %q (it is read by %s); remove it", t.Kind, kind)
			}
		}
		only("corpus", t.Corpus != "", "retrieval")
		only("k", t.K != 0, "retrieval")
		only("command", len(t.Command) > 0, "mcp")
		only("tool", t.Tool != "", "mcp")
		only("env", len(t.Env) > 0, "mcp")
		if bad(t.TimeoutSeconds) || t.TimeoutSeconds < 0 {
			ps.add(key+".timeout_seconds", "%v: must be a positive number of seconds (0 means %d)", t.TimeoutSeconds, DefaultToolTimeoutSeconds)
		}
		switch t.Kind {
		case "retrieval":
			switch {
			case t.Corpus == "":
				ps.add(key+".corpus", "missing; name the JSONL corpus in the tenant to search, e.g. corpus = \"corpus/docs.jsonl\"")
			case filepath.IsAbs(t.Corpus) || slices.Contains(strings.Split(filepath.ToSlash(t.Corpus), "/"), ".."):
				ps.add(key+".corpus", "%q must be a path inside the tenant directory", t.Corpus)
			}
			if t.K < 0 {
				ps.add(key+".k", "%d: must be at least 1 (0 means 4)", t.K)
			}
		case "mcp":
			if len(t.Command) == 0 || strings.TrimSpace(t.Command[0]) == "" {
				ps.add(key+".command", "missing; give the MCP server's executable and arguments, e.g. [\"my-mcp-server\", \"--stdio\"]")
			}
			for i, e := range t.Env {
				if k, _, ok := strings.Cut(e, "="); !ok || !envRE.MatchString(k) {
					ps.add(key+".env", "env[%d] = %q: write KEY=VALUE", i, e)
				}
			}
		}
	}
}
