// Package toolset builds the tools a tenant declares for react steps
// ([tools.NAME] in tenant.toml) into chain.Tools: retrieval over a tenant
// corpus, a calculator, and tools served by an external MCP server that the
// engine starts over stdio. The set is declared by the tenant, never by a
// chain, so a variant can choose among these tools but never add one.
//
// Use:
//
//	set, err := toolset.FromConfig(t.Dir, nil, t.Config.Tools)
//	defer set.Close()
//	ch, err := chain.Load(dir, chain.WithTools(set.Tools()))
//
// Building a set starts nothing: an MCP server is started on the first use
// of one of its tools, so loading a variant for review costs no process.
package toolset

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/tenant"
)

// Set is a tenant's tools by declared name. Close stops any MCP server a
// tool started.
type Set struct {
	tools   map[string]chain.Tool
	mu      sync.Mutex
	closers []func() error
}

// Tools returns the tools by declared name, for chain.WithTools.
func (s *Set) Tools() map[string]chain.Tool {
	if s == nil {
		return nil
	}
	return maps.Clone(s.tools)
}

// Names lists the declared tool names, sorted.
func (s *Set) Names() []string {
	if s == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(s.tools))
}

// Close stops every MCP server the set started; it is safe to call more
// than once and on a nil Set.
func (s *Set) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	cs := s.closers
	s.closers = nil
	s.mu.Unlock()
	var errs []error
	for _, c := range cs {
		errs = append(errs, c())
	}
	return errors.Join(errs...)
}

func (s *Set) onClose(f func() error) {
	s.mu.Lock()
	s.closers = append(s.closers, f)
	s.mu.Unlock()
}

// FromConfig builds the tools of a tenant whose directory is dir: MCP tool
// servers run there, and retrieval tools read their corpora from corpora
// (nil: from dir, confined to it). A server passes the verified bytes of
// the tenant's pinned files as corpora, so a corpus swapped after the pin
// check is never searched. The declarations are assumed validated by
// tenant.Load; FromConfig checks only what needs the file system.
func FromConfig(dir string, corpora fs.FS, decls map[string]tenant.ToolConfig) (*Set, error) {
	if corpora == nil {
		corpora = chain.DirFS(dir)
	}
	s := &Set{tools: make(map[string]chain.Tool, len(decls))}
	for _, name := range slices.Sorted(maps.Keys(decls)) {
		d := decls[name]
		timeout := time.Duration(d.TimeoutSeconds * float64(time.Second))
		if timeout <= 0 {
			timeout = tenant.DefaultToolTimeoutSeconds * time.Second
		}
		switch d.Kind {
		case "retrieval":
			file := path.Clean(filepath.ToSlash(d.Corpus))
			if filepath.IsAbs(d.Corpus) || !fs.ValidPath(file) || file == "." {
				return nil, fmt.Errorf("tools.%s.corpus: path %q is not inside the tenant directory", name, d.Corpus)
			}
			if _, err := fs.Stat(corpora, file); err != nil {
				return nil, fmt.Errorf("tools.%s.corpus: %w", name, err)
			}
			s.tools[name] = chain.CorpusToolFS(name, corpora, file, d.Corpus, d.K, d.Description)
		case "calculator":
			s.tools[name] = Calculator(name, d.Description)
		case "mcp":
			remote := d.Tool
			if remote == "" {
				remote = name
			}
			s.tools[name] = newMCPTool(s, mcpConfig{name: name, remote: remote, command: d.Command, env: d.Env, dir: dir, timeout: timeout, desc: d.Description})
		default:
			return nil, fmt.Errorf("tools.%s.kind: unknown %q; use one of retrieval, calculator, mcp", name, d.Kind)
		}
	}
	return s, nil
}
