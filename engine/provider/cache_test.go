package provider

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/provider/fakellm"
	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/statedb"
)

// testHome is a sealed store with the state database open in it.
type testHome struct {
	dir string
	db  *statedb.DB
	key []byte
}

func newTestHome(t testing.TB) *testHome {
	t.Helper()
	h := &testHome{dir: filepath.Join(t.TempDir(), "home"), key: make([]byte, 32)}
	_, _ = rand.Read(h.key)
	h.db = h.open(t)
	return h
}

// open is another handle on the home's database, as another process has.
func (h *testHome) open(t testing.TB) *statedb.DB {
	t.Helper()
	db, err := statedb.Open(h.dir)
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func (h *testHome) cache(t testing.TB, db *statedb.DB, tenant string) *Cache {
	t.Helper()
	c, err := OpenCache(db, tenant, h.key)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func openTestCache(t testing.TB) *Cache {
	t.Helper()
	h := newTestHome(t)
	return h.cache(t, h.db, "demo")
}

var (
	trainCtx   = WithScope(context.Background(), ScopeTrain)
	heldOutCtx = WithScope(context.Background(), ScopeHeldOut)
)

// countingClient answers "answer to <last message>" and counts calls; it
// fails when the last message is "fail".
type countingClient struct{ n atomic.Int64 }

func (c *countingClient) Complete(_ context.Context, req Request) (Response, error) {
	c.n.Add(1)
	last := req.Messages[len(req.Messages)-1].Content
	if last == "fail" {
		return Response{}, &APIError{Provider: "openai", Model: req.Model, Status: 500}
	}
	return Response{Content: "answer to " + last, FinishReason: "stop", Usage: Usage{PromptTokens: 10, CompletionTokens: 5},
		Latency: 40 * time.Millisecond}, nil
}

// waitCommitted waits until nothing of c's is queued.
func waitCommitted(t testing.TB, c *Cache) {
	t.Helper()
	require.Eventually(t, func() bool { return c.queued() == 0 }, 5*time.Second, time.Millisecond)
}

func TestCacheHitMissOffline(t *testing.T) {
	cache := openTestCache(t)
	raw := &countingClient{}
	ns := CacheNamespace{Provider: "openai", BaseURL: "https://api.openai.com/v1"}
	online := WithCache(raw, cache, ns, false)
	req := userReq("q1")
	req.Model = "gpt-4o-mini"

	first, err := online.Complete(trainCtx, req)
	require.NoError(t, err)
	require.False(t, first.CacheHit)

	second, err := online.Complete(trainCtx, req)
	require.NoError(t, err)
	require.True(t, second.CacheHit, "a queued entry is visible at once")
	require.Equal(t, first.Content, second.Content)
	require.Equal(t, first.Usage, second.Usage)
	require.Less(t, second.Latency, first.Latency, "a hit reports its own lookup time")
	require.EqualValues(t, 1, raw.n.Load())
	require.Equal(t, CacheStats{Hits: 1, Misses: 1}, cache.Stats())
	require.Equal(t, 1, cache.Len())

	waitCommitted(t, cache)
	offline := WithCache(raw, cache, ns, true)
	hit, err := offline.Complete(trainCtx, req)
	require.NoError(t, err)
	require.True(t, hit.CacheHit, "a committed entry is read back")
	require.Equal(t, first.Content, hit.Content)

	other := req
	other.Sample = 1 // another sample of the same step is another entry
	_, err = offline.Complete(trainCtx, other)
	require.ErrorIs(t, err, ErrCacheMiss)
	require.ErrorContains(t, err, "offline: no cached response for this request")
	r, ok := refusal.Of(err)
	require.True(t, ok)
	require.Equal(t, refusal.GoOnline, r.Next)
	require.EqualValues(t, 1, raw.n.Load(), "offline never calls out")
}

// TestCacheHitKeepsOriginalLatency: a hit says how long its request took
// when first asked, from the queue and after a reopen alike, so a run
// answered from the cache can be timed as the run it stands in for.
func TestCacheHitKeepsOriginalLatency(t *testing.T) {
	const took = 30 * time.Millisecond
	h := newTestHome(t)
	cache, err := OpenCache(h.db, "demo", h.key)
	require.NoError(t, err)
	slow := ClientFunc(func(ctx context.Context, req Request) (Response, error) {
		time.Sleep(took)
		return Response{Content: "answer", FinishReason: "stop", Latency: time.Millisecond}, nil
	})
	c := WithCache(slow, cache, CacheNamespace{}, false)
	first, err := c.Complete(heldOutCtx, userReq("q"))
	require.NoError(t, err)
	require.False(t, first.CacheHit)
	require.Zero(t, first.OriginalLatency, "a call is no stand-in")
	require.Equal(t, time.Millisecond, first.Latency, "a miss reports its client's latency unchanged")

	queued, err := c.Complete(heldOutCtx, userReq("q"))
	require.NoError(t, err)
	require.True(t, queued.CacheHit)
	require.GreaterOrEqual(t, queued.OriginalLatency, took, "the time the run waited for the call")
	require.Less(t, queued.Latency, took, "the hit's own time stays its lookup's")
	require.NoError(t, cache.Close())

	cache = h.cache(t, h.db, "demo")
	stored, err := WithCache(slow, cache, CacheNamespace{}, true).Complete(heldOutCtx, userReq("q"))
	require.NoError(t, err)
	require.True(t, stored.CacheHit)
	require.Equal(t, queued.OriginalLatency, stored.OriginalLatency, "kept in the sealed entry")
}

func TestCacheNeverStoresErrorsOrEmptyAnswers(t *testing.T) {
	answers := map[string]Response{
		"empty, cut by max_tokens": {FinishReason: "length"},
		"whitespace only":          {Content: " \n\t", FinishReason: "length"},
	}
	cache := openTestCache(t)
	var calls atomic.Int64
	raw := ClientFunc(func(_ context.Context, req Request) (Response, error) {
		calls.Add(1)
		last := req.Messages[len(req.Messages)-1].Content
		if last == "fail" {
			return Response{}, &APIError{Status: 500}
		}
		return answers[last], nil
	})
	c := WithCache(raw, cache, CacheNamespace{Provider: "openai"}, false)
	for _, q := range []string{"fail", "empty, cut by max_tokens", "whitespace only"} {
		for range 2 {
			_, err := c.Complete(trainCtx, userReq(q))
			if q == "fail" {
				require.Error(t, err)
			} else {
				require.NoError(t, err, "an empty answer cut by max_tokens is the step's parameters at work, not a fault")
			}
		}
	}
	require.EqualValues(t, 6, calls.Load(), "every one was asked again")
	require.Zero(t, cache.Len())
}

func TestCachePersistsAcrossOpens(t *testing.T) {
	h := newTestHome(t)
	cache, err := OpenCache(h.db, "demo", h.key)
	require.NoError(t, err)
	raw := &countingClient{}
	_, err = WithCache(raw, cache, CacheNamespace{}, false).Complete(trainCtx, userReq("q"))
	require.NoError(t, err)
	require.NoError(t, cache.Close())
	require.NoError(t, cache.Close(), "Close is idempotent")
	require.NoError(t, h.db.Close())

	db := h.open(t)
	cache = h.cache(t, db, "demo")
	resp, err := WithCache(raw, cache, CacheNamespace{}, true).Complete(trainCtx, userReq("q"))
	require.NoError(t, err)
	require.True(t, resp.CacheHit)
	require.Equal(t, "answer to q", resp.Content)

	_, err = OpenCache(db, "demo", h.key[:16])
	require.ErrorContains(t, err, "want 32")
}

// TestCacheTwoHandlesConcurrently: two handles on one home, each with its
// own database connection as two processes have, write and read at once;
// each then hits on what the other committed, and neither waits on a lock
// held beyond a transaction.
func TestCacheTwoHandlesConcurrently(t *testing.T) {
	h := newTestHome(t)
	a := h.cache(t, h.db, "demo")
	b := h.cache(t, h.open(t), "demo")
	rawA, rawB := &countingClient{}, &countingClient{}
	ca := WithCache(rawA, a, CacheNamespace{}, false)
	cb := WithCache(rawB, b, CacheNamespace{}, false)
	const workers, per = 8, 60
	errs := make(chan error, 2*workers)
	for w := range workers {
		for _, side := range []struct {
			name string
			c    Client
		}{{"a", ca}, {"b", cb}} {
			go func() {
				for i := range per {
					// Own entries and shared ones: both sides ask "shared-…".
					for _, q := range []string{fmt.Sprintf("%s-%d-%d", side.name, w, i), fmt.Sprintf("shared-%d-%d", w, i)} {
						resp, err := side.c.Complete(trainCtx, userReq(q))
						if err == nil && resp.Content != "answer to "+q {
							err = fmt.Errorf("%s: got %q", q, resp.Content)
						}
						if err != nil {
							errs <- err
							return
						}
					}
				}
				errs <- nil
			}()
		}
	}
	for range 2 * workers {
		require.NoError(t, <-errs)
	}
	waitCommitted(t, a)
	waitCommitted(t, b)
	require.Zero(t, a.Stats().WriteErrors+b.Stats().WriteErrors)

	// Cross-process hits after the other's commits, without any Close,
	// once the lookups' snapshot (at most snapshotAge old) has moved on.
	time.Sleep(snapshotAge + 10*time.Millisecond)
	offA, offB := WithCache(rawA, a, CacheNamespace{}, true), WithCache(rawB, b, CacheNamespace{}, true)
	for w := range workers {
		for i := range per {
			for _, tt := range []struct {
				c Client
				q string
			}{{offA, fmt.Sprintf("b-%d-%d", w, i)}, {offB, fmt.Sprintf("a-%d-%d", w, i)}} {
				resp, err := tt.c.Complete(trainCtx, userReq(tt.q))
				require.NoError(t, err, tt.q)
				require.True(t, resp.CacheHit)
				require.Equal(t, "answer to "+tt.q, resp.Content)
			}
		}
	}
	require.Equal(t, 3*workers*per, a.Len())
}

// TestCacheSecondProcess runs a real second process on the same home while
// this one holds its cache open: the child reads what this process
// committed and writes its own, which this process then hits.
func TestCacheSecondProcess(t *testing.T) {
	if home := os.Getenv("FAPO_CACHE_CHILD_HOME"); home != "" {
		cacheChild(t, home)
		return
	}
	h := newTestHome(t)
	cache := h.cache(t, h.db, "demo")
	raw := &countingClient{}
	c := WithCache(raw, cache, CacheNamespace{}, false)
	_, err := c.Complete(trainCtx, userReq("from the parent"))
	require.NoError(t, err)
	waitCommitted(t, cache)

	out, err := childCmd(t, "TestCacheSecondProcess", h, "").CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Contains(t, string(out), "CHILD OK")

	resp, err := WithCache(raw, cache, CacheNamespace{}, true).Complete(trainCtx, userReq("from the child"))
	require.NoError(t, err)
	require.True(t, resp.CacheHit)
	require.Equal(t, "answer to from the child", resp.Content)
	require.EqualValues(t, 1, raw.n.Load())
}

func childCmd(t *testing.T, test string, h *testHome, mode string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), "FAPO_CACHE_CHILD_HOME="+h.dir, "FAPO_CACHE_CHILD_KEY="+fmt.Sprintf("%x", h.key),
		"FAPO_CACHE_CHILD_MODE="+mode)
	return cmd
}

