// Package session keeps the books of an optimization session: the immutable
// scope contract the user agreed to, an append-only journal of everything
// that happened, the state derived by replaying that journal (budget used,
// incumbent, validation history, escalation counters), the escalation policy
// that gates proposal levels, and the statistics that decide whether a
// candidate beats the incumbent. Everything is on disk, so a restarted
// server resumes exactly where it stopped.
package session

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Kind is what a journal entry records.
type Kind string

// Journal entry kinds.
const (
	KindSessionStarted Kind = "session_started"
	KindProposed       Kind = "proposed"
	KindReviewed       Kind = "reviewed"
	KindEvaluated      Kind = "evaluated"
	KindAttributed     Kind = "attributed"
	KindCharged        Kind = "charged"
	KindSpent          Kind = "spent"
	KindAccepted       Kind = "accepted"
	KindRejected       Kind = "rejected"
	KindTampered       Kind = "tampered"
	KindBudgetRefused  Kind = "budget_refused"
	KindLevelRefused   Kind = "level_refused"
	KindFinalRun       Kind = "final_run"
)

// Entry is one line of journal.jsonl.
type Entry struct {
	// Seq numbers entries 1, 2, 3… without gaps; a gap or a repeat means the
	// journal was edited.
	Seq     int64          `json:"seq"`
	Time    time.Time      `json:"time"`
	Kind    Kind           `json:"kind"`
	Session string         `json:"session,omitempty"`
	Variant string         `json:"variant,omitempty"`
	Data    map[string]any `json:"data,omitempty"`
}

// ReadReport says what Read found besides the entries.
type ReadReport struct {
	Entries int
	// TornLine is the line number of an incomplete last line, 0 when there is
	// none. A crash in the middle of an append leaves one; it was never
	// acknowledged, so it is ignored (and moved aside by the next append).
	TornLine  int
	TornBytes int
}

// Journal is an append-only JSON-lines file. Every append is fsynced before
// it returns, and appends from several processes never interleave: writers
// hold an exclusive flock, readers a shared one.
type Journal struct {
	path string
	now  func() time.Time

	mu sync.Mutex
	f  *os.File
	// entries caches what has been parsed of the file, up to size bytes; a
	// growth of the file by another process is read incrementally.
	entries []Entry
	size    int64
	torn    []byte
}

// OpenJournal opens (creating it if needed) the journal at path.
func OpenJournal(path string) (*Journal, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open journal: %w", err)
	}
	return &Journal{path: path, f: f, now: time.Now}, nil
}

// Path is the journal file.
func (j *Journal) Path() string { return j.path }

// Close releases the file.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.f.Close()
}

// Append writes e with the next sequence number and, when e.Time is zero,
// the current time, and returns the entry as stored.
func (j *Journal) Append(e Entry) (Entry, error) {
	var out Entry
	err := j.update(func([]Entry) ([]Entry, error) { return []Entry{e}, nil }, func(stored []Entry) { out = stored[0] })
	return out, err
}

// Read calls fn for every complete entry in order; fn must treat the entry
// (its Data map in particular) as read-only, since it is the journal's cache. An incomplete last line is
// skipped and reported; any other malformed line is an error, because the
// journal is the record of what happened and must not be silently edited.
func (j *Journal) Read(fn func(Entry) error) (ReadReport, error) {
	j.mu.Lock()
	unlock, err := lockFile(j.f, false)
	if err != nil {
		j.mu.Unlock()
		return ReadReport{}, fmt.Errorf("lock journal %s: %w", j.path, err)
	}
	err = j.refresh()
	entries, report := j.entries, j.report()
	unlock()
	j.mu.Unlock()
	if err != nil {
		return report, err
	}
	for _, e := range entries {
		if err := fn(e); err != nil {
			return report, err
		}
	}
	return report, nil
}

func (j *Journal) report() ReadReport {
	r := ReadReport{Entries: len(j.entries)}
	if len(j.torn) > 0 {
		r.TornLine = len(j.entries) + 1
		r.TornBytes = len(j.torn)
	}
	return r
}

