package run

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"time"

	"github.com/fapo-dev/fapo/engine/internal/fsx"
)

// Run directory layout.
const (
	casesFile   = "cases.jsonl"
	summaryFile = "summary.json"
	metaFile    = "run.json"
	lockFile    = "lock"
)

var runIDPattern = regexp.MustCompile(`^r[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$`)

// ValidID reports whether id has the form of a run id, so that an id from a
// caller can never name a path outside the runs directory.
func ValidID(id string) bool { return runIDPattern.MatchString(id) }

// Store is a directory of runs (a tenant's runs/ for train runs, the sealed
// store's for held-out runs).
type Store struct {
	dir  string
	perm fs.FileMode // file mode of run artifacts; 0600 in the sealed store
}

// NewStore returns the run store rooted at dir. Held-out runs pass
// private=true so their artifacts are readable by the owner only.
func NewStore(dir string, private bool) *Store {
	perm := fs.FileMode(0o644)
	if private {
		perm = 0o600
	}
	return &Store{dir: dir, perm: perm}
}

// Dir returns the root of the store.
func (s *Store) Dir() string { return s.dir }

// newRunDir allocates a fresh run id. The id embeds the time and random bits
// and the directory is created exclusively, so an id is never reused even
// when two runs start in the same second.
func (s *Store) newRunDir(now time.Time) (string, error) {
	dirPerm := fs.FileMode(0o755)
	if s.perm == 0o600 {
		dirPerm = 0o700
	}
	if err := os.MkdirAll(s.dir, dirPerm); err != nil {
		return "", fmt.Errorf("create runs directory: %w", err)
	}
	for range 10 {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		id := "r" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
		err := os.Mkdir(filepath.Join(s.dir, id), dirPerm)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("create run directory: %w", err)
		}
	}
	return "", errors.New("could not allocate a unique run id after 10 tries")
}

func (s *Store) path(id, name string) (string, error) {
	if !ValidID(id) {
		return "", fmt.Errorf("%q is not a run id (run ids look like r20261123T101500Z-a1b2c3)", id)
	}
	return filepath.Join(s.dir, id, name), nil
}

// Exists reports whether run id exists in the store.
func (s *Store) Exists(id string) bool {
	p, err := s.path(id, "")
	if err != nil {
		return false
	}
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// Summary reads the summary of run id.
func (s *Store) Summary(id string) (*Summary, error) {
	p, err := s.path(id, summaryFile)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		if s.Exists(id) {
			return nil, fmt.Errorf("run %s has no summary yet: it is still running, or was interrupted and can be resumed", id)
		}
		return nil, fmt.Errorf("run %s does not exist", id)
	}
	if err != nil {
		return nil, err
	}
	var sum Summary
	if err := json.Unmarshal(b, &sum); err != nil {
		return nil, fmt.Errorf("run %s: summary.json is corrupt: %w", id, err)
	}
	return &sum, nil
}

// List returns the summaries of every finished run, newest first.
func (s *Store) List() ([]*Summary, error) {
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Summary
	for _, e := range entries {
		if !e.IsDir() || !ValidID(e.Name()) {
			continue
		}
		if sum, err := s.Summary(e.Name()); err == nil {
			out = append(out, sum)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RunID > out[j].RunID })
	return out, nil
}

// Cases streams the case results of run id in completion order. A torn last
// line (a crash mid-write) is skipped: that case simply runs again on resume.
func (s *Store) Cases(id string, fn func(CaseResult) error) error {
	p, err := s.path(id, casesFile)
	if err != nil {
		return err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		if s.Exists(id) {
			return nil
		}
		return fmt.Errorf("run %s does not exist", id)
	}
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var cr CaseResult
			if jerr := json.Unmarshal(line, &cr); jerr != nil {
				if err == io.EOF { // torn final line
					return nil
				}
				return fmt.Errorf("run %s: corrupt case line: %w", id, jerr)
			}
			if ferr := fn(cr); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

func (s *Store) writeSummary(sum *Summary) error {
	p, err := s.path(sum.RunID, summaryFile)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(sum, "", "  ")
	if err != nil {
		return err
	}
	return fsx.WriteFileAtomic(p, append(b, '\n'), s.perm)
}

// caseLog appends case results to a run's cases.jsonl, one write per line so
// a crash can tear at most the last line.
type caseLog struct {
	mu sync.Mutex
	f  *os.File
}

func (s *Store) openCaseLog(id string) (*caseLog, error) {
	p, err := s.path(id, casesFile)
	if err != nil {
		return nil, err
	}
	if err := truncateTornTail(p); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, s.perm)
	if err != nil {
		return nil, fmt.Errorf("open case log: %w", err)
	}
	return &caseLog{f: f}, nil
}