func childHome(t *testing.T, home string) *testHome {
	h := &testHome{dir: home}
	_, err := fmt.Sscanf(os.Getenv("FAPO_CACHE_CHILD_KEY"), "%x", &h.key)
	require.NoError(t, err)
	h.db = h.open(t)
	return h
}

func cacheChild(t *testing.T, home string) {
	h := childHome(t, home)
	cache, err := OpenCache(h.db, "demo", h.key)
	require.NoError(t, err, "a second process opens the cache while the first holds it")
	resp, err := WithCache(&countingClient{}, cache, CacheNamespace{}, true).Complete(trainCtx, userReq("from the parent"))
	require.NoError(t, err)
	require.Equal(t, "answer to from the parent", resp.Content)
	_, err = WithCache(&countingClient{}, cache, CacheNamespace{}, false).Complete(trainCtx, userReq("from the child"))
	require.NoError(t, err)
	require.NoError(t, cache.Close())
	fmt.Println("CHILD OK")
}

// TestCacheTrainNeverHitsHeldOut: an entry a held-out request created is a
// miss for a train request, queued or committed; a held-out request hits
// train entries; a request of unknown scope reads as train and writes as
// held-out.
func TestCacheTrainNeverHitsHeldOut(t *testing.T) {
	cache := openTestCache(t)
	raw := &countingClient{}
	c := WithCache(raw, cache, CacheNamespace{}, false)
	ask := func(ctx context.Context, q string) bool {
		resp, err := c.Complete(ctx, userReq(q))
		require.NoError(t, err)
		require.Equal(t, "answer to "+q, resp.Content)
		return resp.CacheHit
	}
	require.False(t, ask(heldOutCtx, "held-out prompt"))
	require.True(t, ask(heldOutCtx, "held-out prompt"))
	require.False(t, ask(context.Background(), "held-out prompt"), "unknown scope reads as train")
	require.False(t, ask(trainCtx, "held-out prompt"), "queued: a train request never hits a held-out entry")

	require.False(t, ask(heldOutCtx, "held-out, committed"))
	waitCommitted(t, cache)
	require.False(t, ask(trainCtx, "held-out, committed"), "committed: still a miss for train")

	require.False(t, ask(trainCtx, "train prompt"))
	require.True(t, ask(heldOutCtx, "train prompt"), "held-out runs may read train entries")

	require.False(t, ask(context.Background(), "unknown prompt"))
	require.False(t, ask(trainCtx, "unknown prompt"), "an unknown request's entry is held-out to train")
	require.True(t, ask(heldOutCtx, "unknown prompt"))
}

