package run

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
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
// store's for held-out runs). Every file is reached through an os.Root of
// the directory, refusing links and special files: a run directory the
// agent planted, or linked into the sealed store, is never followed. Which
// runs exist is not decided here: the server's run index (statedb) says
// which ids it recorded, and callers look an id up there first.
type Store struct {
	dir  string
	perm fs.FileMode // file mode of run artifacts; 0600 in the sealed store
	// aead seals every case line (held-out runs): their ids and per-case
	// scores are at rest only as AES-GCM ciphertext.
	aead cipher.AEAD
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

// NewSealedStore returns a private store whose case logs are encrypted with
// AES-256-GCM under key (32 bytes, kept in the sealed store): the log of a
// held-out run holds case ids and per-case scores, which compare needs and
// nobody else may read, even from a copy of $FAPO_HOME. The summary holds
// aggregates only and stays plain, readable by the owner alone.
func NewSealedStore(dir string, key []byte) (*Store, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("run store key is %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	s := NewStore(dir, true)
	s.aead = aead
	return s, nil
}

// Dir returns the root of the store.
func (s *Store) Dir() string { return s.dir }

func (s *Store) dirPerm() fs.FileMode {
	if s.perm == 0o600 {
		return 0o700
	}
	return 0o755
}

// root opens the store's directory; create makes it first when missing.
func (s *Store) root(create bool) (*os.Root, error) {
	if create {
		if err := os.MkdirAll(s.dir, s.dirPerm()); err != nil {
			return nil, fmt.Errorf("create runs directory: %w", err)
		}
	}
	r, err := fsx.OpenRoot(s.dir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("runs directory: %w", err)
	}
	return r, err
}

// newRunDir allocates a fresh run id. The id embeds the time and random bits
// and the directory is created exclusively, so an id is never reused even
// when two runs start in the same second.
func (s *Store) newRunDir(now time.Time) (string, error) {
	root, err := s.root(true)
	if err != nil {
		return "", err
	}
	defer root.Close()
	for range 10 {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", err
		}
		id := "r" + now.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
		err := root.Mkdir(id, s.dirPerm())
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("create run directory: %w", err)
		}
	}
	return "", errors.New("could not allocate a unique run id after 10 tries")
}

// removeEmpty takes back a run directory that never held a case.
func (s *Store) removeEmpty(id string) {
	if root, err := s.root(false); err == nil {
		_ = root.Remove(id) // fails harmlessly unless the directory is empty
		root.Close()
	}
}

func (s *Store) path(id, name string) (string, error) {
	if !ValidID(id) {
		return "", fmt.Errorf("%q is not a run id (run ids look like r20261123T101500Z-a1b2c3)", id)
	}
	if name == "" {
		return id, nil
	}
	return id + "/" + name, nil
}

// Exists reports whether run id exists in the store as a directory (a link
// named like a run is not one).
func (s *Store) Exists(id string) bool {
	p, err := s.path(id, "")
	if err != nil {
		return false
	}
	root, err := s.root(false)
	if err != nil {
		return false
	}
	defer root.Close()
	fi, err := root.Lstat(p)
	return err == nil && fi.IsDir()
}

// Summary reads the summary of run id.
func (s *Store) Summary(id string) (*Summary, error) {
	var sum Summary
	err := s.readRunJSON(id, summaryFile, &sum,
		fmt.Sprintf("run %s has no summary yet: it is still running, or was interrupted and can be resumed", id))
	if err != nil {
		return nil, err
	}
	return &sum, nil
}

// openRunFile opens file name of run id through the runs root, refusing a
// planted link. exists reports, when the file is missing, whether the run
// itself is there (a run still going, or interrupted).
func (s *Store) openRunFile(id, name string) (f *os.File, exists bool, err error) {
	p, err := s.path(id, name)
	if err != nil {
		return nil, false, err
	}
	root, err := s.root(false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("run %s does not exist", id)
	}
	if err != nil {
		return nil, false, err
	}
	defer root.Close()
	f, err = fsx.Open(root, p)
	if errors.Is(err, fs.ErrNotExist) {
		if fi, lerr := root.Lstat(id); lerr == nil && fi.IsDir() {
			return nil, true, err
		}
		return nil, false, fmt.Errorf("run %s does not exist", id)
	}
	return f, true, err
}

// readRunJSON decodes file name of run id into v. missing is the error
// when the run exists but the file does not.
func (s *Store) readRunJSON(id, name string, v any, missing string) error {
	f, exists, err := s.openRunFile(id, name)
	if errors.Is(err, fs.ErrNotExist) && exists {
		return errors.New(missing)
	}
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	b, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("run %s: %s is corrupt: %w", id, name, err)
	}
	return nil
}

