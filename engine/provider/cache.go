package provider

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
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
// per groupEntries entries or groupWait, whichever comes first, so that a
// run pays one fsync per group, not per call; the writer wakes once per
// group, not per entry, on its own connection. Queued entries are
// visible to this process's lookups at once. A crash loses at most the
// group not yet committed, which the next run asks again; SQLite's commit
// is atomic and every value is authenticated, so no crash yields a wrong
// entry. Close flushes everything.
//
// Rows are clustered by tenant and numbered in commit order: a group lands
// at the end of its tenant's range, a few pages per commit, where rows
// ordered by their (random) keys would dirty a page per entry. Each process
// keeps an index of the tenant's committed rows in memory (scope and key
// prefix to row number), read whole at open and caught up at most every
// snapshotAge (50 ms) from the rows past the last it has seen: a lookup
// that misses, every lookup of a cold run, never reaches the database, and
// another process's entries are hits here within snapshotAge of its commit.
// A hit reads its row by number and checks the row's scope and whole key
// before it opens the value, so neither a prefix shared by two keys nor a
// row edited in place can answer another request.

// cacheSchema is the cache's table. id numbers a tenant's rows in commit
// order; scope is "train" or "heldout"; key is sha256 of the canonical
// request; val is nonce ‖ AES-GCM(response JSON). A request answered again
// (its entry damaged, or two processes asking at once) gets a new row, and
// lookups read the newest.
var cacheSchema = []string{`CREATE TABLE IF NOT EXISTS cached_responses (
	tenant TEXT    NOT NULL,
	id     INTEGER NOT NULL,
	scope  TEXT    NOT NULL,
	key    BLOB    NOT NULL,
	val    BLOB    NOT NULL,
	PRIMARY KEY (tenant, id)
) WITHOUT ROWID`}