// TestCacheEntriesCannotBeSwapped: a sealed value moved to another row
// (another request, scope or tenant) does not open there: a miss, never
// the other row's answer.
func TestCacheEntriesCannotBeSwapped(t *testing.T) {
	h := newTestHome(t)
	demo, other := h.cache(t, h.db, "demo"), h.cache(t, h.db, "other") // same master key on purpose
	raw := &countingClient{}
	for _, tt := range []struct {
		c   *Cache
		ctx context.Context
		q   string
	}{{demo, trainCtx, "a"}, {demo, trainCtx, "b"}, {demo, heldOutCtx, "h"}, {other, trainCtx, "o"}} {
		_, err := WithCache(raw, tt.c, CacheNamespace{}, false).Complete(tt.ctx, userReq(tt.q))
		require.NoError(t, err)
		waitCommitted(t, tt.c)
	}
	key := func(q string) []byte {
		k, err := cacheKey(CacheNamespace{}, userReq(q), 0)
		require.NoError(t, err)
		return k
	}
	sqlExec := func(q string, args ...any) {
		_, err := h.db.SQL().Exec(q, args...)
		require.NoError(t, err)
	}
	// b's row now holds a's sealed answer.
	sqlExec(`UPDATE cached_responses SET val = (SELECT val FROM cached_responses WHERE tenant = 'demo' AND scope = 'train' AND key = ?)
		WHERE tenant = 'demo' AND scope = 'train' AND key = ?`, key("a"), key("b"))
	// The held-out entry moved into the train scope.
	sqlExec(`UPDATE cached_responses SET scope = 'train' WHERE tenant = 'demo' AND scope = 'heldout' AND key = ?`, key("h"))
	// Tenant other's entry moved to demo, past demo's rows.
	sqlExec(`UPDATE cached_responses SET tenant = 'demo', id = id + 1000 WHERE tenant = 'other' AND key = ?`, key("o"))

	// Neither the handle that wrote the entries nor one opened after the
	// edits (another process) takes an edited row for an answer.
	fresh := h.cache(t, h.db, "demo")
	for _, c := range []*Cache{demo, fresh} {
		offline := WithCache(raw, c, CacheNamespace{}, true)
		for _, q := range []string{"b", "h", "o"} {
			_, err := offline.Complete(trainCtx, userReq(q))
			require.ErrorIs(t, err, ErrCacheMiss, q)
		}
		resp, err := offline.Complete(trainCtx, userReq("a"))
		require.NoError(t, err)
		require.Equal(t, "answer to a", resp.Content)
	}
	require.EqualValues(t, 3, fresh.Stats().Unreadable, "each edited row is read, and refused")
	demo = fresh
	offline := WithCache(raw, demo, CacheNamespace{}, true)

	// The next answer replaces a damaged entry.
	online := WithCache(raw, demo, CacheNamespace{}, false)
	_, err := online.Complete(trainCtx, userReq("b"))
	require.NoError(t, err)
	waitCommitted(t, demo)
	resp, err := offline.Complete(trainCtx, userReq("b"))
	require.NoError(t, err)
	require.Equal(t, "answer to b", resp.Content)
}

