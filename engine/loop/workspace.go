// Package loop is the guarded optimization loop over a workspace of tenants:
// the operations an optimizing agent may perform (evaluate, inspect, propose,
// review, compare, ...) and, inside each, the guardrails that make the loop
// trustworthy: held-out data never leaves the server, variants are verified
// before use, only reviewed variants reach validation, the scope contract and
// escalation policy are enforced at proposal, only compare moves the
// incumbent, and the budget is kept. It knows nothing of MCP: the tools are
// thin adapters over it, and the CLI uses it too.
package loop

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/internal/keys"
	"github.com/fapo-dev/fapo/engine/pipeline"
	"github.com/fapo-dev/fapo/engine/provider"
	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/review"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/statedb"
	"github.com/fapo-dev/fapo/engine/tenant"
	"github.com/fapo-dev/fapo/engine/toolset"
	"github.com/fapo-dev/fapo/engine/variant"
)

// Options configure a Workspace.
type Options struct {
	// Home is the sealed store ($FAPO_HOME); held-out splits, their runs,
	// the response cache and the keys live there, outside the workspace.
	Home string
	// Getenv reads API keys named by tenant model blocks.
	Getenv func(string) string
	// HTTPClient is used for model calls (tests point it anywhere).
	HTTPClient *http.Client
	// Offline answers model calls from the cache only.
	Offline bool
	Now     func() time.Time
	// NewReviewer builds the independent model reviewer over the client of
	// the tenant's review.model.
	NewReviewer func(c provider.Client, model string) review.Reviewer
}

// Workspace is a directory holding tenants/.
type Workspace struct {
	dir   string
	opts  Options
	store *dataset.Store
	// db is the sealed store's database: what the server decides on lives
	// there, never in the workspace, which the agent can edit.
	db *statedb.DB

	mu   sync.Mutex
	envs map[string]*env // per tenant, opened on first evaluation
	// evalLocks serialize evaluations per tenant: a run holds the tenant's
	// response cache, and two runs of one tenant gain nothing from racing.
	evalLocks map[string]*sync.Mutex
	// toolSets are the react tools each tenant declares; MCP tool servers
	// among them start on first use and stop when the workspace closes.
	toolSets map[string]*toolSet
	// pipelines are the tenants' own programs ([pipeline]), started with
	// their first case and kept alive until the pin changes or Close.
	pipelines map[string]*pipelineRun
	// journals are the tenants' journals, kept open so that their caches
	// spare each operation a full read of the database.
	journals map[string]*session.Journal
	// notices are what the operator should be told once (an import of an
	// earlier workspace journal), until Notices drains them.
	notices []string
}

// toolSet is a tenant's react tools as built from one pinned config.
type toolSet struct {
	set *toolset.Set
	key string // pinKey of the tenant they were built for
}

// pinKey identifies what a tenant's evaluation environment was built from:
// the bytes of tenant.toml and the verified copy of its files. A pin that
// changes either makes the server rebuild, never act on the old config.
func pinKey(t *tenant.Tenant) string {
	h := sha256.New()
	h.Write(t.Source)
	h.Write([]byte{0})
	h.Write([]byte(t.FilesDir))
	return hex.EncodeToString(h.Sum(nil))
}

// Open returns the workspace rooted at dir.
func Open(dir string, opts Options) (*Workspace, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return nil, refusal.New(refusal.SetWorkspace, dir, fmt.Sprintf("workspace %s is not a directory", dir))
	}
	if opts.Home == "" {
		return nil, refusal.New(refusal.SetHome, "", "no sealed store home")
	}
	if opts.Getenv == nil {
		opts.Getenv = os.Getenv
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	db, err := statedb.Open(opts.Home)
	if err != nil {
		return nil, err
	}
	if err := session.Migrate(context.Background(), db); err != nil {
		_ = db.Close()
		return nil, err
	}
	return &Workspace{dir: abs, opts: opts, store: dataset.OpenStore(opts.Home), db: db,
		envs: map[string]*env{}, evalLocks: map[string]*sync.Mutex{}, toolSets: map[string]*toolSet{}, pipelines: map[string]*pipelineRun{},
		journals: map[string]*session.Journal{}}, nil
}

// Dir is the workspace directory.
func (w *Workspace) Dir() string { return w.dir }

// Close releases the response caches.
func (w *Workspace) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var errs []error
	for name, e := range w.envs {
		errs = append(errs, e.close())
		delete(w.envs, name)
	}
	for name, ts := range w.toolSets {
		errs = append(errs, ts.set.Close())
		delete(w.toolSets, name)
	}
	for name, pr := range w.pipelines {
		errs = append(errs, pr.p.Close())
		delete(w.pipelines, name)
	}
	errs = append(errs, w.db.Close())
	return errors.Join(errs...)
}

