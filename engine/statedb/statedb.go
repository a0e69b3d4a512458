// Package statedb is the sealed store's database: everything the server
// decides on — sessions and their journal, the index of runs it recorded,
// held-out results, the response cache — in one SQLite file under
// $FAPO_HOME that several fapo processes share. The workspace is the
// agent's to edit; nothing there is read back as truth. Writers hold the
// database lock for one transaction, never for a process's life, so Claude
// Code, Codex and an operator's `fapo eval` can work on one tenant at once.
package statedb

import (
	"github.com/fapo-dev/fapo/engine/refusal"

	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	// modernc.org/sqlite is SQLite translated to pure Go: no cgo, so fapo
	// stays one static binary that cross-compiles, while keeping SQLite's
	// WAL mode (readers beside one writer, across processes), busy
	// timeouts and real transactions. ncruces/go-sqlite3 would do too, but
	// runs SQLite under a Wasm runtime, a second moving part for no gain.
	_ "modernc.org/sqlite"
)

// File is the database's name inside $FAPO_HOME.
const File = "state.db"

// busyTimeout is how long a statement waits for another process's write
// transaction before giving up. Transactions are short (milliseconds), so
// waiting this long means something is wrong.
const busyTimeout = 30 * time.Second

// DB is the shared state database. It is safe for concurrent use.
type DB struct {
	db   *sql.DB
	path string
	dsn  string // of a read-write handle; empty for OpenReadOnly's
}

// Open opens (creating if needed) the state database in home, which is
// created 0700; the database and its WAL files are 0600. A planted link in
// place of the database is refused.
func Open(home string) (*DB, error) {
	if home == "" {
		return nil, refusal.New(refusal.SetHome, "", "no sealed store home")
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, fmt.Errorf("create sealed store %s: %w", home, err)
	}
	if err := os.Chmod(home, 0o700); err != nil {
		return nil, fmt.Errorf("restrict sealed store %s to its owner: %w", home, err)
	}
	p := filepath.Join(home, File)
	if err := prepareFile(p); err != nil {
		return nil, err
	}
	q := url.Values{}
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "journal_mode(WAL)")
	// FULL: a commit is durable when it returns. A budget charge or a
	// recorded result must survive a power cut; the response cache batches
	// its writes so this costs it little.
	q.Add("_pragma", "synchronous(FULL)")
	q.Add("_pragma", "foreign_keys(1)")
	// Write transactions take the lock at BEGIN, so a read-then-write
	// decision (is there budget left? then charge) cannot be overtaken by
	// another process between its read and its write.
	q.Set("_txlock", "immediate")
	dsn := "file:" + p + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", p, err)
	}
	db.SetMaxOpenConns(8)
	// Keep them all: database/sql's default of two idle connections would
	// close and reopen SQLite connections (file, schema, pragmas) under
	// concurrent use, which the response cache's lookups are.
	db.SetMaxIdleConns(8)
	d := &DB{db: db, path: p, dsn: dsn}
	if err := d.Migrate(context.Background(), runsSchema...); err != nil {
		_ = db.Close()
		return nil, err
	}
	return d, nil
}

// OpenReadOnly opens the state database in home for reading only, for a
// viewer such as the Explorer: it creates nothing, migrates nothing, and
// every write through it fails. A missing database is fs.ErrNotExist (no
// fapo process has used this store yet); a planted link is refused.
func OpenReadOnly(home string) (*DB, error) {
	p := filepath.Join(home, File)
	fi, err := os.Lstat(p)
	if err != nil {
		return nil, fmt.Errorf("state database %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("state database %s is not a regular file: the sealed store holds only fapo's own files; remove it", p)
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	q.Add("_pragma", "query_only(1)")
	db, err := sql.Open("sqlite", "file:"+p+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", p, err)
	}
	db.SetMaxOpenConns(4)
	return &DB{db: db, path: p}, nil
}

// prepareFile creates the database file 0600 if it is missing and refuses
// anything but a regular file of this user's.
func prepareFile(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|noFollow, 0o600)
	if err != nil {
		if errors.Is(err, errLoop) {
			return fmt.Errorf("state database %s is a symbolic link: the sealed store holds only fapo's own files; remove the link", p)
		}
		return fmt.Errorf("open state database %s: %w", p, err)
	}
	defer func() { _ = f.Close() }()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("state database %s is not a regular file", p)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := f.Chmod(0o600); err != nil {
			return fmt.Errorf("restrict state database %s to its owner: %w", p, err)
		}
	}
	return nil
}

// Pool is a handle of its own on the database, with n connections, for a
// user that keeps connections for its life (the response cache keeps one
// to read and one to write, each with a page cache no other transaction
// invalidates): connections held that long would starve the shared pool,
// and with it every other user in the process. Close it before d.
func (d *DB) Pool(n int) (*sql.DB, error) {
	if d.dsn == "" {
		return nil, fmt.Errorf("state database %s is open read-only", d.path)
	}
	db, err := sql.Open("sqlite", d.dsn)
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", d.path, err)
	}
	db.SetMaxOpenConns(n)
	db.SetMaxIdleConns(n)
	return db, nil
}

// Path is the database file.
func (d *DB) Path() string { return d.path }

// SQL is the underlying handle, for reads outside a transaction.
func (d *DB) SQL() *sql.DB { return d.db }

// Close closes the database.
func (d *DB) Close() error { return d.db.Close() }

// Migrate runs idempotent schema statements (CREATE ... IF NOT EXISTS) in
// one write transaction. Each package that keeps state here declares its
// own tables and calls Migrate when it opens.
func (d *DB) Migrate(ctx context.Context, stmts ...string) error {
	return d.Write(ctx, func(tx *sql.Tx) error {
		for _, s := range stmts {
			if _, err := tx.ExecContext(ctx, s); err != nil {
				return fmt.Errorf("state database schema: %w (in %q)", err, firstLine(s))
			}
		}
		return nil
	})
}

// Write runs fn in a write transaction that holds the database's write lock
// from its first statement to its commit: what fn reads cannot change
// before what it writes is committed. fn's error rolls everything back.
func (d *DB) Write(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("state database %s: begin: %w", d.path, err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("state database %s: commit: %w", d.path, err)
	}
	return nil
}

// Read runs fn in a read transaction: one consistent snapshot, beside
// writers.
func (d *DB) Read(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := d.db.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("state database %s: begin read: %w", d.path, err)
	}
	defer tx.Rollback() //nolint:errcheck // a read-only transaction has nothing to commit
	return fn(tx)
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}
