package loop

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/scoring"
	"github.com/fapo-dev/fapo/engine/statedb"
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
	cacheKey, err := w.secret(t.Name(), "cache")
	if err != nil {
		return nil, err
	}
	e, err := newEnv(t, w.opts, w.db, cacheKey)
	if err != nil {
		return nil, err
	}
	e.key = key
	w.envs[t.Name()] = e
	return e, nil
}

// newEnv builds the models and scorer of a tenant. The cache lives in the
// sealed store's database, sealed under the tenant's cache key: it holds
// model answers to held-out prompts.
func newEnv(t *tenant.Tenant, opts Options, db *statedb.DB, key []byte) (*env, error) {
	removeLegacyCaches(opts.Home)
	cache, err := provider.OpenCache(db, t.Name(), key)
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
		_ = cache.Close()
		return nil, err
	}
	for name, spec := range t.Config.Models {
		if err := add(name, spec); err != nil {
			_ = cache.Close()
			return nil, err
		}
	}
	// The scorer's files (a command scorer's program, rubric files) are used
	// from the verified copy, never from the workspace.
	e.scorer, err = scoring.New(t.Config.Scorer, scoring.Env{Dir: t.FilesRoot(), Model: e.Client})
	if err != nil {
		_ = cache.Close()
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

// cacheScope is the response cache scope of a run on split: a train run
// never hits an entry a held-out run created.
func cacheScope(split dataset.Split) provider.Scope {
	if split.HeldOut() {
		return provider.ScopeHeldOut
	}
	return provider.ScopeTrain
}

// removeLegacyCaches deletes the response caches of earlier versions,
// $FAPO_HOME/cache/<tenant>/responses.db: bbolt files that kept model
// answers, held-out ones included, in plaintext. Their entries are not
// carried over (they cost only calls to ask again).
func removeLegacyCaches(home string) {
	files, _ := filepath.Glob(filepath.Join(home, "cache", "*", "responses.db"))
	if len(files) == 0 {
		return
	}
	var removed []string
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			slog.Warn("cannot delete a legacy plaintext response cache: delete it by hand", "file", f, "err", err)
			continue
		}
		removed = append(removed, f)
		_ = os.Remove(filepath.Dir(f)) // only if empty
	}
	_ = os.Remove(filepath.Join(home, "cache"))
	if len(removed) > 0 {
		slog.Info("deleted the legacy response cache: it held model answers in plaintext; responses are now cached encrypted in the state database",
			"files", removed)
	}
}
