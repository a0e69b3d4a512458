package provider

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// The response cache lives in bbolt rather than SQLite: it is pure Go (no
// cgo, so fapo stays one static binary), keeps everything in one file that
// a tenant can copy or delete, gives ACID transactions so a killed run never
// leaves a torn entry, and lets any number of readers run alongside a single
// writer, which is exactly the load of one tenant's evaluations. A
// cross-process flock makes a second fapo process wait (then fail clearly)
// instead of corrupting the file.
//
// Writes are behind: a call returns as soon as its answer is known, and one
// writer goroutine commits whatever has queued in a single transaction, so
// neither a sequential run nor 32 cases in flight wait on fsync. Queued
// entries are visible to lookups at once. A crash loses at most the last
// few milliseconds of entries, which only means paying for those calls
// again; Close flushes everything.

var cacheBucket = []byte("responses.v1")

const defaultOpenTimeout = 3 * time.Second

// Cache is a persistent response cache shared by the runs of a tenant. It is
// safe for concurrent use.
type Cache struct {
	db        *bolt.DB
	path      string
	queue     chan cacheEntry
	flushed   chan struct{}
	closeOnce sync.Once
	closeErr  error
	sendMu    sync.RWMutex // senders share it; Close takes it to close queue
	closed    bool         // guarded by sendMu
	mu        sync.RWMutex // guards pending
	pending   map[string]Response
	hits      atomic.Int64
	misses    atomic.Int64
	writeErrs atomic.Int64
}

// CacheStats counts lookups since the cache was opened.
type CacheStats struct {
	Hits   int64 `json:"hits"`
	Misses int64 `json:"misses"`
	// WriteErrors counts responses that could not be stored (disk full,
	// cache closed); those calls will be paid for again.
	WriteErrors int64 `json:"write_errors,omitempty"`
}

// OpenCache opens (creating if needed) the cache file at path. It waits a
// few seconds for another fapo process holding the file, then fails.
func OpenCache(path string) (*Cache, error) { return openCache(path, defaultOpenTimeout) }

func openCache(path string, timeout time.Duration) (*Cache, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("response cache %s: creating its directory: %w", path, err)
	}
	db, err := bolt.Open(path, 0o644, &bolt.Options{Timeout: timeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("response cache %s is locked by another fapo process (waited %s): wait for that run to finish or stop it, then retry", path, timeout)
	}
	if err != nil {
		return nil, fmt.Errorf("response cache %s: %w: if the file is damaged, delete it (responses will be fetched again)", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(cacheBucket)
		return err
	}); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("response cache %s: %w", path, err)
	}
	c := &Cache{db: db, path: path, queue: make(chan cacheEntry, 1024), flushed: make(chan struct{}),
		pending: map[string]Response{}}
	go c.writer()
	return c, nil
}

type cacheEntry struct {
	key string
	val []byte
}

// maxBatch bounds one write transaction.
const maxBatch = 512

func (c *Cache) writer() {
	defer close(c.flushed)
	batch := make([]cacheEntry, 0, maxBatch)
	for e := range c.queue {
		batch = append(batch[:0], e)
	drain:
		for len(batch) < maxBatch {
			select {
			case e, ok := <-c.queue:
				if !ok {
					break drain
				}
				batch = append(batch, e)
			default:
				break drain
			}
		}
		err := c.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(cacheBucket)
			for _, e := range batch {
				if err := b.Put([]byte(e.key), e.val); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			c.writeErrs.Add(int64(len(batch)))
		}
		c.mu.Lock()
		for _, e := range batch {
			delete(c.pending, e.key)
		}
		c.mu.Unlock()
	}
}

// Close writes what is queued and releases the file for other processes.
func (c *Cache) Close() error {
	c.closeOnce.Do(func() {
		c.sendMu.Lock()
		c.closed = true
		close(c.queue)
		c.sendMu.Unlock()
		<-c.flushed
		c.closeErr = c.db.Close()
	})
	return c.closeErr
}

// Path is the cache file.
func (c *Cache) Path() string { return c.path }

// Stats counts hits and misses so far.
func (c *Cache) Stats() CacheStats {
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), WriteErrors: c.writeErrs.Load()}
}

// Len is the number of cached responses, queued writes included.
func (c *Cache) Len() int {
	c.mu.RLock()
	queued := make([]string, 0, len(c.pending))
	for k := range c.pending {
		queued = append(queued, k)
	}
	c.mu.RUnlock()
	n := 0
	_ = c.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(cacheBucket)
		n = b.Stats().KeyN
		for _, k := range queued {
			if b.Get([]byte(k)) == nil {
				n++
			}
		}
		return nil
	})
	return n
}