// loadChain loads a chain of tenant t from its files — a verified
// variant's bytes (Variant.FS), or a candidate's under review — with the
// tenant's corpus and its declared react tools: a chain may use no tool the
// tenant does not declare. Nothing is read from the variant's directory:
// what was verified is what runs.
func (w *Workspace) loadChain(t *tenant.Tenant, files fs.FS) (*chain.Chain, error) {
	w.mu.Lock()
	key := pinKey(t)
	ts := w.toolSets[t.Name()]
	if ts == nil || ts.key != key {
		// A pin changed the tools (or where their files are): the old set
		// stops its servers and the new one starts them from the copy.
		if ts != nil {
			_ = ts.set.Close()
		}
		set, err := toolset.FromConfig(t.FilesRoot(), t.Files, t.Config.Tools)
		if err != nil {
			delete(w.toolSets, t.Name())
			w.mu.Unlock()
			return nil, fmt.Errorf("tenant %s [tools]: %w", t.Name(), err)
		}
		ts = &toolSet{set: set, key: key}
		w.toolSets[t.Name()] = ts
	}
	set := ts.set
	var ext []chain.Option
	if t.Config.Pipeline != nil {
		pr := w.pipelines[t.Name()]
		if pr == nil || pr.key != key {
			if pr != nil {
				_ = pr.p.Close()
			}
			// The program runs from the verified copy of the frozen files.
			p, err := pipeline.New(*t.Config.Pipeline, pipeline.Options{Dir: t.FilesRoot()})
			if err != nil {
				delete(w.pipelines, t.Name())
				w.mu.Unlock()
				return nil, fmt.Errorf("tenant %s: its pipeline does not start: %w; the operator checks [pipeline] in tenant.toml (fapo doctor runs it on one case)", t.Name(), err)
			}
			pr = &pipelineRun{p: p, key: key}
			w.pipelines[t.Name()] = pr
		}
		ext = append(ext, chain.External(pr.p.ChainSpec()))
	}
	w.mu.Unlock()
	return chain.LoadFS(files, append([]chain.Option{corpora(t), chain.WithTools(set.Tools())}, ext...)...)
}

// pipelineRun is a tenant's external pipeline and the pin it was built for.
type pipelineRun struct {
	p   *pipeline.Pipeline
	key string
}

// corpora is where a tenant's chains read retrieval corpora: for a sealed
// tenant the verified bytes of its pinned files, so a corpus swapped after
// the pin check is never searched and a chain may search no file the
// operator did not pin; for a tenant not yet sealed (nothing held out to
// protect) its directory.
func corpora(t *tenant.Tenant) chain.Option {
	if t.Files != nil {
		return chain.CorpusFS(t.Files, fmt.Sprintf("the pinned files of tenant %s (a retrieve step searches a file under %s/ or a [tools] corpus, pinned by the operator)", t.Name(), tenant.CorpusDir))
	}
	return chain.CorpusDir(t.Dir)
}

func (w *Workspace) evalLock(name string) *sync.Mutex {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.evalLocks[name]
	if l == nil {
		l = &sync.Mutex{}
		w.evalLocks[name] = l
	}
	return l
}

// variants opens the tenant's variant store, keyed with a secret from the
// sealed store so that a manifest cannot be forged by whoever can write the
// workspace, and materializes v0000 from the baseline.
func (w *Workspace) variants(t *tenant.Tenant) (*variant.Store, error) {
	key, err := w.secret(t.Name(), "variants")
	if err != nil {
		return nil, err
	}
	vs := variant.Open(t.Dir, variant.WithKey(key))
	files, err := variant.ReadBaseline(t.Dir)
	if err != nil {
		return nil, err
	}
	if _, err := vs.EnsureBaseline(files); err != nil {
		return nil, err
	}
	return vs, nil
}

// secret returns a per-tenant 32-byte key kept in the sealed store, in
// $FAPO_HOME/keys (0700), file 0600. Key files are opened through an
// os.Root of that directory and never through a link: a link planted there
// (to a file whose bytes someone knows) would hand out the key that signs
// variant manifests and seals held-out runs.
func (w *Workspace) secret(tenantName, purpose string) ([]byte, error) {
	return keys.Get(filepath.Join(w.opts.Home, "keys"), tenantName+"."+purpose+".key", true)
}