// TestCacheNoPlaintextAtRest: neither a cached prompt nor its answer appears
// in any file of the home (database, WAL, shared memory), while the cache is
// open and after Close; files are 0600 and directories 0700.
func TestCacheNoPlaintextAtRest(t *testing.T) {
	h := newTestHome(t)
	cache := h.cache(t, h.db, "demo")
	c := WithCache(&countingClient{}, cache, CacheNamespace{}, false)
	var secrets []string
	for i := range 120 {
		q := fmt.Sprintf("HELDOUT-PROMPT-%03d what is the capital of Zembla", i)
		_, err := c.Complete([]context.Context{heldOutCtx, trainCtx}[i%2], userReq(q))
		require.NoError(t, err)
		secrets = append(secrets, q, "answer to "+q)
	}
	scan := func(when string) {
		files := 0
		require.NoError(t, filepath.WalkDir(h.dir, func(p string, d fs.DirEntry, err error) error {
			require.NoError(t, err)
			info, err := d.Info()
			require.NoError(t, err)
			if d.IsDir() {
				require.Equal(t, fs.FileMode(0o700), info.Mode().Perm(), "%s: %s", when, p)
				return nil
			}
			require.Equal(t, fs.FileMode(0o600), info.Mode().Perm(), "%s: %s", when, p)
			b, err := os.ReadFile(p)
			require.NoError(t, err)
			files++
			for _, s := range secrets {
				for _, form := range []string{s, s[:18], s[len(s)-24:]} {
					require.False(t, bytes.Contains(b, []byte(form)), "%s: %s holds %q", when, p, form)
				}
			}
			require.False(t, bytes.Contains(b, []byte("Zembla")), "%s: %s", when, p)
			return nil
		}))
		require.Positive(t, files)
	}
	waitCommitted(t, cache)
	_, err := os.Stat(filepath.Join(h.dir, statedb.File+"-wal"))
	require.NoError(t, err, "the entries sit in the WAL while the database is open")
	scan("open")
	require.NoError(t, cache.Close())
	require.NoError(t, h.db.Close())
	scan("closed")
}

// TestCacheGroupsCommits: one durable commit per at least groupEntries
// entries, or per the group's wait when fewer come; Close flushes.
func TestCacheGroupsCommits(t *testing.T) {
	h := newTestHome(t)
	t.Run("size bound", func(t *testing.T) {
		cache, err := openCache(h.db, "size", h.key, time.Hour) // only the size bound commits
		require.NoError(t, err)
		c := WithCache(&countingClient{}, cache, CacheNamespace{}, false)
		put := func(from, to int) {
			for i := from; i < to; i++ {
				_, err := c.Complete(trainCtx, userReq(fmt.Sprint("q", i)))
				require.NoError(t, err)
			}
		}
		put(0, groupEntries-1)
		time.Sleep(50 * time.Millisecond)
		require.Zero(t, cache.Stats().Commits, "a group short of one entry waits")
		require.Equal(t, groupEntries-1, cache.Len(), "queued entries count and are visible")
		put(groupEntries-1, groupEntries)
		require.Eventually(t, func() bool { return cache.Stats().Commits == 1 }, 5*time.Second, time.Millisecond,
			"the group's last entry commits it")
		put(groupEntries, groupEntries+10)
		time.Sleep(50 * time.Millisecond)
		require.EqualValues(t, 1, cache.Stats().Commits)
		require.NoError(t, cache.Close())
		require.EqualValues(t, 2, cache.Stats().Commits, "Close commits the rest")
		require.Equal(t, groupEntries+10, cache.Len())
	})
	t.Run("time bound", func(t *testing.T) {
		cache, err := OpenCache(h.db, "time", h.key)
		require.NoError(t, err)
		defer cache.Close()
		c := WithCache(&countingClient{}, cache, CacheNamespace{}, false)
		for i := range 3 {
			_, err := c.Complete(trainCtx, userReq(fmt.Sprint("q", i)))
			require.NoError(t, err)
		}
		require.Eventually(t, func() bool { return cache.Stats().Commits == 1 }, 5*time.Second, time.Millisecond,
			"three entries are committed after the group's wait, without Close")
	})
	t.Run("many", func(t *testing.T) {
		cache, err := OpenCache(h.db, "many", h.key)
		require.NoError(t, err)
		c := WithCache(&countingClient{}, cache, CacheNamespace{}, false)
		const n = 1000
		for i := range n {
			_, err := c.Complete(trainCtx, userReq(fmt.Sprint("q", i)))
			require.NoError(t, err)
		}
		require.NoError(t, cache.Close())
		require.LessOrEqual(t, cache.Stats().Commits, int64(n/groupEntries+1))
		require.Zero(t, cache.Stats().WriteErrors)
	})
}

