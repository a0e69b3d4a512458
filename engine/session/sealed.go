package session

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/fapo-dev/fapo/engine/statedb"
)

// A workspace journal is imported only where an earlier fapo can have
// written it: a tenant sealed before this database existed. The database
// knows when it was created and which tenants the operator sealed or
// pinned with it; a journal.jsonl found in any other tenant was written by
// someone else (an agent's file tools can) before the server first opened
// the tenant, and is refused.
var sealSchema = []string{`
CREATE TABLE IF NOT EXISTS store_meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) STRICT`, `
CREATE TABLE IF NOT EXISTS sealed_tenants (
	tenant  TEXT PRIMARY KEY,
	first   TEXT NOT NULL,
	last    TEXT NOT NULL,
	command TEXT NOT NULL
) STRICT`,
}

// recordCreated records, once, when the database was created. A database
// created before fapo recorded it gets the earliest moment it is known to
// have been in use: its first recorded run, or its first journal entry
// written by the database itself (an imported earlier journal keeps older
// times, so the entries before a tenant's import are not counted).
func recordCreated(tx *sql.Tx) error {
	ctx := context.Background()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM store_meta WHERE key = 'created'`).Scan(&n); err != nil || n > 0 {
		return err
	}
	created := time.Now().UTC()
	for _, q := range []string{
		`SELECT MIN(created) FROM runs`,
		`SELECT MIN(j.time) FROM journal j WHERE NOT EXISTS
			(SELECT 1 FROM journal i WHERE i.tenant = j.tenant AND i.kind = 'imported' AND i.seq > j.seq)`,
	} {
		var v sql.NullString
		if err := tx.QueryRowContext(ctx, q).Scan(&v); err != nil {
			return fmt.Errorf("state database: when was it created: %w", err)
		}
		if t, err := time.Parse(time.RFC3339Nano, v.String); v.Valid && err == nil && t.Before(created) {
			created = t.UTC()
		}
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO store_meta (key, value) VALUES ('created', ?)`, created.Format(time.RFC3339Nano))
	return err
}

// MarkSealed records that the operator sealed (or pinned) the tenant with
// this store: from then on its journal lives only in the database, and a
// journal.jsonl found in its workspace directory is never imported.
// command names what did it ("seal", "import", "init --example", "pin").
func MarkSealed(ctx context.Context, db *statedb.DB, tenant, command string) error {
	now := time.Now().UTC().Format(time.RFC3339Nano)
	return db.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO sealed_tenants (tenant, first, last, command) VALUES (?, ?, ?, ?)
			ON CONFLICT (tenant) DO UPDATE SET last = excluded.last, command = excluded.command`, tenant, now, now, command)
		return err
	})
}

// importRefusal says why a workspace journal of tenant, sealed at sealedAt
// (zero: not sealed), cannot have been written by an earlier fapo, or ""
// when it can: the tenant was never marked sealed by this store and was
// sealed before the database was created.
func importRefusal(tx *sql.Tx, tenant string, sealedAt time.Time) (string, error) {
	ctx := context.Background()
	var first, command string
	err := tx.QueryRowContext(ctx, `SELECT first, command FROM sealed_tenants WHERE tenant = ?`, tenant).Scan(&first, &command)
	switch {
	case err == nil:
		when, _ := time.Parse(time.RFC3339Nano, first)
		return fmt.Sprintf("tenant %s was sealed by this store (fapo %s, %s), so its journal has only ever been kept in the sealed store's database",
			tenant, command, when.Format(time.DateTime+" UTC")), nil
	case !errors.Is(err, sql.ErrNoRows):
		return "", err
	}
	if sealedAt.IsZero() {
		return fmt.Sprintf("tenant %s is not sealed, so no fapo kept a journal for it", tenant), nil
	}
	var v string
	if err := tx.QueryRowContext(ctx, `SELECT value FROM store_meta WHERE key = 'created'`).Scan(&v); err != nil {
		return "", fmt.Errorf("state database: when was it created: %w", err)
	}
	created, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return "", fmt.Errorf("state database: created %q: %w", v, err)
	}
	// Seals are recorded to the second: one within the database's first
	// second counts as after it.
	if !sealedAt.Before(created.Truncate(time.Second)) {
		return fmt.Sprintf("tenant %s was sealed (%s) after this store's database was created (%s), so no earlier fapo kept its journal in the workspace",
			tenant, sealedAt.UTC().Format(time.DateTime+" UTC"), created.Format(time.DateTime+" UTC")), nil
	}
	return "", nil
}
