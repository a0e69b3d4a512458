package loop

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/scoring"
	"github.com/fapo-dev/fapo/engine/tenant"
)

// env is what evaluating a tenant needs besides the chain: a client per
// model block behind one response cache, and the scorer.
type env struct {
	cache   *provider.Cache
	clients map[string]provider.Client // "" is [model]
	names   map[string]string          // provider model name per block
	scorer  scoring.Scorer
	key     string // pinKey of the tenant it was built for
}

// envFor returns the tenant's evaluation environment, opened once per
// workspace so that concurrent evaluations share one cache handle.
func (w *Workspace) envFor(t *tenant.Tenant) (*env, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	key := pinKey(t)
	if e := w.envs[t.Name()]; e != nil {
		if e.key == key {
			return e, nil
		}
		// The operator pinned a changed config: its models and scorer
		// replace the old ones (which also release the response cache).
		_ = e.close()
		delete(w.envs, t.Name())
	}
	e, err := newEnv(t, w.opts)
	if err != nil {
		return nil, err
	}
	e.key = key
	w.envs[t.Name()] = e
	return e, nil
}

// newEnv builds the models and scorer of a tenant. The cache lives in the
// sealed store: it holds model answers to held-out prompts.
func newEnv(t *tenant.Tenant, opts Options) (*env, error) {
	dir := t.CacheDir(opts.Home)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create response cache directory: %w", err)
	}
	cache, err := provider.OpenCache(filepath.Join(dir, "responses.db"))
	if err != nil {
		return nil, err
	}
	e := &env{cache: cache, clients: map[string]provider.Client{}, names: map[string]string{}}
	add := func(name string, spec provider.Spec) error {
		// The model actually called: a tenant's env overrides (base_url_env,
		// name_env) are the operator's choice of server.
		spec = spec.FromEnv(opts.Getenv)
		c, err := provider.Stack(spec, provider.StackOptions{
			Options: provider.Options{Getenv: opts.Getenv, HTTPClient: opts.HTTPClient},
			Cache:   cache, Offline: opts.Offline,
		})
		if err != nil {
			label := "[model]"
			if name != "" {
				label = "[models." + name + "]"
			}
			return fmt.Errorf("tenant %s %s: %w", t.Name(), label, err)
		}
		e.clients[name], e.names[name] = c, spec.Name
		return nil
	}
	if err := add("", t.Config.Model); err != nil {
		cache.Close()
		return nil, err
	}
	for name, spec := range t.Config.Models {
		if err := add(name, spec); err != nil {
			cache.Close()
			return nil, err
		}
	}
	// The scorer's files (a command scorer's program, rubric files) are used
	// from the verified copy, never from the workspace.
	e.scorer, err = scoring.New(t.Config.Scorer, scoring.Env{Dir: t.FilesRoot(), Model: e.Client})
	if err != nil {
		cache.Close()
		return nil, fmt.Errorf("tenant %s scorer: %w", t.Name(), err)
	}
	return e, nil
}

// Client implements chain.Models and scoring's model lookup.
func (e *env) Client(name string) (provider.Client, string, error) {
	c, ok := e.clients[name]
	if !ok {
		known := make([]string, 0, len(e.clients))
		for n := range e.clients {
			if n != "" {
				known = append(known, n)
			}
		}
		sort.Strings(known)
		return nil, "", fmt.Errorf("model %q is not declared: add a [models.%s] block to tenant.toml (declared: %v)", name, name, known)
	}
	return c, e.names[name], nil
}

func (e *env) close() error { return e.cache.Close() }