// TestCacheCrash kills a child process that has not closed its cache: every
// entry it had committed survives, it loses at most what was still queued
// (the group not yet committed), and every entry that survives is exactly
// its request's answer.
func TestCacheCrash(t *testing.T) {
	if home := os.Getenv("FAPO_CACHE_CHILD_HOME"); home != "" {
		crashChild(t, home, os.Getenv("FAPO_CACHE_CHILD_MODE"))
		return
	}
	for _, mode := range []string{"paced", "burst"} {
		t.Run(mode, func(t *testing.T) {
			h := newTestHome(t)
			out, err := childCmd(t, "TestCacheCrash", h, mode).CombinedOutput()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "%s", out)
			require.Equal(t, syscall.SIGKILL, ee.Sys().(syscall.WaitStatus).Signal(), "%s", out)
			queued := -1
			for _, line := range strings.Split(string(out), "\n") {
				if rest, ok := strings.CutPrefix(line, "QUEUED "); ok {
					queued, _ = strconv.Atoi(rest)
				}
			}
			require.GreaterOrEqual(t, queued, 0, "%s", out)
			committed := crashEntries - queued // groups commit in order: a prefix

			cache := h.cache(t, h.db, "demo")
			offline := WithCache(&countingClient{}, cache, CacheNamespace{}, true)
			present := 0
			for i := range crashEntries {
				q := fmt.Sprint("crash-", i)
				resp, err := offline.Complete(trainCtx, userReq(q))
				if i < committed {
					require.NoError(t, err, "entry %d was committed before the kill", i)
				}
				if err != nil {
					require.ErrorIs(t, err, ErrCacheMiss)
					continue
				}
				require.Equal(t, i, present, "what survives is a prefix: groups commit in order")
				require.Equal(t, "answer to "+q, resp.Content)
				present++
			}
			require.Zero(t, cache.Stats().Unreadable)
			require.LessOrEqual(t, crashEntries-present, queued, "only what was still queued is lost")
			t.Logf("%s: %d of %d queued at the kill, %d survived", mode, queued, crashEntries, present)
		})
	}
}

const crashEntries = 230

// crashChild writes crashEntries entries, paced like model calls or in a
// burst, reports how many are still queued, and kills itself.
func crashChild(t *testing.T, home, mode string) {
	h := childHome(t, home)
	cache, err := OpenCache(h.db, "demo", h.key)
	require.NoError(t, err)
	c := WithCache(&countingClient{}, cache, CacheNamespace{}, false)
	for i := range crashEntries {
		_, err := c.Complete(trainCtx, userReq(fmt.Sprint("crash-", i)))
		require.NoError(t, err)
		if mode == "paced" {
			time.Sleep(500 * time.Microsecond)
		}
	}
	queued := cache.queued()
	fmt.Printf("QUEUED %d\n", queued)
	_ = os.Stdout.Sync()
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL) // no Close, no deferred flush
	time.Sleep(time.Minute)
}

