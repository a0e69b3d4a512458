package provider

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/statedb"
)

// The response cache is a table in the sealed store's shared database
// (statedb), so that several fapo processes on one tenant (Claude Code and
// Codex on one workspace, `fapo eval` beside `fapo serve`) read and write
// it at once: a writer holds the database lock for one transaction, never
// for a process's life.
//
// Model answers quote the prompts they answer, and held-out prompts are
// held-out content, so every value is sealed with AES-GCM under a key of
// the tenant's kept in the sealed store's key directory. The key of each
// scope is derived from the tenant's key with the tenant and the scope in
// the derivation, and the row's cache key is the additional data: a sealed
// value moved to another tenant's, scope's or request's row does not open,
// and reads as a miss, never as another request's answer.
//
// Held-out entries live in their own scope. A train request never reports a
// hit on an entry a held-out request created: a train-time hit would tell
// the agent that a prompt it chose was asked during a validation run, a
// membership oracle for held-out cases. Held-out requests may read train
// entries (the agent learns nothing from a held-out run's cache hits).
//
// Writes are behind and grouped: a call returns as soon as its answer is
// known, and one writer goroutine commits queued entries in one transaction
// per at least groupEntries entries or groupWait, whichever comes first, so
// that a run pays one fsync per group, not per call. Queued entries are
// visible to this process's lookups at once. A crash loses at most the
// group not yet committed, which the next run asks again; SQLite's commit
// is atomic and every value is authenticated, so no crash yields a wrong
// entry. Close flushes everything.
//
// Lookups read a snapshot of the table at most snapshotAge (50 ms) old,
// kept open across calls (snapshotReader): another process's entries are
// hits here within that time of its commit, and this process's own are
// found among the queued ones until the snapshot includes them.

// cacheSchema is the cache's table. scope is "train" or "heldout"; key is
// sha256 of the canonical request; val is nonce ‖ AES-GCM(response JSON).
var cacheSchema = []string{`CREATE TABLE IF NOT EXISTS response_cache (
	tenant TEXT NOT NULL,
	scope  TEXT NOT NULL,
	key    BLOB NOT NULL,
	val    BLOB NOT NULL,
	PRIMARY KEY (tenant, scope, key)
) WITHOUT ROWID`}

const (
	// groupEntries and groupWait bound a group of writes: one durable
	// commit per at least this many entries or this long, whichever first.
	groupEntries = 50
	groupWait    = 100 * time.Millisecond
	// maxGroup bounds one write transaction when entries pile up behind a
	// slow commit.
	maxGroup = 1024
)

// Scope says which kind of run a request belongs to, for the response
// cache: entries a held-out request created are invisible to train
// requests.
type Scope uint8

const (
	// ScopeUnknown is a request whose context says nothing. It is treated
	// as the safe side of both: it reads only train entries (it might be a
	// train request) and writes held-out ones (it might carry held-out
	// content). Mark contexts to get hits on the entries they write.
	ScopeUnknown Scope = iota
	// ScopeTrain is a request of a train run or of an operation the agent
	// sees the results of.
	ScopeTrain
	// ScopeHeldOut is a request of a validation or test run.
	ScopeHeldOut
)

// Cache scopes as stored.
const (
	scopeTrain   = "train"
	scopeHeldOut = "heldout"
)

type scopeKey struct{}

// WithScope marks ctx's requests as belonging to a train or a held-out run.
func WithScope(ctx context.Context, s Scope) context.Context {
	return context.WithValue(ctx, scopeKey{}, s)
}

type repeatKey struct{}

// WithRepeat marks ctx's requests as the repeat-th evaluation of the same
// case (0 is the first): a stochastic pipeline evaluated N times per case
// must ask the model N times, so each repeat has its own cache entries,
// and a rerun of the same repeats is answered from them.
func WithRepeat(ctx context.Context, repeat int) context.Context {
	return context.WithValue(ctx, repeatKey{}, repeat)
}

// RepeatOf is the repeat index WithRepeat put in ctx, or 0.
func RepeatOf(ctx context.Context) int {
	r, _ := ctx.Value(repeatKey{}).(int)
	return r
}