// journal returns the tenant's journal in the sealed store's database. The
// first time a process opens a tenant, a journal that an earlier fapo kept
// in the workspace is imported (once: only while the database has none for
// the tenant, and only for a tenant sealed before the database existed;
// see session.ImportWorkspace), and the operator is told, also when a
// journal found there is refused.
func (w *Workspace) journal(t *tenant.Tenant) (*session.Journal, error) {
	w.mu.Lock()
	j := w.journals[t.Name()]
	w.mu.Unlock()
	if j != nil {
		return j, nil
	}
	var sealedAt time.Time
	if m, err := w.store.Manifest(t.Name()); err == nil {
		sealedAt = m.CreatedAt
	} else if !errors.Is(err, dataset.ErrNotSealed) {
		return nil, err
	}
	j = session.OpenJournal(w.db, t.Name(), session.WithMirror(t.Dir), session.WithClock(w.opts.Now))
	rep, err := j.ImportWorkspace(t.Dir, sealedAt)
	if err != nil {
		return nil, fmt.Errorf("tenant %s: %w", t.Name(), err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if rep.Notice != "" {
		w.notices = append(w.notices, rep.Notice)
	}
	if other := w.journals[t.Name()]; other != nil {
		return other, nil
	}
	w.journals[t.Name()] = j
	return j, nil
}

// ImportJournal opens the tenant's journal, importing an earlier workspace
// journal if there is one, and returns what the operator should be told.
// Commands call it first so that the notice is printed before anything else.
func (w *Workspace) ImportJournal(tenantName string) ([]string, error) {
	t, err := w.tenant(tenantName)
	if err != nil {
		return nil, err
	}
	if _, err := w.journal(t); err != nil {
		return nil, err
	}
	return w.Notices(), nil
}

// MarkSealed records in the sealed store's database that the operator
// sealed or pinned the tenant with this store (command: "seal", "import",
// "init --example", "pin"), after importing an earlier workspace journal
// the tenant may still have: from then on a journal found in its directory
// is never imported. Commands call it before they seal.
func (w *Workspace) MarkSealed(tenantName, command string) error {
	t, err := w.booksOf(tenantName)
	if err != nil {
		return err
	}
	if _, err := w.journal(t); err != nil {
		return err
	}
	return session.MarkSealed(context.Background(), w.db, tenantName, command)
}

// ImportJournals does what ImportJournal does for every tenant of the
// workspace; a tenant whose journal cannot be imported is reported among
// the notices (its operations will refuse with the same error).
func (w *Workspace) ImportJournals() []string {
	ts, _ := tenant.List(w.dir)
	for _, t := range ts {
		if _, err := w.journal(t); err != nil {
			w.mu.Lock()
			w.notices = append(w.notices, err.Error())
			w.mu.Unlock()
		}
	}
	return w.Notices()
}

// Notices returns, once, what the operator should be told: the sentence of
// every import of a workspace journal since the last call.
func (w *Workspace) Notices() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.notices
	w.notices = nil
	return out
}

// activeSession returns the tenant's session, or an error telling the agent
// to start one.
func (w *Workspace) activeSession(t *tenant.Tenant) (*session.Session, error) {
	j, err := w.journal(t)
	if err != nil {
		return nil, err
	}
	s, err := session.ActiveSession(j)
	if err != nil {
		if errors.Is(err, session.ErrNoSession) {
			return nil, refusal.New(refusal.StartSession, t.Name(), fmt.Sprintf("tenant %s has no session", t.Name()))
		}
		return nil, err
	}
	return s, nil
}

// op is the common start of an operation inside a tenant's session: the
// tenant, its session, and the session's state as of now.
type op struct {
	w    *Workspace
	t    *tenant.Tenant
	sess *session.Session
	st   *session.State
}

// begin resolves the tenant and its active session; close the op when done.
func (w *Workspace) begin(tenantName string) (*op, error) {
	t, err := w.tenant(tenantName)
	if err != nil {
		return nil, err
	}
	sess, err := w.activeSession(t)
	if err != nil {
		return nil, err
	}
	st, err := sess.State()
	if err != nil {
		return nil, err
	}
	return &op{w: w, t: t, sess: sess, st: st}, nil
}

// close ends the op; the journal stays open with the workspace.
func (o *op) close() {}

// variant returns a verified variant of the tenant ("" means the incumbent).
func (o *op) variant(id string) (*variant.Variant, error) {
	if id == "" {
		id = string(o.st.Incumbent)
	}
	vs, err := o.w.variants(o.t)
	if err != nil {
		return nil, err
	}
	return o.w.getVariant(o.t, vs, o.sess, id)
}

// getVariant loads a verified variant; a tampered one is journaled in the
// session (when there is one) and refused.
func (w *Workspace) getVariant(t *tenant.Tenant, vs *variant.Store, sess *session.Session, id string) (*variant.Variant, error) {
	vid, err := variant.ParseID(id)
	if err != nil {
		return nil, err
	}
	v, err := vs.Get(vid)
	var te *variant.TamperedError
	if errors.As(err, &te) && sess != nil {
		_ = sess.RecordTampered(te)
	}
	return v, err
}