func TestCacheKey(t *testing.T) {
	base := Request{Model: "m", Messages: []Message{{Role: "user", Content: "hi"}},
		JSONSchema: json.RawMessage(`{"type":"object","properties":{"a":{"type":"string"}}}`),
		Tools:      []ToolDef{{Name: "t", Parameters: json.RawMessage(`{"type": "object", "x": 1.50}`)}}}
	ns := CacheNamespace{Provider: "openai", BaseURL: "u"}
	key := func(ns CacheNamespace, r Request) string {
		k, err := cacheKey(ns, r, 0)
		require.NoError(t, err)
		return string(k)
	}
	k0 := key(ns, base)

	same := base
	same.JSONSchema = json.RawMessage("{\n  \"properties\": {\"a\": {\"type\": \"string\"}},\n  \"type\": \"object\"\n}")
	same.Tools = []ToolDef{{Name: "t", Parameters: json.RawMessage(`{"x":1.50,"type":"object"}`)}}
	require.Equal(t, k0, key(ns, same), "formatting and key order of raw JSON do not split entries")

	differs := map[string]func(*CacheNamespace, *Request){
		"provider": func(n *CacheNamespace, _ *Request) { n.Provider = "sagemaker" },
		"base url": func(n *CacheNamespace, _ *Request) { n.BaseURL = "v" },
		"model":    func(_ *CacheNamespace, r *Request) { r.Model = "m2" },
		"message":  func(_ *CacheNamespace, r *Request) { r.Messages = []Message{{Role: "user", Content: "hi!"}} },
		"role":     func(_ *CacheNamespace, r *Request) { r.Messages = []Message{{Role: "system", Content: "hi"}} },
		"temp":     func(_ *CacheNamespace, r *Request) { r.Params.Temperature = ptr(0.0) },
		"schema":   func(_ *CacheNamespace, r *Request) { r.JSONSchema = json.RawMessage(`{"type":"array"}`) },
		"tools":    func(_ *CacheNamespace, r *Request) { r.Tools = nil },
		"sample":   func(_ *CacheNamespace, r *Request) { r.Sample = 2 },
	}
	for name, mutate := range differs {
		t.Run(name, func(t *testing.T) {
			n, r := ns, base
			mutate(&n, &r)
			require.NotEqual(t, k0, key(n, r))
		})
	}

	rk := func(repeat int) string {
		k, err := cacheKey(ns, base, repeat)
		require.NoError(t, err)
		return string(k)
	}
	require.Equal(t, k0, rk(0), "repeat 0 keeps the key a run without repeats had")
	require.NotEqual(t, rk(1), rk(0), "a repeat is not a cache hit of the first evaluation")
	require.NotEqual(t, rk(1), rk(2))
	s2 := base
	s2.Sample = 1
	require.NotEqual(t, rk(1), key(ns, s2), "repeat 1 is not a vote step's sample 1")

	bad := base
	bad.JSONSchema = json.RawMessage(`{not json`)
	_, err := WithCache(&countingClient{}, openTestCache(t), ns, false).Complete(trainCtx, bad)
	require.ErrorContains(t, err, "cannot build the cache key")
	bad = base
	bad.Tools = []ToolDef{{Name: "t", Parameters: json.RawMessage(`[`)}}
	_, err = cacheKey(ns, bad, 0)
	require.ErrorContains(t, err, "tool t parameters")
}

func TestCacheWriteErrorsDegradeToCalls(t *testing.T) {
	h := newTestHome(t)
	cache, err := OpenCache(h.db, "demo", h.key)
	require.NoError(t, err)
	raw := &countingClient{}
	c := WithCache(raw, cache, CacheNamespace{}, false)
	require.NoError(t, cache.Close())
	resp, err := c.Complete(trainCtx, userReq("q"))
	require.NoError(t, err, "a broken cache costs a call, not the result")
	require.Equal(t, "answer to q", resp.Content)
	require.EqualValues(t, 1, cache.Stats().WriteErrors)

	// The database gone under the writer: Close says what was lost.
	cache, err = OpenCache(h.db, "demo", h.key)
	require.NoError(t, err)
	_, err = WithCache(raw, cache, CacheNamespace{}, false).Complete(trainCtx, userReq("lost"))
	require.NoError(t, err)
	require.NoError(t, cache.wconn.Close())
	err = cache.Close()
	require.ErrorContains(t, err, "1 responses not stored (they will be asked again)")
}

func TestLedger(t *testing.T) {
	l := NewLedger(map[string]Price{"gpt-4o-mini": {InputPerMTok: 0.15, OutputPerMTok: 0.60}})
	paid := Response{Usage: Usage{PromptTokens: 1_000_000, CompletionTokens: 500_000}}
	l.Record("gpt-4o-mini", paid, nil)
	l.Record("gpt-4o-mini", Response{Usage: Usage{PromptTokens: 1_000_000}, CacheHit: true}, nil)
	l.Record("gpt-4o-mini", Response{}, errors.New("boom"))
	l.Record("llama-local", Response{Usage: Usage{PromptTokens: 100, CompletionTokens: 10}}, nil)
	l.Record("judge", Response{CacheHit: true}, nil)

	r := l.Snapshot()
	require.Len(t, r.Models, 3)
	require.Equal(t, "gpt-4o-mini", r.Models[0].Model)
	g := r.Models[0]
	require.Equal(t, 1, g.Calls)
	require.Equal(t, 1, g.CacheHits)
	require.Equal(t, 1, g.Errors)
	require.Equal(t, 1_000_000, g.PromptTokens, "cache hits add no tokens")
	require.InDelta(t, 0.15+0.30, g.USD, 1e-9)
	require.False(t, g.Unpriced)

	require.Equal(t, "judge", r.Models[1].Model)
	require.False(t, r.Models[1].Unpriced, "a model answered only from cache cost nothing, priced or not")
	require.True(t, r.Models[2].Unpriced)
	require.Zero(t, r.Models[2].USD)
	require.Equal(t, []string{"llama-local"}, r.Unpriced)

	require.InDelta(t, 0.45, r.USD, 1e-9)
	require.Equal(t, 2, r.Calls)
	require.Equal(t, 2, r.CacheHits)
	require.Equal(t, 1, r.Errors)
	require.Equal(t, 1_000_100, r.PromptTokens)
	require.Equal(t, 500_010, r.CompletionTokens)
}

