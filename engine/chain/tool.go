package chain

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"strings"
	"sync"

	"github.com/fapo-dev/fapo/engine/provider"
)

// Tool is a function a react step's model may call. Tools are declared by
// the tenant ([tools.NAME] in tenant.toml), never by a chain: a variant can
// only choose among them, so an agent proposing a structural change cannot
// give the pipeline new powers.
//
// Implementations must be safe for concurrent use; a Tool with a costly
// backend (an MCP server process) should start it on first use, so that
// loading a chain for validation stays cheap.
type Tool interface {
	// Def is the declaration sent to the model; its Name is the name the
	// tenant declared.
	Def(ctx context.Context) (provider.ToolDef, error)
	// Call runs the tool on the model's JSON arguments. An error is shown
	// to the model as the tool's result and recorded in the trace; it does
	// not fail the step.
	Call(ctx context.Context, arguments string) (string, error)
}

// WithTools makes the tenant's declared tools available to react steps, by
// declared name. A react step naming a tool not in tools fails Load, so the
// caller that loads a variant for review must pass the same set it runs
// with. Without this option a chain may not contain react steps that name
// tools.
//
// The lead builds the set from tenant.toml with tools.FromConfig (package
// engine/toolset), passes it here, and closes it after the run.
func WithTools(tools map[string]Tool) Option {
	return func(l *loader) {
		l.tools = make(map[string]Tool, len(tools))
		for k, v := range tools {
			l.tools[k] = v
		}
	}
}

// CorpusToolFS is a retrieval tool over the JSONL corpus file of fsys (a
// server passes the verified bytes of the tenant's pinned files), searched
// with the same BM25 as retrieve steps; rel names it in messages. The index
// is built on first call and shared.
func CorpusToolFS(name string, fsys fs.FS, file, rel string, k int, description string) Tool {
	if description == "" {
		description = "Search the document collection. Returns the best matching passages, each as [title] text."
	}
	if k < 1 {
		k = 4
	}
	return &corpusTool{name: name, fsys: fsys, file: file, rel: rel, k: k, desc: description}
}

type corpusTool struct {
	name, desc string
	fsys       fs.FS
	file, rel  string
	k          int

	once sync.Once
	ix   *bm25Index
	err  error
}

var queryParams = json.RawMessage(`{"type":"object","properties":{"query":{"type":"string","description":"what to search for"}},"required":["query"]}`)

func (t *corpusTool) Def(context.Context) (provider.ToolDef, error) {
	return provider.ToolDef{Name: t.name, Description: t.desc, Parameters: queryParams}, nil
}

func (t *corpusTool) Call(ctx context.Context, arguments string) (string, error) {
	var args struct {
		Query string `json:"query"`
	}
	if err := json.Unmarshal([]byte(arguments), &args); err != nil {
		return "", fmt.Errorf("arguments must be a JSON object {\"query\": \"...\"}: %v", err)
	}
	if strings.TrimSpace(args.Query) == "" {
		return "", fmt.Errorf("query is empty; pass {\"query\": \"words to search for\"}")
	}
	t.once.Do(func() {
		docs, err := loadCorpus(t.fsys, t.file, t.rel)
		if err != nil {
			t.err = err
			return
		}
		t.ix = newBM25(docs, retrieveFields)
	})
	if t.err != nil {
		return "", t.err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	docs := t.ix.search(args.Query, t.k)
	if len(docs) == 0 {
		return "no passage matches the query", nil
	}
	return formatPassages(docs), nil
}