func (c *Cache) get(key []byte) (Response, bool, error) {
	c.mu.RLock()
	queued, ok := c.pending[string(key)]
	c.mu.RUnlock()
	if ok {
		return queued, true, nil
	}
	var raw []byte
	err := c.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(cacheBucket).Get(key); v != nil {
			raw = bytes.Clone(v) // v is only valid inside the transaction
		}
		return nil
	})
	if err != nil || raw == nil {
		return Response{}, false, err
	}
	var r Response
	if err := json.Unmarshal(raw, &r); err != nil {
		// A bad entry is treated as a miss and overwritten by the next call.
		return Response{}, false, nil
	}
	return r, true, nil
}

func (c *Cache) put(key []byte, r Response) error {
	r.CacheHit, r.Latency = false, 0
	val, err := json.Marshal(r)
	if err != nil {
		return err
	}
	// The read lock keeps Close from closing the queue mid-send, and the
	// writer never takes sendMu, so a full queue drains while we wait.
	c.sendMu.RLock()
	defer c.sendMu.RUnlock()
	if c.closed {
		return errors.New("response cache is closed")
	}
	c.mu.Lock()
	c.pending[string(key)] = r
	c.mu.Unlock()
	c.queue <- cacheEntry{key: string(key), val: val}
	return nil
}

// CacheNamespace is the part of a cache key that the Request does not carry:
// which server answered.
type CacheNamespace struct {
	Provider string
	BaseURL  string
}

// cacheKey is sha256 over canonical JSON: fixed field order, raw JSON
// (schemas, tool parameters) re-encoded with sorted keys and no whitespace,
// so that formatting never splits entries. The version prefix retires every
// entry when the key layout changes.
func cacheKey(ns CacheNamespace, req Request) ([]byte, error) {
	schema, err := canonicalJSON(req.JSONSchema)
	if err != nil {
		return nil, fmt.Errorf("json_schema: %w", err)
	}
	tools := make([]ToolDef, len(req.Tools))
	for i, t := range req.Tools {
		p, err := canonicalJSON(t.Parameters)
		if err != nil {
			return nil, fmt.Errorf("tool %s parameters: %w", t.Name, err)
		}
		tools[i] = ToolDef{Name: t.Name, Description: t.Description, Parameters: p}
	}
	k := struct {
		V          int             `json:"v"`
		Provider   string          `json:"provider"`
		BaseURL    string          `json:"base_url"`
		Model      string          `json:"model"`
		Messages   []Message       `json:"messages"`
		Params     Params          `json:"params"`
		JSONSchema json.RawMessage `json:"json_schema,omitempty"`
		Tools      []ToolDef       `json:"tools,omitempty"`
		Sample     int             `json:"sample"`
	}{1, ns.Provider, ns.BaseURL, req.Model, req.Messages, req.Params, schema, tools, req.Sample}
	b, err := json.Marshal(k)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	return sum[:], nil
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

// WithCache answers repeated requests from cache. Hits come back with
// CacheHit set; errors are never stored. With offline set, a miss fails
// with ErrCacheMiss instead of calling c, which makes a run replayable.
// A cache that cannot be read or written degrades to calling c: losing a
// cache entry costs money, not correctness.
func WithCache(c Client, cache *Cache, ns CacheNamespace, offline bool) Client {
	return ClientFunc(func(ctx context.Context, req Request) (Response, error) {
		start := time.Now()
		key, err := cacheKey(ns, req)
		if err != nil {
			return Response{}, fmt.Errorf("%s: cannot build the cache key: %w: fix the step's schema or tools", req.Model, err)
		}
		if resp, ok, _ := cache.get(key); ok {
			cache.hits.Add(1)
			resp.CacheHit, resp.Latency = true, time.Since(start)
			return resp, nil
		}
		cache.misses.Add(1)
		if offline {
			return Response{}, fmt.Errorf("%s: offline: no cached response for this request; run once online or drop --offline: %w", req.Model, ErrCacheMiss)
		}
		resp, err := c.Complete(ctx, req)
		if err != nil {
			return resp, err
		}
		if err := cache.put(key, resp); err != nil {
			cache.writeErrs.Add(1)
		}
		return resp, nil
	})
}