func TestLedgerConcurrent(t *testing.T) {
	l := NewLedger(nil)
	c := WithUsage(&countingClient{}, l, "m")
	done := make(chan struct{})
	for range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 50 {
				_, _ = c.Complete(context.Background(), userReq("x"))
			}
		}()
	}
	for range 8 {
		<-done
	}
	r := l.Snapshot()
	require.Equal(t, 400, r.Calls)
	require.Equal(t, 400*10, r.PromptTokens)
}

func TestStackEndToEnd(t *testing.T) {
	fake := fakellm.New(fakellm.FailFirst(1, fakellm.RateLimited("0")))
	defer fake.Close()
	cache := openTestCache(t)
	c := stackFor(t, fake, func(s *Spec, o *StackOptions) {
		s.RequestsPerMinute, s.TokensPerMinute = 60_000, 6_000_000
		o.Cache = cache
		o.Prices = map[string]Price{"gpt-4o-mini": {InputPerMTok: 1, OutputPerMTok: 2}}
	})
	ledger := LedgerOf(c)
	require.NotNil(t, ledger)

	r1, err := c.Complete(trainCtx, userReq("hello"))
	require.NoError(t, err)
	require.False(t, r1.CacheHit)
	r2, err := c.Complete(trainCtx, userReq("hello"))
	require.NoError(t, err)
	require.True(t, r2.CacheHit)
	require.Equal(t, r1.Content, r2.Content)
	require.Equal(t, 2, fake.Count(), "one 429, one answer, then the cache")
	require.Equal(t, "gpt-4o-mini", fake.Requests()[1].Chat.Model, "an empty Request.Model goes to spec.Name")

	rep := ledger.Snapshot()
	require.Equal(t, 1, rep.Calls)
	require.Equal(t, 1, rep.CacheHits)
	require.Positive(t, rep.USD)
	require.Nil(t, LedgerOf(ClientFunc(func(context.Context, Request) (Response, error) { return Response{}, nil })))
}

func TestStackOfflineWithoutKey(t *testing.T) {
	cache := openTestCache(t)
	spec := Spec{Provider: "openai", Name: "gpt-4o-mini"}
	_, err := Stack(spec, StackOptions{Options: Options{Getenv: env()}})
	require.ErrorContains(t, err, "OPENAI_API_KEY", "online, a missing key is an error up front")

	c, err := Stack(spec, StackOptions{Options: Options{Getenv: env()}, Cache: cache, Offline: true})
	require.NoError(t, err, "offline replay needs no key")
	_, err = c.Complete(trainCtx, userReq("q"))
	require.ErrorIs(t, err, ErrCacheMiss)
}