// List returns the summaries of every finished run, newest first. Entries
// that are not plain directories are skipped; callers that answer an agent
// keep only the runs their index recorded.
func (s *Store) List() ([]*Summary, error) {
	root, err := s.root(false)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	entries, err := fs.ReadDir(root.FS(), ".")
	root.Close()
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
	f, exists, err := s.openRunFile(id, casesFile)
	if errors.Is(err, fs.ErrNotExist) && exists {
		return nil // no case finished yet
	}
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	r := bufio.NewReaderSize(f, 1<<20)
	for {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var cr CaseResult
			jerr := s.decodeLine(id, bytes.TrimSpace(line), &cr)
			if jerr != nil {
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

// CasesBytes is run id's case log as it is on disk, read once, with its
// sha256: a caller that must not trust the workspace checks the hash
// against one it kept, then decodes these same bytes (DecodeCases).
func (s *Store) CasesBytes(id string) (raw []byte, sum [sha256.Size]byte, err error) {
	f, exists, err := s.openRunFile(id, casesFile)
	if errors.Is(err, fs.ErrNotExist) && exists {
		return nil, sha256.Sum256(nil), nil // no case finished yet
	}
	if err != nil {
		return nil, sum, err
	}
	defer func() { _ = f.Close() }()
	raw, err = io.ReadAll(f)
	if err != nil {
		return nil, sum, err
	}
	return raw, sha256.Sum256(raw), nil
}

// DecodeCases decodes a case log read by CasesBytes, as Cases does.
func (s *Store) DecodeCases(id string, raw []byte) ([]CaseResult, error) {
	var out []CaseResult
	for len(raw) > 0 {
		line, rest, found := bytes.Cut(raw, []byte{'\n'})
		raw = rest
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		var cr CaseResult
		if err := s.decodeLine(id, line, &cr); err != nil {
			if !found { // torn final line
				break
			}
			return nil, fmt.Errorf("run %s: corrupt case line: %w", id, err)
		}
		out = append(out, cr)
	}
	return out, nil
}

// encodeLine is one line of a case log, without its newline: JSON, or for
// a sealed store base64 of nonce‖AES-GCM(JSON) bound to the run id, so a
// line cannot be moved into another run unnoticed.
func (s *Store) encodeLine(id string, cr *CaseResult) ([]byte, error) {
	b, err := json.Marshal(cr)
	if err != nil || s.aead == nil {
		return b, err
	}
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(b)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	sealed := s.aead.Seal(nonce, nonce, b, []byte(id))
	out := make([]byte, base64.StdEncoding.EncodedLen(len(sealed)))
	base64.StdEncoding.Encode(out, sealed)
	return out, nil
}

func (s *Store) decodeLine(id string, line []byte, cr *CaseResult) error {
	if s.aead != nil {
		if len(line) > 0 && line[0] == '{' {
			return errors.New("a plaintext line in a sealed store (written before held-out runs were encrypted, or planted): evaluate the variant on validation again")
		}
		raw := make([]byte, base64.StdEncoding.DecodedLen(len(line)))
		n, err := base64.StdEncoding.Decode(raw, line)
		if err != nil {
			return fmt.Errorf("not a sealed case line: %w", err)
		}
		raw = raw[:n]
		ns := s.aead.NonceSize()
		if len(raw) < ns+s.aead.Overhead() {
			return errors.New("sealed case line too short")
		}
		if line, err = s.aead.Open(nil, raw[:ns], raw[ns:], []byte(id)); err != nil {
			return errors.New("sealed case line does not decrypt with this store's key (it was altered or moved from another run)")
		}
	}
	return json.Unmarshal(line, cr)
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
	root, err := s.root(false)
	if err != nil {
		return err
	}
	defer root.Close()
	return fsx.WriteFileAtomicIn(root, p, append(b, '\n'), s.perm)
}

// caseLog appends case results to a run's cases.jsonl. Lines are written
// in groups, whole lines only, at most caseLogWait after the first of a
// group or once caseLogGroup bytes are waiting, whichever is first: a
// write per line was as many system calls as the model calls themselves.
// A crash loses at most the last group (the cases resume runs again) and
// tears at most its last line, which the next open cuts.
type caseLog struct {
	mu    sync.Mutex
	f     *os.File
	id    string
	store *Store
	buf   []byte      // whole lines not written yet
	timer *time.Timer // armed while buf holds lines
	err   error       // of a group's write, reported by the next append or close
}

const (
	caseLogGroup = 64 << 10
	caseLogWait  = 50 * time.Millisecond
)

func (s *Store) openCaseLog(id string) (*caseLog, error) {
	p, err := s.path(id, casesFile)
	if err != nil {
		return nil, err
	}
	root, err := s.root(false)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	if err := truncateTornTail(root, p); err != nil {
		return nil, err
	}
	f, err := fsx.OpenFile(root, p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, s.perm)
	if err != nil {
		return nil, fmt.Errorf("open case log: %w", err)
	}
	l := &caseLog{f: f, id: id, store: s}
	l.timer = time.AfterFunc(time.Hour, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.flush()
	})
	l.timer.Stop()
	return l, nil
}

// truncateTornTail cuts a final line without its newline, left by a crash
// mid-write, so that appending on resume starts on a fresh line.
func truncateTornTail(root *os.Root, name string) error {
	f, err := fsx.OpenFile(root, name, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
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
	b, err := l.store.encodeLine(l.id, cr)
	if err != nil {
		return fmt.Errorf("encode a case result: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return l.err
	}
	if len(l.buf) == 0 {
		l.timer.Reset(caseLogWait)
	}
	l.buf = append(append(l.buf, b...), '\n')
	if len(l.buf) >= caseLogGroup {
		l.flush()
	}
	return l.err
}

// flush writes the waiting lines in one write. Called with l.mu held.
func (l *caseLog) flush() {
	l.timer.Stop()
	if len(l.buf) == 0 || l.err != nil {
		return
	}
	_, l.err = l.f.Write(l.buf)
	l.buf = l.buf[:0]
}

func (l *caseLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flush()
	if l.err != nil {
		_ = l.f.Close()
		return l.err
	}
	if err := l.f.Sync(); err != nil {
		_ = l.f.Close()
		return err
	}
	return l.f.Close()
}

// Meta is what a run executes, written before its first case: a run
// resumes only as what it started as, so one run never mixes variants,
// splits, chains or numbers of repeats.
type Meta struct {
	Tenant  string            `json:"tenant"`
	Variant string            `json:"variant"`
	Split   string            `json:"split"`
	Chain   string            `json:"chain"`
	Labels  map[string]string `json:"labels,omitempty"`
	// Repeats is how many times each case is evaluated, when more than
	// once: a run resumed with another count would mix two designs.
	Repeats int       `json:"repeats,omitempty"`
	Started time.Time `json:"started"`
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
	root, err := s.root(true)
	if err != nil {
		return err
	}
	defer root.Close()
	return fsx.WriteFileAtomicIn(root, p, append(b, '\n'), s.perm)
}

// Meta reads what run id executes.
func (s *Store) Meta(id string) (*Meta, error) {
	var m Meta
	err := s.readRunJSON(id, metaFile, &m,
		fmt.Sprintf("run %s records no run.json (an older fapo started it, or it was killed before its first case): start a new run", id))
	if err != nil {
		return nil, err
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
	root, err := s.root(false)
	if err != nil {
		return nil, fmt.Errorf("lock run %s: %w", id, err)
	}
	defer root.Close()
	f, err := fsx.OpenFile(root, p, os.O_CREATE|os.O_RDWR, s.perm)
	if err != nil {
		return nil, fmt.Errorf("lock run %s: %w", id, err)
	}
	ok, err := tryLock(f)
	if err != nil || !ok {
		_ = f.Close()
		if err != nil {
			return nil, fmt.Errorf("lock run %s: %w", id, err)
		}
		return nil, ErrRunBusy
	}
	return &runLock{f: f}, nil
}

// release drops the lock; closing the lock file is what releases it, and
// it holds no data to lose.
func (l *runLock) release() { _ = l.f.Close() }

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
	p, err := s.path(id, casesFile)
	if err != nil {
		return err
	}
	root, err := s.root(false)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.Remove(sp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("run %s: remove the earlier summary: %w", id, err)
	}
	in, err := fsx.Open(root, p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer func() { _ = in.Close() }()
	tmp := id + "/." + casesFile + ".tmp-" + randomID()
	out, err := root.OpenFile(tmp, os.O_CREATE|os.O_EXCL|os.O_WRONLY, s.perm)
	if err != nil {
		return fmt.Errorf("run %s: rewrite case log: %w", id, err)
	}
	defer func() { _ = root.Remove(tmp) }() // no-op after the rename
	w := bufio.NewWriterSize(out, 1<<20)
	r := bufio.NewReaderSize(in, 1<<20)
	for {
		line, rerr := r.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' { // a torn tail is dropped
			var cr CaseResult
			if err := s.decodeLine(id, line[:len(line)-1], &cr); err != nil {
				_ = out.Close()
				return fmt.Errorf("run %s: corrupt case line: %w", id, err)
			}
			if cr.Cause == "" { // errored cases leave the log and run again
				if _, err := w.Write(line); err != nil {
					_ = out.Close()
					return err
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			_ = out.Close()
			return rerr
		}
	}
	if err := w.Flush(); err != nil {
		_ = out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		_ = out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return root.Rename(tmp, p)
}

// randomID names a temporary file that no other writer will pick.
func randomID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