// ScopeOf is the scope WithScope put in ctx, or ScopeUnknown.
func ScopeOf(ctx context.Context) Scope {
	s, _ := ctx.Value(scopeKey{}).(Scope)
	return s
}

// reads are the stored scopes a request of scope s may hit, in order.
func (s Scope) reads() []string {
	if s == ScopeHeldOut {
		return []string{scopeHeldOut, scopeTrain}
	}
	return []string{scopeTrain}
}

// writes is the stored scope a request of scope s creates its entry in.
func (s Scope) writes() string {
	if s == ScopeTrain {
		return scopeTrain
	}
	return scopeHeldOut
}

// Cache is the persistent response cache of one tenant. It is safe for
// concurrent use, and any number of processes may have one open on the
// same database.
type Cache struct {
	db     *statedb.DB
	tenant string
	aeads  map[string]cipher.AEAD // per stored scope
	reader *snapshotReader
	wait   time.Duration // longest a queued entry waits for its commit

	queue     chan cacheEntry
	flushed   chan struct{}
	closeOnce sync.Once
	closeErr  error        // of the last commit, written before flushed closes
	sendMu    sync.RWMutex // senders share it; Close takes it to close queue
	closed    bool         // guarded by sendMu
	mu        sync.RWMutex // guards pending and seq
	pending   map[pendingKey]pendingEntry
	seq       uint64
	commitGen atomic.Uint64 // durable commits so far, numbering them

	hits       atomic.Int64
	misses     atomic.Int64
	writeErrs  atomic.Int64
	commits    atomic.Int64
	unreadable atomic.Int64
}

// CacheStats counts lookups and commits since the cache was opened.
type CacheStats struct {
	Hits   int64 `json:"hits"`
	Misses int64 `json:"misses"`
	// WriteErrors counts responses that could not be stored (disk full,
	// cache closed); those calls will be paid for again.
	WriteErrors int64 `json:"write_errors,omitempty"`
	// Commits counts durable write transactions.
	Commits int64 `json:"commits,omitempty"`
	// Unreadable counts stored entries that did not open under their own
	// row's key (damaged or moved): each was treated as a miss.
	Unreadable int64 `json:"unreadable,omitempty"`
}

type pendingKey struct {
	scope string
	key   string
}

type pendingEntry struct {
	resp Response
	seq  uint64
	// committed is the commit generation that made the entry durable, 0
	// while it is queued. A committed entry stays here until the lookups'
	// snapshot is at least that new (snapshotReader), so that it is always
	// found in one place or the other.
	committed uint64
}

type cacheEntry struct {
	pendingKey
	val []byte
	seq uint64
}

// OpenCache opens tenant's response cache in db, declaring its table if
// needed. key is the tenant's 32-byte cache key from the sealed store; the
// values of each scope are sealed under a key derived from it. Close the
// cache before db.
func OpenCache(db *statedb.DB, tenant string, key []byte) (*Cache, error) {
	return openCache(db, tenant, key, groupWait)
}

// openCache is OpenCache with the longest wait of a group before its
// commit (tests stretch it to see the size bound alone).
func openCache(db *statedb.DB, tenant string, key []byte, wait time.Duration) (*Cache, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("response cache of %s: the key is %d bytes, want 32", tenant, len(key))
	}
	if err := db.Migrate(context.Background(), cacheSchema...); err != nil {
		return nil, fmt.Errorf("response cache of %s: %w", tenant, err)
	}
	c := &Cache{db: db, tenant: tenant, wait: wait, aeads: map[string]cipher.AEAD{},
		queue: make(chan cacheEntry, maxGroup), flushed: make(chan struct{}),
		pending: map[pendingKey]pendingEntry{}}
	for _, scope := range []string{scopeTrain, scopeHeldOut} {
		k, err := hkdf.Key(sha256.New, key, nil, "fapo response cache v1\x00"+tenant+"\x00"+scope, 32)
		if err != nil {
			return nil, err
		}
		block, err := aes.NewCipher(k)
		if err != nil {
			return nil, err
		}
		if c.aeads[scope], err = cipher.NewGCM(block); err != nil {
			return nil, err
		}
	}
	var err error
	if c.reader, err = newSnapshotReader(db); err != nil {
		return nil, fmt.Errorf("response cache of %s: %w", tenant, err)
	}
	go c.writer()
	return c, nil
}