// truncateTornTail cuts a final line without its newline, left by a crash
// mid-write, so that appending on resume starts on a fresh line.
func truncateTornTail(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	// Scan backwards from the end for the last newline; the log may be large.
	end := fi.Size()
	buf := make([]byte, 64<<10)
	for pos := end; pos > 0; {
		n := int64(len(buf))
		if pos < n {
			n = pos
		}
		pos -= n
		if _, err := f.ReadAt(buf[:n], pos); err != nil {
			return err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			if pos+int64(i)+1 == end {
				return nil // ends cleanly
			}
			return f.Truncate(pos + int64(i) + 1)
		}
	}
	return f.Truncate(0)
}

func (l *caseLog) append(cr *CaseResult) error {
	b, err := json.Marshal(cr)
	if err != nil {
		return fmt.Errorf("encode a case result: %w", err)
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err = l.f.Write(b)
	return err
}

func (l *caseLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.f.Sync(); err != nil {
		l.f.Close()
		return err
	}
	return l.f.Close()
}

// Meta is what a run executes, written before its first case: a run
// resumes only as what it started as, so one run never mixes variants,
// splits or chains.
type Meta struct {
	Tenant  string            `json:"tenant"`
	Variant string            `json:"variant"`
	Split   string            `json:"split"`
	Chain   string            `json:"chain"`
	Labels  map[string]string `json:"labels,omitempty"`
	Started time.Time         `json:"started"`
}

func (s *Store) writeMeta(id string, m *Meta) error {
	p, err := s.path(id, metaFile)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return fsx.WriteFileAtomic(p, append(b, '\n'), s.perm)
}

// Meta reads what run id executes.
func (s *Store) Meta(id string) (*Meta, error) {
	p, err := s.path(id, metaFile)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		if s.Exists(id) {
			return nil, fmt.Errorf("run %s records no run.json (an older fapo started it, or it was killed before its first case): start a new run", id)
		}
		return nil, fmt.Errorf("run %s does not exist", id)
	}
	if err != nil {
		return nil, err
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("run %s: run.json is corrupt: %w", id, err)
	}
	return &m, nil
}

// runLock is a run's exclusive lock, held while the run executes.
type runLock struct{ f *os.File }

// lock takes run id's lock; ErrRunBusy when another process (or another
// run in this one) holds it.
func (s *Store) lock(id string) (*runLock, error) {
	p, err := s.path(id, lockFile)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, s.perm)
	if err != nil {
		return nil, fmt.Errorf("lock run %s: %w", id, err)
	}
	ok, err := tryLock(f)
	if err != nil || !ok {
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("lock run %s: %w", id, err)
		}
		return nil, ErrRunBusy
	}
	return &runLock{f: f}, nil
}

func (l *runLock) release() { l.f.Close() }

// ErrRunBusy says another process is executing the run.
var ErrRunBusy = errors.New("another process is executing this run right now")

// Resumable returns the newest run that match accepts and that did not
// finish as a result: interrupted (no summary) or with errored cases, and
// not being executed by another process. ok is false when there is none.
func (s *Store) Resumable(match func(*Meta) bool) (id string, ok bool, err error) {
	entries, err := os.ReadDir(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	for i := len(entries) - 1; i >= 0; i-- { // ReadDir sorts by name: ids sort by time
		e := entries[i]
		if !e.IsDir() || !ValidID(e.Name()) {
			continue
		}
		m, err := s.Meta(e.Name())
		if err != nil || !match(m) {
			continue
		}
		if sum, err := s.Summary(e.Name()); err == nil && sum.Errored == 0 {
			continue
		}
		l, err := s.lock(e.Name())
		if err != nil {
			continue
		}
		l.release()
		return e.Name(), true, nil
	}
	return "", false, nil
}

// prepareResume readies run id to continue: the summary of the earlier
// attempt goes (the run is unfinished again), and errored cases leave the
// log so they run again, which also keeps one line per case. The log is
// rewritten through a temporary file and a rename, so a crash leaves the
// old log or the new one.
func (s *Store) prepareResume(id string) error {
	sp, err := s.path(id, summaryFile)
	if err != nil {
		return err
	}
	if err := os.Remove(sp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("run %s: remove the earlier summary: %w", id, err)
	}
	p, err := s.path(id, casesFile)
	if err != nil {
		return err
	}
	in, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.CreateTemp(filepath.Dir(p), "."+casesFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("run %s: rewrite case log: %w", id, err)
	}
	tmp := out.Name()
	defer os.Remove(tmp) // no-op after the rename
	w := bufio.NewWriterSize(out, 1<<20)
	r := bufio.NewReaderSize(in, 1<<20)
	dropped := 0
	for {
		line, rerr := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' { // a torn tail is dropped
			var probe struct {
				Cause string `json:"error_cause"`
			}
			if err := json.Unmarshal(line, &probe); err != nil {
				out.Close()
				return fmt.Errorf("run %s: corrupt case line: %w", id, err)
			}
			if probe.Cause != "" {
				dropped++
			} else if _, err := w.Write(line); err != nil {
				out.Close()
				return err
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			out.Close()
			return rerr
		}
	}
	if err := w.Flush(); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp, s.perm); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}
