// Package session keeps the books of an optimization session: the immutable
// scope contract the user agreed to, an append-only journal of everything
// that happened, the state derived by replaying that journal (budget used,
// incumbent, validation history, escalation counters), the escalation policy
// that gates proposal levels, and the statistics that decide whether a
// candidate beats the incumbent. Sessions and the journal live in the sealed
// store's database (engine/statedb), never in the workspace the agent edits,
// so a restarted server resumes exactly where it stopped and what it decides
// on cannot be forged with a file tool. The workspace gets a human-readable
// mirror that is written after every commit and never read back.
package session

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/fapo-dev/fapo/engine/statedb"
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
	// KindImported records the one-time import of a workspace journal
	// written by an earlier fapo, which kept the journal in the workspace.
	KindImported Kind = "imported"
	// KindImportRefused records a workspace journal found where no earlier
	// fapo can have written one (a tenant this store sealed): planted or
	// copied, it is not imported.
	KindImportRefused Kind = "import_refused"
)

// Entry is one journal entry (one line of the workspace mirror).
type Entry struct {
	// Seq numbers a tenant's entries 1, 2, 3… without gaps; the database
	// refuses any other insert, and any update or delete.
	Seq     int64          `json:"seq"`
	Time    time.Time      `json:"time"`
	Kind    Kind           `json:"kind"`
	Session string         `json:"session,omitempty"`
	Variant string         `json:"variant,omitempty"`
	Data    map[string]any `json:"data,omitempty"`
}

// schema is the journal's and the sessions' part of the state database.
// Triggers make the journal append-only with gapless numbering and the
// sessions immutable, whatever code writes to the database.
var schema = []string{`
CREATE TABLE IF NOT EXISTS journal (
	tenant  TEXT NOT NULL,
	seq     INTEGER NOT NULL,
	time    TEXT NOT NULL,
	kind    TEXT NOT NULL,
	session TEXT NOT NULL,
	variant TEXT NOT NULL,
	data    TEXT,
	PRIMARY KEY (tenant, seq)
) STRICT`, `
CREATE TABLE IF NOT EXISTS sessions (
	tenant  TEXT NOT NULL,
	id      TEXT NOT NULL,
	num     INTEGER NOT NULL,
	scope   TEXT NOT NULL,
	created TEXT NOT NULL,
	PRIMARY KEY (tenant, id),
	UNIQUE (tenant, num)
) STRICT`, `
CREATE TRIGGER IF NOT EXISTS journal_seq_follows BEFORE INSERT ON journal
WHEN NEW.seq IS NOT (SELECT COALESCE(MAX(seq), 0) + 1 FROM journal WHERE tenant = NEW.tenant)
BEGIN SELECT RAISE(ABORT, 'journal entries are numbered 1, 2, 3... without gaps'); END`, `
CREATE TRIGGER IF NOT EXISTS journal_no_update BEFORE UPDATE ON journal
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END`, `
CREATE TRIGGER IF NOT EXISTS journal_no_delete BEFORE DELETE ON journal
BEGIN SELECT RAISE(ABORT, 'the journal is append-only'); END`, `
CREATE TRIGGER IF NOT EXISTS sessions_no_update BEFORE UPDATE ON sessions
BEGIN SELECT RAISE(ABORT, 'a session''s scope contract is immutable'); END`, `
CREATE TRIGGER IF NOT EXISTS sessions_no_delete BEFORE DELETE ON sessions
BEGIN SELECT RAISE(ABORT, 'a session''s scope contract is immutable'); END`,
}

// Migrate creates the journal's and the sessions' tables, and records when
// the database was created (see recordCreated). A process that writes
// sessions calls it once after opening the database; readers (the
// Explorer) open the database read-only and never need it.
func Migrate(ctx context.Context, db *statedb.DB) error {
	if err := db.Migrate(ctx, append(slices.Clone(schema), sealSchema...)...); err != nil {
		return err
	}
	return db.Write(ctx, recordCreated)
}