// migrateKeyOrderedCache moves the entries of the cache's first table,
// ordered by key, into cached_responses, once.
func migrateKeyOrderedCache(tx *sql.Tx) error {
	var n int
	if err := tx.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'response_cache'`).Scan(&n); err != nil || n == 0 {
		return err
	}
	if _, err := tx.Exec(`INSERT INTO cached_responses (tenant, id, scope, key, val)
		SELECT tenant,
			(SELECT COALESCE(MAX(id), 0) FROM cached_responses c WHERE c.tenant = r.tenant)
				+ ROW_NUMBER() OVER (PARTITION BY tenant ORDER BY scope, key),
			scope, key, val
		FROM response_cache r`); err != nil {
		return err
	}
	_, err := tx.Exec(`DROP TABLE response_cache`)
	return err
}

const (
	// groupEntries and groupWait bound a group of writes: one durable
	// commit per this many entries or this long, whichever first. A commit
	// costs about a millisecond of CPU whatever it carries (the fsync, the
	// WAL's frames, the transaction), so groups are made as large as the
	// wait allows: 256 entries, where a run fast enough to fill them
	// commits 40 times a second; a slower one commits every 100 ms, and
	// at a thousand calls a second (32 in flight at 30 ms) carries about
	// a hundred entries. A crash loses at most that last group.
	groupEntries = 256
	groupWait    = 100 * time.Millisecond
	// maxGroup bounds one write transaction when entries pile up behind a
	// slow commit, and maxQueued the entries waiting: a call that would
	// queue more waits for the writer.
	maxGroup  = 1024
	maxQueued = 4 * maxGroup
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
	db *statedb.DB
	// pool is the cache's own handle on db, holding its two connections:
	// the lookups' (reader) and the writer's (wconn).
	pool *sql.DB
	// wconn is the writer's connection, with its two statements prepared
	// once: parsing them was a tenth of a commit.
	wconn          *sql.Conn
	lastID, insert *sql.Stmt

	tenant string
	aeads  map[string]cipher.AEAD // per stored scope
	reader *snapshotReader
	wait   time.Duration // longest a queued entry waits for its commit

	flushed   chan struct{} // closed when the writer has committed everything after Close
	closeOnce sync.Once
	closeErr  error // of the commits Close made, written before flushed closes
	// wake tells the writer that a group is full, or that the cache is
	// closing; a group's first entry arms due instead, so that the writer
	// wakes once per group, not once per entry.
	wake chan struct{}
	due  *time.Timer

	mu      sync.RWMutex // guards pending, seq, index, queue and closed
	room    *sync.Cond   // on mu: the queue has room again
	pending map[pendingKey]pendingEntry
	seq     uint64
	// index maps each stored scope's key prefixes to the newest committed
	// row of the tenant's with that prefix. An entry leaves pending for
	// index under one lock, so a lookup finds it in one or the other.
	index  map[string]map[uint64]int64
	queue  []cacheEntry // to write, in order
	closed bool

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
	err := db.Write(context.Background(), func(tx *sql.Tx) error {
		for _, stmt := range cacheSchema {
			if _, err := tx.Exec(stmt); err != nil {
				return err
			}
		}
		return migrateKeyOrderedCache(tx)
	})
	if err != nil {
		return nil, fmt.Errorf("response cache of %s: %w", tenant, err)
	}
	c := &Cache{db: db, tenant: tenant, wait: wait, aeads: map[string]cipher.AEAD{},
		flushed: make(chan struct{}), wake: make(chan struct{}, 1), due: time.NewTimer(time.Hour),
		pending: map[pendingKey]pendingEntry{},
		index:   map[string]map[uint64]int64{scopeTrain: {}, scopeHeldOut: {}}}
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
	c.due.Stop()
	c.room = sync.NewCond(&c.mu)
	if c.pool, err = db.Pool(2); err != nil {
		return nil, fmt.Errorf("response cache of %s: %w", tenant, err)
	}
	if c.wconn, err = c.pool.Conn(context.Background()); err == nil {
		if err = c.prepareWriter(); err == nil {
			c.reader, err = newSnapshotReader(c)
		}
		if err != nil {
			c.closeWriter()
		}
	}
	if err != nil {
		_ = c.pool.Close()
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

// writer commits the queue a group at a time: when a group is full, when
// its first entry has waited c.wait, and everything on Close.
func (c *Cache) writer() {
	defer close(c.flushed)
	for {
		select {
		case <-c.wake:
		case <-c.due.C:
		}
		for {
			c.mu.Lock()
			n := min(len(c.queue), maxGroup)
			group := slices.Clone(c.queue[:n])
			c.queue = slices.Delete(c.queue, 0, n)
			rest, closed := len(c.queue), c.closed
			c.room.Broadcast()
			c.mu.Unlock()
			err := c.commit(group) // counted in writeErrs; the calls are paid for again
			if closed {
				c.closeErr = errors.Join(c.closeErr, err) // every group Close committed
			}
			if closed && rest == 0 {
				return
			}
			if closed || rest >= groupEntries {
				continue // a full group left behind a slow commit goes at once
			}
			if rest > 0 {
				// Less than a group left behind: its first entry's wait
				// has gone by in the commit, so it goes at the latest
				// c.wait from now, not at the next group's.
				c.due.Reset(c.wait)
			}
			break
		}
	}
}

// commit writes group in one durable transaction, numbered after the
// tenant's last row, and then moves it from pending to the index.
func (c *Cache) commit(group []cacheEntry) error {
	if len(group) == 0 {
		return nil
	}
	var first int64
	err := c.write(func() error {
		// No other process numbers rows of this tenant's until the commit.
		var last int64
		if err := c.lastID.QueryRow(c.tenant).Scan(&last); err != nil {
			return err
		}
		first = last + 1
		for i, e := range group {
			if _, err := c.insert.Exec(c.tenant, first+int64(i), e.scope, []byte(e.key), e.val); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		c.writeErrs.Add(int64(len(group)))
	} else {
		c.commits.Add(1)
		// Rows right after the newest seen were the tenant's newest when
		// numbered: nothing is left to catch up on below them, so the
		// next catch-up reads only other processes' rows.
		c.reader.seen.CompareAndSwap(first-1, first+int64(len(group))-1)
	}
	c.mu.Lock()
	for i, e := range group {
		if err == nil {
			c.indexRow(e.scope, []byte(e.key), first+int64(i))
		}
		// A newer answer to the same request may have queued meanwhile:
		// it stays pending, and is found before the index.
		if p, ok := c.pending[e.pendingKey]; ok && p.seq == e.seq {
			delete(c.pending, e.pendingKey)
		}
	}
	c.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("response cache of %s: %d responses not stored (they will be asked again): %w", c.tenant, len(group), err)
		slog.Error("response cache commit failed", "err", err)
		return err
	}
	return nil
}

// prepareWriter prepares the writer's statements on its connection.
func (c *Cache) prepareWriter() error {
	ctx := context.Background()
	var err error
	c.lastID, err = c.wconn.PrepareContext(ctx, `SELECT COALESCE(MAX(id), 0) FROM cached_responses WHERE tenant = ?`)
	if err == nil {
		c.insert, err = c.wconn.PrepareContext(ctx, `INSERT INTO cached_responses (tenant, id, scope, key, val) VALUES (?, ?, ?, ?, ?)`)
	}
	return err
}

func (c *Cache) closeWriter() {
	for _, st := range []*sql.Stmt{c.lastID, c.insert} {
		if st != nil {
			_ = st.Close()
		}
	}
	_ = c.wconn.Close()
}

// write runs fn in a write transaction on the writer's connection, whose
// page cache the cache's own commits keep valid. The write lock is taken
// at BEGIN, so that what fn reads cannot change before its commit.
func (c *Cache) write(fn func() error) error {
	ctx := context.Background()
	if _, err := c.wconn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	err := fn()
	if err == nil {
		if _, err = c.wconn.ExecContext(ctx, "COMMIT"); err != nil {
			err = fmt.Errorf("commit: %w", err)
		}
	}
	if err != nil {
		_, _ = c.wconn.ExecContext(ctx, "ROLLBACK")
	}
	return err
}

// keyPrefix is the index's key of a cache key: its first eight bytes, as
// evenly spread as the sha256 they are of.
func keyPrefix(key []byte) (uint64, bool) {
	if len(key) < 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(key), true
}

// indexRow records row id as the newest of key's in scope. Called with
// c.mu held for writing.
func (c *Cache) indexRow(scope string, key []byte, id int64) {
	idx, known := c.index[scope]
	prefix, ok := keyPrefix(key)
	if !known || !ok {
		return // not a row this cache wrote; it answers nothing
	}
	if id > idx[prefix] {
		idx[prefix] = id
	}
}

// queued counts the entries not committed yet.
func (c *Cache) queued() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.pending)
}

// snapshotAge is the longest a lookup snapshot is used, and the longest
// the index goes without catching up: entries other processes commit are
// hits here at most this much later.
const snapshotAge = 50 * time.Millisecond

// snapshotReader reads the cache's rows from one connection, in a read
// transaction kept open for up to snapshotAge: a read in a fresh
// transaction pays for the transaction (locks, the WAL index, a page cache
// the last commit invalidated) far more than for the search. Each new
// snapshot first catches the index up on the rows committed since the
// last. The transaction is ended when it is older than snapshotAge or idle
// that long, so it never holds back a checkpoint.
type snapshotReader struct {
	c     *Cache
	mu    sync.Mutex
	conn  *sql.Conn
	row   *sql.Stmt // one row by number
	after *sql.Stmt // the rows past a number, in order
	open  bool
	since time.Time
	idle  *time.Timer
	// seen is the newest row the index has caught up to (the writer moves
	// it past its own rows when they directly follow it); caughtUp is when
	// (Unix nanoseconds), read without mu by lookups deciding whether to.
	seen     atomic.Int64
	caughtUp atomic.Int64
}

func newSnapshotReader(c *Cache) (*snapshotReader, error) {
	ctx := context.Background()
	conn, err := c.pool.Conn(ctx)
	if err != nil {
		return nil, err
	}
	r := &snapshotReader{c: c, conn: conn}
	// Prepared once: parsing a statement would be most of a read.
	if r.row, err = conn.PrepareContext(ctx, `SELECT scope, key, val FROM cached_responses WHERE tenant = ? AND id = ?`); err == nil {
		r.after, err = conn.PrepareContext(ctx, `SELECT id, scope, key FROM cached_responses WHERE tenant = ? AND id > ? ORDER BY id`)
	}
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	r.idle = time.AfterFunc(time.Hour, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.end()
	})
	r.idle.Stop()
	r.mu.Lock()
	err = r.renew() // the index, read whole
	r.mu.Unlock()
	if err != nil {
		r.close()
		return nil, err
	}
	return r, nil
}

// end ends the read transaction, if one is open. Called with r.mu held.
func (r *snapshotReader) end() {
	if r.open {
		_, _ = r.conn.ExecContext(context.Background(), "COMMIT")
		r.open = false
	}
}

// renew starts a new snapshot and catches the index up in it. Called with
// r.mu held.
func (r *snapshotReader) renew() error {
	r.end()
	// A plain (deferred) BEGIN: a read transaction, never the write lock.
	if _, err := r.conn.ExecContext(context.Background(), "BEGIN"); err != nil {
		return err
	}
	r.open, r.since = true, time.Now()
	r.idle.Reset(snapshotAge)
	rows, err := r.after.Query(r.c.tenant, r.seen.Load())
	if err != nil {
		r.end()
		return err
	}
	defer rows.Close()
	type row struct {
		id    int64
		scope string
		key   []byte
	}
	var fresh []row
	for rows.Next() {
		var x row
		if err := rows.Scan(&x.id, &x.scope, &x.key); err != nil {
			r.end()
			return err
		}
		fresh = append(fresh, x)
	}
	if err := rows.Err(); err != nil {
		r.end()
		return err
	}
	if len(fresh) > 0 {
		r.c.mu.Lock()
		for _, x := range fresh {
			r.c.indexRow(x.scope, x.key, x.id)
		}
		r.c.mu.Unlock()
		r.advance(fresh[len(fresh)-1].id)
	}
	r.caughtUp.Store(time.Now().UnixNano())
	return nil
}

// advance moves seen up to id, never down.
func (r *snapshotReader) advance(id int64) {
	for {
		s := r.seen.Load()
		if s >= id || r.seen.CompareAndSwap(s, id) {
			return
		}
	}
}

// catchUp renews the snapshot, and with it the index, when the index is
// older than snapshotAge, unless another lookup is at it already.
func (r *snapshotReader) catchUp() {
	if time.Since(time.Unix(0, r.caughtUp.Load())) <= snapshotAge || !r.mu.TryLock() {
		return
	}
	defer r.mu.Unlock()
	if time.Since(time.Unix(0, r.caughtUp.Load())) > snapshotAge {
		_ = r.renew() // a failed catch-up leaves the index as it was: misses, not errors
	}
}

// fetch reads row id, if it is still scope's entry for key.
func (r *snapshotReader) fetch(ctx context.Context, id int64, scope string, key []byte) ([]byte, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for attempt := 0; ; attempt++ {
		if !r.open || time.Since(r.since) > snapshotAge {
			if err := r.renew(); err != nil {
				return nil, false, err
			}
		}
		var rowScope string
		var rowKey, sealed []byte
		err := r.row.QueryRowContext(ctx, r.c.tenant, id).Scan(&rowScope, &rowKey, &sealed)
		switch {
		case errors.Is(err, sql.ErrNoRows) && attempt == 0:
			// This process's own commit, newer than the snapshot.
			r.end()
			continue
		case errors.Is(err, sql.ErrNoRows):
			return nil, false, nil
		case err != nil:
			r.end() // a fresh transaction next time
			return nil, false, err
		}
		if rowScope != scope || !bytes.Equal(rowKey, key) {
			return nil, false, nil // another key of the same prefix
		}
		return sealed, true, nil
	}
}

func (r *snapshotReader) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.idle.Stop()
	r.end()
	_ = r.row.Close()
	_ = r.after.Close()
	_ = r.conn.Close()
}

// Close commits what is queued. It does not close the database, which
// other users share.
func (c *Cache) Close() error {
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		c.room.Broadcast()
		c.mu.Unlock()
		c.signal()
		<-c.flushed
		c.due.Stop()
		c.reader.close()
		c.closeWriter()
		_ = c.pool.Close()
	})
	return c.closeErr
}

// Stats counts hits, misses and commits so far.
func (c *Cache) Stats() CacheStats {
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), WriteErrors: c.writeErrs.Load(),
		Commits: c.commits.Load(), Unreadable: c.unreadable.Load()}
}

// Len is the number of requests the tenant's cache answers in both
// scopes, queued writes included.
func (c *Cache) Len() int {
	c.mu.RLock()
	keys := make(map[pendingKey]bool, len(c.pending))
	for k := range c.pending {
		keys[k] = true
	}
	c.mu.RUnlock()
	_ = c.db.Read(context.Background(), func(tx *sql.Tx) error {
		rows, err := tx.Query(`SELECT scope, key FROM cached_responses WHERE tenant = ?`, c.tenant)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k pendingKey
			var key []byte
			if err := rows.Scan(&k.scope, &key); err != nil {
				return err
			}
			k.key = string(key)
			keys[k] = true
		}
		return rows.Err()
	})
	return len(keys)
}

func (c *Cache) get(ctx context.Context, s Scope, key []byte) (Response, bool, error) {
	c.reader.catchUp()
	prefix, _ := keyPrefix(key)
	for _, scope := range s.reads() {
		c.mu.RLock()
		p, queued := c.pending[pendingKey{scope, string(key)}]
		id, indexed := c.index[scope][prefix]
		c.mu.RUnlock()
		if queued {
			return p.resp, true, nil
		}
		if !indexed {
			continue
		}
		sealed, found, err := c.reader.fetch(ctx, id, scope, key)
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
	r.CacheHit, r.Latency, r.OriginalLatency, r.Batch, r.Retried = false, took, 0, false, Usage{}
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
	c.mu.Lock()
	for len(c.queue) >= maxQueued && !c.closed {
		c.room.Wait() // the writer is behind: wait for its commit
	}
	if c.closed {
		c.mu.Unlock()
		return errors.New("response cache is closed")
	}
	c.seq++
	c.pending[pk] = pendingEntry{resp: r, seq: c.seq}
	c.queue = append(c.queue, cacheEntry{pendingKey: pk, val: val, seq: c.seq})
	n := len(c.queue)
	if n == 1 {
		c.due.Reset(c.wait)
	}
	c.mu.Unlock()
	if n == groupEntries {
		c.signal()
	}
	return nil
}

// signal wakes the writer, unless it has a wake-up waiting already.
func (c *Cache) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
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