// update is the journal's transaction: under the exclusive lock it brings
// the cache up to date, lets decide see every entry, and appends what decide
// returns, also when decide returns an error (a refusal is journaled too).
// done receives the entries as stored.
func (j *Journal) update(decide func(all []Entry) ([]Entry, error), done func([]Entry)) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	unlock, err := lockFile(j.f, true)
	if err != nil {
		return fmt.Errorf("lock journal %s: %w", j.path, err)
	}
	defer unlock()
	if err := j.refresh(); err != nil {
		return err
	}
	if err := j.dropTorn(); err != nil {
		return err
	}
	add, decideErr := decide(j.entries)
	if len(add) == 0 {
		return decideErr
	}
	var buf bytes.Buffer
	stored := make([]Entry, 0, len(add))
	seq := int64(len(j.entries))
	for _, e := range add {
		seq++
		e.Seq = seq
		if e.Time.IsZero() {
			e.Time = j.now()
		}
		e.Time = e.Time.UTC().Round(0)
		line, err := json.Marshal(e)
		if err != nil {
			return fmt.Errorf("journal %s entry: %w", e.Kind, err)
		}
		// Store what a later read will see (numbers become float64), so a
		// state replayed now equals one replayed after a restart.
		var back Entry
		if err := json.Unmarshal(line, &back); err != nil {
			return fmt.Errorf("journal %s entry: %w", e.Kind, err)
		}
		stored = append(stored, back)
		buf.Write(line)
		buf.WriteByte('\n')
	}
	// One write per transaction: O_APPEND puts it at the end as a unit.
	if _, err := j.f.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("append to journal %s: %w", j.path, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("sync journal %s: %w", j.path, err)
	}
	j.entries = append(j.entries, stored...)
	j.size += int64(buf.Len())
	if done != nil {
		done(stored)
	}
	return decideErr
}

// refresh parses whatever the file gained since the last look. Caller holds
// the mutex and a flock.
func (j *Journal) refresh() error {
	fi, err := j.f.Stat()
	if err != nil {
		return fmt.Errorf("stat journal %s: %w", j.path, err)
	}
	if fi.Size() < j.size {
		return fmt.Errorf("%s shrank from %d to %d bytes: the journal is append-only and was edited; restore it from a backup", j.path, j.size, fi.Size())
	}
	if fi.Size() == j.size+int64(len(j.torn)) {
		return nil
	}
	tail := make([]byte, fi.Size()-j.size)
	if _, err := j.f.ReadAt(tail, j.size); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read journal %s: %w", j.path, err)
	}
	j.torn = nil
	for len(tail) > 0 {
		line, rest, complete := bytes.Cut(tail, []byte("\n"))
		if !complete {
			j.torn = line
			break
		}
		lineNo := len(j.entries) + 1
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return fmt.Errorf("%s:%d: not a journal entry (%v): the journal is append-only and was edited; restore it from a backup", j.path, lineNo, err)
		}
		if e.Seq != int64(lineNo) {
			return fmt.Errorf("%s:%d: entry has seq %d where %d was due: the journal is append-only and was edited; restore it from a backup", j.path, lineNo, e.Seq, lineNo)
		}
		j.entries = append(j.entries, e)
		j.size += int64(len(line)) + 1
		tail = rest
	}
	return nil
}

// dropTorn moves an incomplete last line into <journal>.torn before the
// next append, so the new entry does not get glued to it. Caller holds the
// exclusive lock.
func (j *Journal) dropTorn() error {
	if len(j.torn) == 0 {
		return nil
	}
	aside, err := os.OpenFile(j.path+".torn", os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("set aside the torn last line of %s: %w", j.path, err)
	}
	_, werr := aside.Write(append(append([]byte(nil), j.torn...), '\n'))
	cerr := aside.Close()
	if err := errors.Join(werr, cerr); err != nil {
		return fmt.Errorf("set aside the torn last line of %s: %w", j.path, err)
	}
	if err := j.f.Truncate(j.size); err != nil {
		return fmt.Errorf("drop the torn last line of %s: %w", j.path, err)
	}
	j.torn = nil
	return nil
}

// toData turns a payload struct into entry data through JSON, so it reads
// back the same way it was written.
func toData(v any) map[string]any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("journal payload %T: %v", v, err)) // payloads are our own plain structs
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		panic(fmt.Sprintf("journal payload %T: %v", v, err))
	}
	return m
}

// fromData decodes entry data into a payload struct.
func fromData(e Entry, v any) error {
	b, err := json.Marshal(e.Data)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("journal entry %d (%s): %w", e.Seq, e.Kind, err)
	}
	return nil
}