// Ready reports whether the database has the journal's tables, i.e. whether
// any process has ever migrated it; a read-only reader of a database without
// them sees no sessions.
func Ready(ctx context.Context, db *statedb.DB) (bool, error) {
	var n int
	err := db.SQL().QueryRowContext(ctx, `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name IN ('journal', 'sessions')`).Scan(&n)
	if err != nil {
		return false, fmt.Errorf("state database %s: %w", db.Path(), err)
	}
	return n == 2, nil
}

// Journal is one tenant's journal and sessions in the state database. Every
// change runs as one write transaction, which holds the database's write
// lock across processes from its first read to its commit, so a decision and
// the entries it appends are atomic. A Journal caches what it has read
// (entries never change once committed) and reads only what other handles
// appended since. It is safe for concurrent use.
type Journal struct {
	db     *statedb.DB
	tenant string
	// mirrorDir is the tenant directory the mirror is written into; ""
	// writes none.
	mirrorDir string
	now       func() time.Time

	mu       sync.Mutex
	entries  []Entry
	sessions []Scope
	// lines are the mirror's lines of entries[:len(lines)], encoded once:
	// rewriting the mirror then costs a copy, not an encoding of the
	// whole journal.
	lines [][]byte
}

// JournalOption configures a Journal.
type JournalOption func(*Journal)

// WithMirror makes the journal rewrite, after every commit, a human-readable
// copy of itself in tenantDir: journal.jsonl and sessions/sNNNN/scope.json.
// The copy is for people; nothing ever reads it back.
func WithMirror(tenantDir string) JournalOption {
	return func(j *Journal) { j.mirrorDir = tenantDir }
}

// WithClock sets the clock entries are stamped with.
func WithClock(now func() time.Time) JournalOption {
	return func(j *Journal) { j.now = now }
}

// OpenJournal returns the journal of tenant in db (Migrate must have run
// for a journal that is written to).
func OpenJournal(db *statedb.DB, tenant string, opts ...JournalOption) *Journal {
	j := &Journal{db: db, tenant: tenant, now: time.Now}
	for _, o := range opts {
		o(j)
	}
	return j
}

// Tenant is the tenant the journal belongs to.
func (j *Journal) Tenant() string { return j.tenant }

// where names the journal in error messages.
func (j *Journal) where() string {
	return fmt.Sprintf("the journal of %s in %s", j.tenant, j.db.Path())
}

// Append writes e with the next sequence number and, when e.Time is zero,
// the current time, and returns the entry as stored.
func (j *Journal) Append(e Entry) (Entry, error) {
	var out Entry
	err := j.update(func([]Entry) ([]Entry, error) { return []Entry{e}, nil }, func(stored []Entry) { out = stored[0] })
	return out, err
}

// Read calls fn for every entry in order; fn must treat the entry (its Data
// map in particular) as read-only, since it is the journal's cache.
func (j *Journal) Read(fn func(Entry) error) error {
	entries, _, err := j.snapshot()
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// Sessions lists the tenant's sessions' scope contracts, oldest first.
func (j *Journal) Sessions() ([]Scope, error) {
	_, sessions, err := j.snapshot()
	return sessions, err
}

// LastSeq is the sequence number of the latest entry, 0 for an empty
// journal: a cheap way to tell whether anything happened.
func (j *Journal) LastSeq(ctx context.Context) (int64, error) {
	var n int64
	err := j.db.SQL().QueryRowContext(ctx, `SELECT COALESCE(MAX(seq), 0) FROM journal WHERE tenant = ?`, j.tenant).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", j.where(), err)
	}
	return n, nil
}

// snapshot brings the cache up to date in a read transaction and returns it.
func (j *Journal) snapshot() ([]Entry, []Scope, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	err := j.db.Read(context.Background(), j.refresh)
	return j.entries, j.sessions, err
}

// update is the journal's transaction: under the database's write lock it
// brings the cache up to date, lets decide see every entry, and appends
// what decide returns, also when decide returns an error (a refusal is
// journaled too). done receives the entries as stored. decide must not use
// the database itself: the write lock is taken.
func (j *Journal) update(decide func(all []Entry) ([]Entry, error), done func([]Entry)) error {
	var stored []Entry
	var decideErr error
	err := j.write(func(tx *sql.Tx) error {
		add, err := decide(j.entries)
		decideErr = err
		if len(add) == 0 {
			return nil
		}
		stored, err = j.insert(tx, add)
		return err
	})
	if err != nil {
		return err
	}
	if done != nil && len(stored) > 0 {
		done(stored)
	}
	return decideErr
}

