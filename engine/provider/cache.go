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
// instead of corrupting the file. Concurrent writers are coalesced with
// DB.Batch so a run with many cases in flight does not pay one fsync per
// call.

var cacheBucket = []byte("responses.v1")

const defaultOpenTimeout = 3 * time.Second

// Cache is a persistent response cache shared by the runs of a tenant. It is
// safe for concurrent use.
type Cache struct {
	db        *bolt.DB
	path      string
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
	return &Cache{db: db, path: path}, nil
}

// Close releases the file for other processes.
func (c *Cache) Close() error { return c.db.Close() }

// Path is the cache file.
func (c *Cache) Path() string { return c.path }

// Stats counts hits and misses so far.
func (c *Cache) Stats() CacheStats {
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), WriteErrors: c.writeErrs.Load()}
}

// Len is the number of cached responses.
func (c *Cache) Len() int {
	n := 0
	_ = c.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(cacheBucket).Stats().KeyN
		return nil
	})
	return n
}

func (c *Cache) get(key []byte) (Response, bool, error) {
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
	return c.db.Batch(func(tx *bolt.Tx) error { return tx.Bucket(cacheBucket).Put(key, val) })
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
