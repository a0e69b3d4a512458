package statedb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The index of runs: every run the server started, with its split and
// variant. A run id that a tool receives is looked up here, never inferred
// from what is found on disk, so a directory planted under a tenant's runs/
// (or a link from there into the sealed store) is not a run.
var runsSchema = []string{`
CREATE TABLE IF NOT EXISTS runs (
	tenant  TEXT NOT NULL,
	id      TEXT NOT NULL,
	split   TEXT NOT NULL,
	variant TEXT NOT NULL,
	created TEXT NOT NULL,
	PRIMARY KEY (tenant, id)
) STRICT`, `
CREATE TABLE IF NOT EXISTS run_logs (
	tenant TEXT NOT NULL,
	id     TEXT NOT NULL,
	sha256 BLOB NOT NULL,
	PRIMARY KEY (tenant, id)
) STRICT`}

// SealRunLog keeps the sha256 of a finished run's case log, which lives in
// the workspace: whoever reads the log later checks it against this, so an
// edited log is refused rather than believed. A resumed run is sealed
// again when it finishes.
func (d *DB) SealRunLog(ctx context.Context, tenant, id string, sum []byte) error {
	return d.Write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO run_logs (tenant, id, sha256) VALUES (?, ?, ?)
			ON CONFLICT (tenant, id) DO UPDATE SET sha256 = excluded.sha256`, tenant, id, sum)
		return err
	})
}

// RunLogHash is the sha256 SealRunLog kept for a run; ok is false when the
// run never finished (or finished before logs were sealed).
func (d *DB) RunLogHash(ctx context.Context, tenant, id string) (sum []byte, ok bool, err error) {
	err = d.db.QueryRowContext(ctx, `SELECT sha256 FROM run_logs WHERE tenant = ? AND id = ?`, tenant, id).Scan(&sum)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("state database: look up the log of run %s: %w", id, err)
	}
	return sum, true, nil
}

// RunRecord is one indexed run.
type RunRecord struct {
	Tenant  string
	ID      string
	Split   string
	Variant string
	Created time.Time
}

// RecordRun indexes a run when it starts. Recording the same run again (a
// resume) is allowed only for the same split and variant.
func (d *DB) RecordRun(ctx context.Context, r RunRecord) error {
	if r.Created.IsZero() {
		r.Created = time.Now()
	}
	return d.Write(ctx, func(tx *sql.Tx) error {
		var split, variant string
		err := tx.QueryRowContext(ctx, `SELECT split, variant FROM runs WHERE tenant = ? AND id = ?`, r.Tenant, r.ID).Scan(&split, &variant)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			_, err = tx.ExecContext(ctx, `INSERT INTO runs (tenant, id, split, variant, created) VALUES (?, ?, ?, ?, ?)`,
				r.Tenant, r.ID, r.Split, r.Variant, r.Created.UTC().Format(time.RFC3339Nano))
			return err
		case err != nil:
			return err
		case split != r.Split || variant != r.Variant:
			return fmt.Errorf("run %s is a %s run of %s, not a %s run of %s", r.ID, split, variant, r.Split, r.Variant)
		}
		return nil
	})
}

// Run looks up an indexed run; ok is false when the server never recorded it.
func (d *DB) Run(ctx context.Context, tenant, id string) (r RunRecord, ok bool, err error) {
	var created string
	err = d.db.QueryRowContext(ctx, `SELECT tenant, id, split, variant, created FROM runs WHERE tenant = ? AND id = ?`, tenant, id).
		Scan(&r.Tenant, &r.ID, &r.Split, &r.Variant, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return RunRecord{}, false, nil
	}
	if err != nil {
		return RunRecord{}, false, fmt.Errorf("state database: look up run %s: %w", id, err)
	}
	r.Created, _ = time.Parse(time.RFC3339Nano, created)
	return r, true, nil
}

// Runs lists a tenant's indexed runs of split ("" for all), oldest first.
func (d *DB) Runs(ctx context.Context, tenant, split string) ([]RunRecord, error) {
	rows, err := d.db.QueryContext(ctx, `SELECT tenant, id, split, variant, created FROM runs
		WHERE tenant = ? AND (? = '' OR split = ?) ORDER BY created, id`, tenant, split, split)
	if err != nil {
		return nil, fmt.Errorf("state database: list runs: %w", err)
	}
	defer rows.Close()
	var out []RunRecord
	for rows.Next() {
		var r RunRecord
		var created string
		if err := rows.Scan(&r.Tenant, &r.ID, &r.Split, &r.Variant, &created); err != nil {
			return nil, err
		}
		r.Created, _ = time.Parse(time.RFC3339Nano, created)
		out = append(out, r)
	}
	return out, rows.Err()
}