// write runs fn in one write transaction with the cache brought up to date
// first; what fn adds to the cache is dropped again if the transaction
// rolls back. After a commit that added something, the mirror is rewritten.
func (j *Journal) write(fn func(tx *sql.Tx) error) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	committed, committedSessions := len(j.entries), len(j.sessions)
	err := j.db.Write(context.Background(), func(tx *sql.Tx) error {
		if err := j.refresh(tx); err != nil {
			return err
		}
		committed, committedSessions = len(j.entries), len(j.sessions)
		return fn(tx)
	})
	if err != nil {
		j.entries, j.sessions = j.entries[:committed], j.sessions[:committedSessions]
		return err
	}
	if len(j.entries) > committed || len(j.sessions) > committedSessions {
		j.writeMirror()
	}
	return nil
}

// refresh reads what other handles committed since the cache was last
// brought up to date. Caller holds j.mu.
func (j *Journal) refresh(tx *sql.Tx) error {
	ctx := context.Background()
	rows, err := tx.QueryContext(ctx, `SELECT seq, time, kind, session, variant, data FROM journal
		WHERE tenant = ? AND seq > ? ORDER BY seq`, j.tenant, len(j.entries))
	if err != nil {
		return fmt.Errorf("read %s: %w", j.where(), err)
	}
	defer rows.Close()
	for rows.Next() {
		var e Entry
		var when, kind string
		var data sql.NullString
		if err := rows.Scan(&e.Seq, &when, &kind, &e.Session, &e.Variant, &data); err != nil {
			return fmt.Errorf("read %s: %w", j.where(), err)
		}
		if want := int64(len(j.entries)) + 1; e.Seq != want {
			return fmt.Errorf("%s has entry %d where %d was due: the journal is append-only and was edited outside fapo; restore the state database from a backup", j.where(), e.Seq, want)
		}
		e.Kind = Kind(kind)
		if e.Time, err = time.Parse(time.RFC3339Nano, when); err != nil {
			return fmt.Errorf("%s: entry %d: time %q: %w", j.where(), e.Seq, when, err)
		}
		if data.Valid {
			if err := json.Unmarshal([]byte(data.String), &e.Data); err != nil {
				return fmt.Errorf("%s: entry %d: %w", j.where(), e.Seq, err)
			}
		}
		j.entries = append(j.entries, e)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read %s: %w", j.where(), err)
	}
	return j.refreshSessions(tx)
}

