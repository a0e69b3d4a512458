package session

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"reflect"
	"slices"
	"strings"
	"time"
)

// ImportReport says what ImportWorkspace took over.
type ImportReport struct {
	Entries  int
	Sessions int
	// Notice is the sentence for the operator; "" when nothing was imported.
	Notice string
	// Skipped lists what was left out, and why.
	Skipped []string
	// Refused is set when a workspace journal was found where no earlier
	// fapo can have written one; nothing was imported (see Notice).
	Refused bool
}

// ImportWorkspace takes over, once, the journal and sessions that an earlier
// fapo kept in the tenant directory (journal.jsonl, sessions/*/scope.json):
// only while the database holds no journal and no session of the tenant, in
// one transaction with an imported entry saying so. From then on those files
// are a mirror, rewritten from the database and never read again. A session
// is imported from its session_started entry (the contract as journaled);
// a scope.json that disagrees with it, or a session directory without one
// (an interrupted start), is skipped and reported.
//
// sealedAt is when the tenant was sealed (its manifest's creation; zero when
// it is not sealed). Only a tenant sealed before the database was created,
// and never sealed or pinned with it since (MarkSealed), can have a journal
// an earlier fapo wrote. Anywhere else a workspace journal was planted or
// copied before the server first opened the tenant: it is not imported, an
// import_refused entry records it (so the question is not asked again), and
// the report's Notice tells the operator.
func (j *Journal) ImportWorkspace(tenantDir string, sealedAt time.Time) (ImportReport, error) {
	var rep ImportReport
	err := j.write(func(tx *sql.Tx) error {
		if len(j.entries) > 0 || len(j.sessions) > 0 {
			return nil
		}
		root, err := os.OpenRoot(tenantDir)
		if err != nil {
			return fmt.Errorf("import the journal of %s: %w", j.tenant, err)
		}
		defer root.Close()
		legacy, raw, err := readLegacyJournal(root)
		if err != nil || len(legacy) == 0 {
			return err
		}
		why, err := importRefusal(tx, j.tenant, sealedAt)
		if err != nil {
			return err
		}
		if why != "" {
			sum := sha256.Sum256(raw)
			rep.Refused = true
			rep.Notice = fmt.Sprintf("tenants/%s/%s (%d entries) was not imported: %s. A journal there that this server did not write was planted or copied (an agent's file tools can write it); it is not trusted, and the server's mirror replaces it. Check who wrote it; the tenant needs nothing else",
				j.tenant, JournalFile, len(legacy), why)
			_, err := j.insert(tx, []Entry{{Kind: KindImportRefused, Data: map[string]any{
				"file": JournalFile, "entries": len(legacy), "sha256": hex.EncodeToString(sum[:]), "reason": why, "message": rep.Notice}}})
			return err
		}
		var scopes []Scope
		for _, e := range legacy {
			if e.Kind != KindSessionStarted {
				continue
			}
			var sc Scope
			if err := fromData(e, &sc); err != nil {
				return fmt.Errorf("import %s/%s: %w", tenantDir, JournalFile, err)
			}
			if _, err := ParseSessionID(sc.ID); err != nil || sc.ID != e.Session || slices.ContainsFunc(scopes, func(o Scope) bool { return o.ID == sc.ID }) {
				rep.Skipped = append(rep.Skipped, fmt.Sprintf("entry %d starts session %q, which is not a new valid session id", e.Seq, sc.ID))
				continue
			}
			if problem := checkLegacyScope(root, sc); problem != "" {
				rep.Skipped = append(rep.Skipped, "session "+sc.ID+": "+problem)
				continue
			}
			scopes = append(scopes, sc)
		}
		slices.SortFunc(scopes, func(a, b Scope) int { return strings.Compare(a.ID, b.ID) })
		for _, e := range legacy {
			e.Seq = 0 // renumbered by insert, which is what it was
			if _, err := j.insert(tx, []Entry{e}); err != nil {
				return err
			}
		}
		for _, sc := range scopes {
			if err := j.insertSession(tx, sc); err != nil {
				return err
			}
		}
		rep.Entries, rep.Sessions = len(legacy), len(scopes)
		rep.Notice = fmt.Sprintf("imported %d journal entries and %d sessions of tenant %s from the workspace into the sealed store; tenants/%s/%s is now a mirror",
			rep.Entries, rep.Sessions, j.tenant, j.tenant, JournalFile)
		data := map[string]any{"entries": rep.Entries, "sessions": rep.Sessions, "message": rep.Notice}
		if len(rep.Skipped) > 0 {
			rep.Notice += " (skipped: " + strings.Join(rep.Skipped, "; ") + ")"
			data["skipped"] = rep.Skipped
		}
		_, err = j.insert(tx, []Entry{{Kind: KindImported, Data: data}})
		return err
	})
	if err != nil {
		return ImportReport{}, err
	}
	if rep.Notice != "" {
		slog.Info(rep.Notice, "tenant", j.tenant, "entries", rep.Entries, "sessions", rep.Sessions, "skipped", len(rep.Skipped))
	}
	return rep, nil
}

// readLegacyJournal parses the workspace journal of an earlier fapo, with
// the checks it applied: gapless seq from 1, and an incomplete last line
// (a crash mid-append, never acknowledged) left out. A link is refused. It
// returns the file's bytes too.
func readLegacyJournal(root *os.Root) ([]Entry, []byte, error) {
	fi, err := root.Lstat(JournalFile)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, nil, fmt.Errorf("%s of the workspace is not a regular file: it cannot be imported; remove it", JournalFile)
	}
	all, err := root.ReadFile(JournalFile)
	if err != nil {
		return nil, nil, err
	}
	raw := all
	var out []Entry
	for len(raw) > 0 {
		line, rest, complete := bytes.Cut(raw, []byte("\n"))
		if !complete {
			break
		}
		raw = rest
		n := len(out) + 1
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, nil, fmt.Errorf("%s:%d: not a journal entry (%v): it cannot be imported; restore it from a backup", JournalFile, n, err)
		}
		if e.Seq != int64(n) {
			return nil, nil, fmt.Errorf("%s:%d: entry has seq %d where %d was due: it cannot be imported; restore it from a backup", JournalFile, n, e.Seq, n)
		}
		out = append(out, e)
	}
	return out, all, nil
}

// checkLegacyScope compares a session's scope.json with its journaled
// contract, as an earlier fapo did on every load.
func checkLegacyScope(root *os.Root, sc Scope) string {
	p := path.Join(SessionsDir, sc.ID, scopeFile)
	raw, err := root.ReadFile(p)
	if err != nil {
		return fmt.Sprintf("%s cannot be read (%v)", p, err)
	}
	var file Scope
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&file); err != nil || !reflect.DeepEqual(file, sc) {
		return p + " differs from the contract journaled when it started"
	}
	return ""
}