// additionalData binds a sealed value to its row.
func (c *Cache) additionalData(scope string, key []byte) []byte {
	ad := make([]byte, 0, len(c.tenant)+len(scope)+len(key)+2)
	ad = append(ad, c.tenant...)
	ad = append(ad, 0)
	ad = append(ad, scope...)
	ad = append(ad, 0)
	return append(ad, key...)
}

func (c *Cache) seal(scope string, key, plain []byte) ([]byte, error) {
	a := c.aeads[scope]
	out := make([]byte, a.NonceSize(), a.NonceSize()+len(plain)+a.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, err
	}
	return a.Seal(out, out, plain, c.additionalData(scope, key)), nil
}

func (c *Cache) open(scope string, key, sealed []byte) ([]byte, error) {
	a := c.aeads[scope]
	if len(sealed) < a.NonceSize() {
		return nil, errors.New("sealed value too short")
	}
	n := a.NonceSize()
	return a.Open(nil, sealed[:n], sealed[n:], c.additionalData(scope, key))
}

func (c *Cache) writer() {
	defer close(c.flushed)
	group := make([]cacheEntry, 0, maxGroup)
	timer := time.NewTimer(c.wait)
	timer.Stop()
	for {
		var due <-chan time.Time
		if len(group) > 0 {
			due = timer.C
		}
		select {
		case e, ok := <-c.queue:
			if !ok {
				timer.Stop()
				c.closeErr = c.commit(group)
				return
			}
			if len(group) == 0 {
				timer.Reset(c.wait)
			}
			group = append(group, e)
			if len(group) < groupEntries {
				continue
			}
			// Whatever else has queued behind a full group goes with it.
		drain:
			for len(group) < maxGroup {
				select {
				case e, ok := <-c.queue:
					if !ok {
						break drain
					}
					group = append(group, e)
				default:
					break drain
				}
			}
		case <-due:
		}
		timer.Stop()
		_ = c.commit(group) // counted in writeErrs; the calls are paid for again
		group = group[:0]
	}
}