func (j *Journal) refreshSessions(tx *sql.Tx) error {
	last := 0
	if n := len(j.sessions); n > 0 {
		last, _ = strconv.Atoi(j.sessions[n-1].ID[1:])
	}
	rows, err := tx.QueryContext(context.Background(), `SELECT id, scope FROM sessions WHERE tenant = ? AND num > ? ORDER BY num`, j.tenant, last)
	if err != nil {
		return fmt.Errorf("read the sessions of %s in %s: %w", j.tenant, j.db.Path(), err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, raw string
		if err := rows.Scan(&id, &raw); err != nil {
			return fmt.Errorf("read the sessions of %s: %w", j.tenant, err)
		}
		var sc Scope
		if err := json.Unmarshal([]byte(raw), &sc); err != nil {
			return fmt.Errorf("scope contract of session %s of %s: %w", id, j.tenant, err)
		}
		if sc.ID != id {
			return fmt.Errorf("scope contract of session %s of %s names session %q: restore the state database from a backup", id, j.tenant, sc.ID)
		}
		j.sessions = append(j.sessions, sc)
	}
	return rows.Err()
}

// insert appends entries in tx, numbering them after the cache, and adds
// them to the cache as a later read will see them (numbers in Data become
// float64), so a state replayed now equals one replayed after a restart.
func (j *Journal) insert(tx *sql.Tx, add []Entry) ([]Entry, error) {
	stored := make([]Entry, 0, len(add))
	for _, e := range add {
		e.Seq = int64(len(j.entries)) + 1
		if e.Time.IsZero() {
			e.Time = j.now()
		}
		e.Time = e.Time.UTC().Round(0)
		var data sql.NullString
		if len(e.Data) > 0 {
			raw, err := json.Marshal(e.Data)
			if err != nil {
				return nil, fmt.Errorf("journal %s entry: %w", e.Kind, err)
			}
			data = sql.NullString{String: string(raw), Valid: true}
			e.Data = nil
			if err := json.Unmarshal(raw, &e.Data); err != nil {
				return nil, fmt.Errorf("journal %s entry: %w", e.Kind, err)
			}
		} else {
			e.Data = nil
		}
		if _, err := tx.ExecContext(context.Background(), `INSERT INTO journal (tenant, seq, time, kind, session, variant, data)
			VALUES (?, ?, ?, ?, ?, ?, ?)`, j.tenant, e.Seq, e.Time.Format(time.RFC3339Nano), string(e.Kind), e.Session, e.Variant, data); err != nil {
			return nil, fmt.Errorf("append to %s: %w", j.where(), err)
		}
		j.entries = append(j.entries, e)
		stored = append(stored, e)
	}
	return stored, nil
}

// insertSession stores a new session's contract in tx and adds it to the
// cache. Caller holds j.mu inside write.
func (j *Journal) insertSession(tx *sql.Tx, sc Scope) error {
	raw, err := json.Marshal(sc)
	if err != nil {
		return err
	}
	num, err := strconv.Atoi(sc.ID[1:])
	if err != nil {
		return fmt.Errorf("session id %q: %w", sc.ID, err)
	}
	if _, err := tx.ExecContext(context.Background(), `INSERT INTO sessions (tenant, id, num, scope, created) VALUES (?, ?, ?, ?, ?)`,
		j.tenant, sc.ID, num, string(raw), sc.Created.Format(time.RFC3339Nano)); err != nil {
		return fmt.Errorf("create session %s of %s in %s: %w", sc.ID, j.tenant, j.db.Path(), err)
	}
	j.sessions = append(j.sessions, sc)
	return nil
}

// writeMirror rewrites the workspace mirror from the database. It runs in a
// write transaction of its own, after the commit it reflects: the database
// lock orders mirror writes across processes, so the last one written is
// always the latest committed state, and a mirror never shows an entry that
// was not committed. A mirror that cannot be written is logged, never an
// error: the operation it follows has been committed. Caller holds j.mu.
func (j *Journal) writeMirror() {
	if j.mirrorDir == "" {
		return
	}
	err := j.db.Write(context.Background(), func(tx *sql.Tx) error {
		if err := j.refresh(tx); err != nil {
			return err
		}
		reusable := map[string]bool{}
		for _, sc := range j.sessions {
			reusable[sc.ID] = sc.Acceptance.Thresholdout != nil
		}
		for _, e := range j.entries[len(j.lines):] {
			line, err := json.Marshal(mirrored(e, reusable[e.Session]))
			if err != nil {
				return fmt.Errorf("journal entry %d: %w", e.Seq, err)
			}
			j.lines = append(j.lines, append(line, '\n'))
		}
		return writeMirror(j.mirrorDir, j.lines, j.sessions)
	})
	if err != nil {
		slog.Warn("journal mirror not written; the journal in the state database is intact", "tenant", j.tenant, "dir", j.mirrorDir, "err", err)
	}
}

// mirrored is e as the workspace mirror shows it. A session deciding
// through the reusable holdout answers the agent only through the
// mechanism's noise, so the exact figures of its validation results stay
// in the database: the mirror is the agent's to read.
func mirrored(e Entry, reusable bool) Entry {
	if !reusable || e.Kind != KindEvaluated || e.Data["split"] != "validation" {
		return e
	}
	data := make(map[string]any, len(e.Data))
	for k, v := range e.Data {
		switch k {
		case "value", "sd", "usd_per_case", "latency_p50_ms":
			data[k+"_withheld"] = true
		default:
			data[k] = v
		}
	}
	e.Data = data
	return e
}

// RewriteMirror writes the workspace mirror now, e.g. after an agent edited
// it; the next commit would rewrite it anyway.
func (j *Journal) RewriteMirror() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.writeMirror()
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