func TestCacheConcurrentWritesFlushOnClose(t *testing.T) {
	h := newTestHome(t)
	cache, err := OpenCache(h.db, "demo", h.key)
	require.NoError(t, err)
	raw := &countingClient{}
	c := WithCache(raw, cache, CacheNamespace{}, false)
	const workers, per = 16, 150 // 2,400 writes: more than the queue holds
	errs := make(chan error, workers)
	for w := range workers {
		go func() {
			for i := range per {
				_, err := c.Complete(trainCtx, userReq(fmt.Sprintf("q-%d-%d", w, i)))
				if err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range workers {
		require.NoError(t, <-errs)
	}
	require.Equal(t, workers*per, cache.Len())
	require.NoError(t, cache.Close())

	cache = h.cache(t, h.db, "demo")
	require.Equal(t, workers*per, cache.Len(), "everything queued was written by Close")
	require.Zero(t, cache.Stats().WriteErrors)
}

// TestCacheSnapshotNeverMissesItsOwnEntries: lookups read a snapshot up
// to snapshotAge old, so an entry this process committed after the
// snapshot began is not in it; it must then still be found among the
// queued ones. Each request is asked, its entry committed (commits wait
// 1 ms here), and asked again inside the same snapshot: it reaches the
// model once.
func TestCacheSnapshotNeverMissesItsOwnEntries(t *testing.T) {
	h := newTestHome(t)
	cache, err := openCache(h.db, "demo", h.key, time.Millisecond)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cache.Close() })
	raw := &countingClient{}
	c := WithCache(raw, cache, CacheNamespace{}, false)
	const n = 200
	for i := range n {
		q := fmt.Sprint("own-", i)
		_, err := c.Complete(trainCtx, userReq(q)) // opens a snapshot, then queues the answer
		require.NoError(t, err)
		waitCommitted(t, cache)
		resp, err := c.Complete(trainCtx, userReq(q))
		require.NoError(t, err)
		require.True(t, resp.CacheHit, q)
	}
	require.EqualValues(t, n, raw.n.Load(), "a request this process answered is a hit from then on")
	require.GreaterOrEqual(t, cache.Stats().Commits, int64(n))
}

// TestCacheSeesOtherProcessesEntries: an entry another process commits is
// a hit here within a snapshot's age, without reopening.
func TestCacheSeesOtherProcessesEntries(t *testing.T) {
	h := newTestHome(t)
	mine := h.cache(t, h.db, "demo")
	theirs := h.cache(t, h.open(t), "demo")
	raw := &countingClient{}
	c := WithCache(raw, mine, CacheNamespace{}, false)
	_, err := c.Complete(trainCtx, userReq("warm up")) // a snapshot is open now
	require.NoError(t, err)

	_, err = WithCache(&countingClient{}, theirs, CacheNamespace{}, false).Complete(trainCtx, userReq("theirs"))
	require.NoError(t, err)
	waitCommitted(t, theirs)
	require.Eventually(t, func() bool {
		resp, err := WithCache(&countingClient{}, mine, CacheNamespace{}, true).Complete(trainCtx, userReq("theirs"))
		return err == nil && resp.CacheHit
	}, 10*snapshotAge, time.Millisecond)
}

// TestCacheSnapshotEndsWhenIdle: the lookups' read transaction does not
// outlive snapshotAge of idleness, so an idle server never holds back the
// database's checkpoints.
func TestCacheSnapshotEndsWhenIdle(t *testing.T) {
	cache := openTestCache(t)
	_, _ = WithCache(&countingClient{}, cache, CacheNamespace{}, false).Complete(trainCtx, userReq("x"))
	isOpen := func() bool {
		cache.reader.mu.Lock()
		defer cache.reader.mu.Unlock()
		return cache.reader.open
	}
	require.True(t, isOpen())
	require.Eventually(t, func() bool { return !isOpen() }, 20*snapshotAge, time.Millisecond)
}

// TestCacheMigratesKeyOrderedTable: entries of the cache's first table,
// ordered by key, are moved into the commit-ordered one when a cache is
// opened, and answer as before.
func TestCacheMigratesKeyOrderedTable(t *testing.T) {
	h := newTestHome(t)
	old := h.cache(t, h.db, "demo")
	raw := &countingClient{}
	for _, q := range []string{"a", "b", "c"} {
		_, err := WithCache(raw, old, CacheNamespace{}, false).Complete(trainCtx, userReq(q))
		require.NoError(t, err)
	}
	require.NoError(t, old.Close())
	for _, stmt := range []string{
		`CREATE TABLE response_cache (tenant TEXT NOT NULL, scope TEXT NOT NULL, key BLOB NOT NULL, val BLOB NOT NULL,
			PRIMARY KEY (tenant, scope, key)) WITHOUT ROWID`,
		`INSERT INTO response_cache SELECT tenant, scope, key, val FROM cached_responses`,
		`DELETE FROM cached_responses`,
	} {
		_, err := h.db.SQL().Exec(stmt)
		require.NoError(t, err)
	}

	cache := h.cache(t, h.db, "demo")
	for _, q := range []string{"a", "b", "c"} {
		resp, err := WithCache(raw, cache, CacheNamespace{}, true).Complete(trainCtx, userReq(q))
		require.NoError(t, err, q)
		require.Equal(t, "answer to "+q, resp.Content)
	}
	var tables int
	require.NoError(t, h.db.SQL().QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE name = 'response_cache'`).Scan(&tables))
	require.Zero(t, tables, "the old table is gone")
	_, err := WithCache(raw, cache, CacheNamespace{}, false).Complete(trainCtx, userReq("d"))
	require.NoError(t, err)
	require.NoError(t, cache.Close())
	require.Equal(t, 4, cache.Len())
}

// TestCacheKeyPrefixSharedIsAMiss: the in-memory index is keyed by a
// prefix of the cache key; a request whose prefix leads to another
// request's row is a miss, decided by the row's whole key before any
// value is opened.
func TestCacheKeyPrefixSharedIsAMiss(t *testing.T) {
	cache := openTestCache(t)
	raw := &countingClient{}
	_, err := WithCache(raw, cache, CacheNamespace{}, false).Complete(trainCtx, userReq("a"))
	require.NoError(t, err)
	waitCommitted(t, cache)
	ka, err := cacheKey(CacheNamespace{}, userReq("a"), 0)
	require.NoError(t, err)
	kb, err := cacheKey(CacheNamespace{}, userReq("b"), 0)
	require.NoError(t, err)
	pa, _ := keyPrefix(ka)
	pb, _ := keyPrefix(kb)
	cache.mu.Lock()
	cache.index[scopeTrain][pb] = cache.index[scopeTrain][pa] // as if b's prefix were a's
	cache.mu.Unlock()

	_, err = WithCache(raw, cache, CacheNamespace{}, true).Complete(trainCtx, userReq("b"))
	require.ErrorIs(t, err, ErrCacheMiss)
	require.Zero(t, cache.Stats().Unreadable, "the row's key differs: nothing is opened")
}

// TestManyCachesLeaveTheSharedPool: a server keeps one cache open per
// tenant it has served; their connections, held for the caches' lives,
// are their own, so that any number of tenants leaves the database's
// shared connections to everything else.
func TestManyCachesLeaveTheSharedPool(t *testing.T) {
	h := newTestHome(t)
	done := make(chan error, 1)
	go func() {
		for i := range 12 {
			c, err := OpenCache(h.db, fmt.Sprint("tenant-", i), h.key)
			if err != nil {
				done <- err
				return
			}
			t.Cleanup(func() { _ = c.Close() })
			if _, err := WithCache(&countingClient{}, c, CacheNamespace{}, false).Complete(trainCtx, userReq("q")); err != nil {
				done <- err
				return
			}
		}
		done <- h.db.RecordRun(context.Background(), statedb.RunRecord{Tenant: "t", ID: "r1", Split: "train", Variant: "v0000"})
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("twelve open caches starved the shared pool")
	}
}
