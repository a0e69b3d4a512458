// Package chain loads a tenant's multi-step pipeline from chain.toml, checks
// it completely before any model is called, and executes it case by case,
// recording a trace of every step so that scoring and failure attribution can
// see where a case went wrong.
package chain

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"text/template"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/fapo-dev/fapo/engine/provider"
)

// Chain is a validated chain.toml with its prompt files. It is immutable
// after Load and safe for concurrent Runs.
type Chain struct {
	// corpus is where retrieve steps' corpora are read (see CorpusFS).
	corpus fs.FS
	output string
	steps  []*step
	byID   map[string]*step
	// files holds chain.toml and every file it names, as read and validated
	// at Load, so a snapshot stores exactly what was checked.
	files map[string][]byte
	// tokenKey makes .case_token: random per Load, so a token means nothing
	// outside the run that rendered it and cannot key a table of answers.
	tokenKey [16]byte
	// ext is set when the tenant's own program runs the steps (External).
	ext *external
}

// stepConfig is one [[steps]] table. Every kind's keys live here; which of
// them a kind accepts is decided by its registry entry.
type stepConfig struct {
	ID   string `toml:"id" json:"id"`
	Kind string `toml:"kind" json:"kind"`

	// llm
	Model      string       `toml:"model" json:"model,omitempty"`
	System     string       `toml:"system" json:"system,omitempty"`
	Prompt     string       `toml:"prompt" json:"prompt,omitempty"`
	Params     paramsConfig `toml:"params" json:"params"`
	JSONSchema any          `toml:"json_schema" json:"json_schema,omitempty"`

	// retrieve
	Query  string   `toml:"query" json:"query,omitempty"`
	Source string   `toml:"source" json:"source,omitempty"`
	Corpus string   `toml:"corpus" json:"corpus,omitempty"`
	K      int      `toml:"k" json:"k,omitempty"`
	Fields []string `toml:"fields" json:"fields,omitempty"`

	// parse
	Input    string `toml:"input" json:"input,omitempty"`
	Regex    string `toml:"regex" json:"regex,omitempty"`
	JSONPath string `toml:"json_path" json:"json_path,omitempty"`
	OnFail   string `toml:"on_fail" json:"on_fail,omitempty"`

	// reflect (also model, system, params)
	Target    string `toml:"target" json:"target,omitempty"`
	Critique  string `toml:"critique" json:"critique,omitempty"`
	Revise    string `toml:"revise" json:"revise,omitempty"`
	MaxRounds int    `toml:"max_rounds" json:"max_rounds,omitempty"`
	Done      string `toml:"done" json:"done,omitempty"`

	// react (also model, system, prompt, params)
	Tools         []string `toml:"tools" json:"tools,omitempty"`
	MaxIterations int      `toml:"max_iterations" json:"max_iterations,omitempty"`
	MaxToolCalls  int      `toml:"max_tool_calls" json:"max_tool_calls,omitempty"`

	// vote (also model, system, prompt, params with n)
	Method  string `toml:"method" json:"method,omitempty"`
	Judge   string `toml:"judge" json:"judge,omitempty"`
	Extract string `toml:"extract" json:"extract,omitempty"`

	// branch (also input)
	When     []whenConfig `toml:"when" json:"when,omitempty"`
	ElseSkip []string     `toml:"else_skip" json:"else_skip,omitempty"`
}

// paramsConfig is [steps.params]: the provider's sampling parameters (nil
// means provider default, which keeps the cache key stable) plus n.
type paramsConfig struct {
	provider.Params
	N *int `toml:"n" json:"n,omitempty"`
}

type fileConfig struct {
	Output string       `toml:"output"`
	Steps  []stepConfig `toml:"steps"`
}

// step is a stepConfig compiled for execution.
type step struct {
	cfg  stepConfig
	kind *kindSpec
	// templates by role: "system", "prompt", "query", "input".
	tmpl map[string]*template.Template
	// texts are the sources of the templates and schema, for fingerprints.
	texts  map[string]string
	regex  *regexp.Regexp
	schema json.RawMessage
	// validator is schema compiled; a step output that does not match it
	// fails to parse.
	validator *jsonschema.Schema
	reads     []string

	// ext is the compiled state of the newer kinds (reflect, react, vote,
	// branch), owned by the kind's file.
	ext any

	corpusOnce sync.Once
	corpus     *bm25Index
	corpusErr  error
}

// StepInfo describes a step for attribution and the MCP tools.
type StepInfo struct {
	ID   string `json:"id"`
	Kind string `json:"kind"`
	// Model is the [models.NAME] block of an llm step; "" is the tenant's
	// default [model].
	Model  string          `json:"model,omitempty"`
	Params provider.Params `json:"params"`
	// N is the number of samples of an llm step (1 when unset).
	N int `json:"n,omitempty"`
	// K is the number of passages a retrieve step returns.
	K int `json:"k,omitempty"`
	// Files are the prompt and schema files of the step, relative to the
	// chain directory.
	Files []string `json:"files,omitempty"`
	// Reads are the earlier steps whose values the step's templates use.
	Reads []string `json:"reads,omitempty"`
}

// Output is the id of the step whose output is the chain's final output.
func (c *Chain) Output() string { return c.output }

// Steps lists the steps in execution order.
func (c *Chain) Steps() []StepInfo {
	out := make([]StepInfo, 0, len(c.steps))
	for _, s := range c.steps {
		info := StepInfo{ID: s.cfg.ID, Kind: s.cfg.Kind, Model: s.cfg.Model, Params: s.params(), Reads: slices.Clone(s.reads)}
		if s.cfg.Kind == "llm" {
			info.N = s.n()
		}
		if s.cfg.Kind == "vote" {
			info.N = s.voteSamples()
		}
		if s.cfg.Kind == "retrieve" {
			info.K = s.cfg.K
		}
		for _, f := range []string{s.cfg.System, s.cfg.Prompt, s.schemaFile(), s.cfg.Critique, s.cfg.Revise, s.cfg.Judge} {
			if f != "" {
				info.Files = append(info.Files, filepath.ToSlash(f))
			}
		}
		out = append(out, info)
	}
	return out
}

// Files returns chain.toml and every file it names by slash-separated path
// relative to the chain directory, as they were when the chain was loaded.
func (c *Chain) Files() (map[string][]byte, error) {
	out := make(map[string][]byte, len(c.files))
	for k, v := range c.files {
		out[k] = slices.Clone(v)
	}
	return out, nil
}

// StepFingerprint is a sha256 over a step's configuration and the texts of
// its prompt and schema files; it changes exactly when the step's own
// behaviour may change. It returns "" for an unknown id.
func (c *Chain) StepFingerprint(id string) string {
	s := c.byID[id]
	if s == nil {
		return ""
	}
	cfg, _ := json.Marshal(s.cfg) // a decoded TOML value always marshals
	h := sha256.New()
	h.Write(cfg)
	for _, k := range slices.Sorted(maps.Keys(s.texts)) {
		h.Write([]byte{0})
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write([]byte(s.texts[k]))
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (s *step) params() provider.Params {
	return s.cfg.Params.Params
}

func (s *step) n() int {
	if s.cfg.Params.N == nil {
		return 1
	}
	return *s.cfg.Params.N
}

func (s *step) schemaFile() string {
	if f, ok := s.cfg.JSONSchema.(string); ok {
		return f
	}
	return ""
}