// commit writes group in one durable transaction and then marks it
// committed in pending (see pendingEntry.committed).
func (c *Cache) commit(group []cacheEntry) error {
	if len(group) == 0 {
		return nil
	}
	err := c.db.Write(context.Background(), func(tx *sql.Tx) error {
		stmt, err := tx.Prepare(`INSERT OR REPLACE INTO response_cache (tenant, scope, key, val) VALUES (?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, e := range group {
			if _, err := stmt.Exec(c.tenant, e.scope, []byte(e.key), e.val); err != nil {
				return err
			}
		}
		return nil
	})
	var gen uint64
	if err != nil {
		c.writeErrs.Add(int64(len(group)))
	} else {
		c.commits.Add(1)
		gen = c.commitGen.Add(1)
	}
	c.mu.Lock()
	for _, e := range group {
		// A newer answer to the same request may have queued meanwhile.
		if p, ok := c.pending[e.pendingKey]; ok && p.seq == e.seq {
			if err != nil {
				delete(c.pending, e.pendingKey)
				continue
			}
			p.committed = gen
			c.pending[e.pendingKey] = p
		}
	}
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("response cache of %s: %d responses not stored (they will be asked again): %w", c.tenant, len(group), err)
	}
	return nil
}

// queued counts the entries not committed yet.
func (c *Cache) queued() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	n := 0
	for _, p := range c.pending {
		if p.committed == 0 {
			n++
		}
	}
	return n
}

// purgeCommitted drops from pending the entries of commits up to gen,
// which the lookups' snapshot now sees.
func (c *Cache) purgeCommitted(gen uint64) {
	c.mu.Lock()
	for k, p := range c.pending {
		if p.committed != 0 && p.committed <= gen {
			delete(c.pending, k)
		}
	}
	c.mu.Unlock()
}

// snapshotAge is the longest a lookup snapshot is used: entries other
// processes commit are hits here at most this much later.
const snapshotAge = 50 * time.Millisecond

// snapshotReader serves the cache's lookups from one connection, in a read
// transaction kept open for up to snapshotAge: a lookup in a fresh
// transaction pays for the transaction (locks, the WAL index, a page cache
// the last commit invalidated) far more than for the search, and a cold
// run's every call is one. The transaction is ended when it is older than
// snapshotAge or idle that long, so it never holds back a checkpoint.
type snapshotReader struct {
	mu    sync.Mutex
	conn  *sql.Conn
	stmt  *sql.Stmt
	open  bool
	since time.Time
	idle  *time.Timer
}

func newSnapshotReader(db *statedb.DB) (*snapshotReader, error) {
	conn, err := db.SQL().Conn(context.Background())
	if err != nil {
		return nil, err
	}
	// Prepared once: parsing the statement would be most of a lookup.
	stmt, err := conn.PrepareContext(context.Background(), `SELECT val FROM response_cache WHERE tenant = ? AND scope = ? AND key = ?`)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	r := &snapshotReader{conn: conn, stmt: stmt}
	r.idle = time.AfterFunc(time.Hour, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.end()
	})
	r.idle.Stop()
	return r, nil
}

// end ends the read transaction, if one is open. Called with r.mu held.
func (r *snapshotReader) end() {
	if r.open {
		_, _ = r.conn.ExecContext(context.Background(), "COMMIT")
		r.open = false
	}
}

func (r *snapshotReader) lookup(ctx context.Context, c *Cache, scope string, key []byte) ([]byte, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open && time.Since(r.since) > snapshotAge {
		r.end()
	}
	if !r.open {
		// Read before the snapshot starts (at the first SELECT): it sees
		// every commit up to gen at least.
		gen := c.commitGen.Load()
		// A plain (deferred) BEGIN: a read transaction, never the write lock.
		if _, err := r.conn.ExecContext(context.Background(), "BEGIN"); err != nil {
			return nil, false, err
		}
		r.open, r.since = true, time.Now()
		r.idle.Reset(snapshotAge)
		c.purgeCommitted(gen)
	}
	var sealed []byte
	err := r.stmt.QueryRowContext(ctx, c.tenant, scope, key).Scan(&sealed)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, false, nil
	case err != nil:
		r.end() // a fresh transaction next time
		return nil, false, err
	}
	return sealed, true, nil
}

func (r *snapshotReader) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.idle.Stop()
	r.end()
	_ = r.stmt.Close()
	_ = r.conn.Close()
}

// Close commits what is queued. It does not close the database, which
// other users share.
func (c *Cache) Close() error {
	c.closeOnce.Do(func() {
		c.sendMu.Lock()
		c.closed = true
		close(c.queue)
		c.sendMu.Unlock()
		<-c.flushed
		c.reader.close()
	})
	return c.closeErr
}

// Stats counts hits, misses and commits so far.
func (c *Cache) Stats() CacheStats {
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), WriteErrors: c.writeErrs.Load(),
		Commits: c.commits.Load(), Unreadable: c.unreadable.Load()}
}

// Len is the number of the tenant's cached responses in both scopes,
// queued writes included.
func (c *Cache) Len() int {
	c.mu.RLock()
	queued := make([]pendingKey, 0, len(c.pending))
	for k := range c.pending {
		queued = append(queued, k)
	}
	c.mu.RUnlock()
	// One snapshot, taken after the queue's: an entry committed meanwhile
	// is counted once, in the table.
	n := 0
	_ = c.db.Read(context.Background(), func(tx *sql.Tx) error {
		if err := tx.QueryRow(`SELECT COUNT(*) FROM response_cache WHERE tenant = ?`, c.tenant).Scan(&n); err != nil {
			return err
		}
		for _, k := range queued {
			var one int
			if err := tx.QueryRow(`SELECT 1 FROM response_cache WHERE tenant = ? AND scope = ? AND key = ?`,
				c.tenant, k.scope, []byte(k.key)).Scan(&one); errors.Is(err, sql.ErrNoRows) {
				n++
			}
		}
		return nil
	})
	return n
}

func (c *Cache) get(ctx context.Context, s Scope, key []byte) (Response, bool, error) {
	for _, scope := range s.reads() {
		c.mu.RLock()
		p, ok := c.pending[pendingKey{scope, string(key)}]
		c.mu.RUnlock()
		if ok {
			return p.resp, true, nil
		}
		sealed, found, err := c.reader.lookup(ctx, c, scope, key)
		if err != nil {
			return Response{}, false, err
		}
		if !found {
			continue
		}
		plain, err := c.open(scope, key, sealed)
		var r Response
		if err == nil {
			err = json.Unmarshal(plain, &r)
		}
		if err != nil {
			// Treated as a miss; the next answer to this request replaces it.
			c.unreadable.Add(1)
			continue
		}
		return r, true, nil
	}
	return Response{}, false, nil
}

// put stores r as the answer to key; took is how long the call took,
// kept so that a later hit can say what it saved.
func (c *Cache) put(s Scope, key []byte, r Response, took time.Duration) error {
	r.CacheHit, r.Latency, r.OriginalLatency, r.Batch = false, took, 0, false
	plain, err := json.Marshal(r)
	if err != nil {
		return err
	}
	scope := s.writes()
	val, err := c.seal(scope, key, plain)
	if err != nil {
		return err
	}
	pk := pendingKey{scope, string(key)}
	// The read lock keeps Close from closing the queue mid-send, and the
	// writer never takes sendMu, so a full queue drains while we wait.
	c.sendMu.RLock()
	defer c.sendMu.RUnlock()
	if c.closed {
		return errors.New("response cache is closed")
	}
	c.mu.Lock()
	c.seq++
	seq := c.seq
	c.pending[pk] = pendingEntry{resp: r, seq: seq}
	c.mu.Unlock()
	c.queue <- cacheEntry{pendingKey: pk, val: val, seq: seq}
	return nil
}

// CacheNamespace is the part of a cache key that the Request does not carry:
// which server answered.
type CacheNamespace struct {
	Provider string
	BaseURL  string
}

// emptyAnswer is a response with neither text nor tool calls: it answers
// nothing, so it is never cached (a later run must ask again).
func emptyAnswer(r Response) bool {
	return strings.TrimSpace(r.Content) == "" && len(r.ToolCalls) == 0
}

// WithCache answers repeated requests from cache, in the scope ctx carries
// (WithScope). Hits come back with CacheHit set and the original call's
// latency in OriginalLatency; errors and empty answers are never stored.
// With offline set, a miss fails with ErrCacheMiss instead of calling c,
// which makes a run replayable. A cache that cannot be read or written
// degrades to calling c: losing a cache entry costs money, not
// correctness.
func WithCache(c Client, cache *Cache, ns CacheNamespace, offline bool) Client {
	return ClientFunc(func(ctx context.Context, req Request) (Response, error) {
		start := time.Now()
		key, err := cacheKey(ns, req, RepeatOf(ctx))
		if err != nil {
			return Response{}, fmt.Errorf("%s: cannot build the cache key: %w: fix the step's schema or tools", req.Model, err)
		}
		scope := ScopeOf(ctx)
		if resp, ok, _ := cache.get(ctx, scope, key); ok {
			cache.hits.Add(1)
			resp.CacheHit, resp.OriginalLatency, resp.Latency = true, resp.Latency, time.Since(start)
			return resp, nil
		}
		cache.misses.Add(1)
		if offline {
			return Response{}, refusal.Wrap(refusal.GoOnline, "", req.Model+": offline: no cached response for this request", ErrCacheMiss)
		}
		asked := time.Now()
		resp, err := c.Complete(ctx, req)
		if err != nil || emptyAnswer(resp) {
			return resp, err
		}
		if resp.Batch && Collecting(ctx) {
			// Stored when the run proper consumes it, in that run's scope.
			return resp, nil
		}
		// The time kept is the call's as the run waited for it, retries
		// and rate limiting included: what a hit stands in for.
		if err := cache.put(scope, key, resp, time.Since(asked)); err != nil {
			cache.writeErrs.Add(1)
		}
		return resp, nil
	})
}
