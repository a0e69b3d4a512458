package loop

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/review"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/tenant"
)

// tenant resolves a tenant by name and verifies its frozen files against
// the hashes pinned in the sealed manifest, before anything else: every
// operation starts here. A change is journaled and refused with a
// *tenant.PinError. The tenant returned is parsed from the exact bytes that
// were hashed, and its scorer and tool files are a verified copy in the
// sealed store (FilesDir), so nothing the agent edits after the check is
// used. Only names are accepted from callers: a path could point anywhere.
func (w *Workspace) tenant(name string) (*tenant.Tenant, error) {
	return w.verifiedTenant(name, true)
}

// verifiedTenant is tenant; journal false leaves a refusal out of the
// journal (for the budget line of a tool error, and list_tenants).
func (w *Workspace) verifiedTenant(name string, journal bool) (*tenant.Tenant, error) {
	if !tenant.ValidName(name) {
		return nil, refusal.New(refusal.ListTenants, "", fmt.Sprintf("%q is not a tenant name (lowercase letters, digits, - and _)", name))
	}
	dir, err := tenant.ResolveDir(w.dir, name)
	if err != nil {
		return nil, err
	}
	m, merr := w.store.Manifest(name)
	if merr != nil && !errors.Is(merr, dataset.ErrNotSealed) {
		return nil, merr
	}
	var pinned []string
	if merr == nil {
		pinned = m.PinnedPaths()
	}
	fz, err := tenant.ReadFrozen(dir, pinned)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, refusal.New(refusal.ListTenants, "", fmt.Sprintf("tenant %q does not exist in this workspace", name))
		}
		return nil, err
	}
	if merr != nil {
		// Not sealed: nothing is held out yet, so nothing to protect; the
		// operations that need the seal refuse on their own.
		return fz.Tenant()
	}
	if perr := fz.Verify(m, w.pinnedConfig(name)); perr != nil {
		if journal {
			if err := w.appendJournal(dir, name, session.Entry{Kind: session.KindPinMismatch,
				Data: map[string]any{"changes": perr.Changes, "unpinned": perr.Unpinned}}); err != nil {
				slog.Error("journal a pin mismatch", "tenant", name, "err", err)
			}
		}
		return nil, perr
	}
	t, err := fz.Tenant()
	if err != nil {
		return nil, err
	}
	if t.FilesDir, err = w.store.Materialize(name, fz.Files); err != nil {
		return nil, err
	}
	t.Files = fz.FS()
	return t, nil
}

// checkEndpoints refuses a held-out run of t whose model endpoints, under
// this process's environment, differ from the ones recorded when the
// operator sealed or pinned: the environment of a server may be set by
// whoever starts it (an MCP client's configuration the agent can edit), and
// every validation and test prompt goes to that endpoint. The refusal is
// journaled.
func (w *Workspace) checkEndpoints(t *tenant.Tenant) error {
	m, err := w.store.Manifest(t.Name())
	if err != nil {
		return err
	}
	changes := t.Config.EndpointChanges(m.Endpoints, w.opts.Getenv)
	if len(changes) == 0 {
		return nil
	}
	if err := w.appendJournal(t.Dir, t.Name(), session.Entry{Kind: session.KindPinMismatch,
		Data: map[string]any{"endpoint_changes": changes}}); err != nil {
		slog.Error("journal an endpoint mismatch", "tenant", t.Name(), "err", err)
	}
	return &tenant.EndpointError{Tenant: t.Name(), Changes: changes}
}

// booksOf names a tenant for reading its books (journal, budget), which
// hold no frozen file: they stay readable while the tenant is refused, and
// they say why.
func (w *Workspace) booksOf(name string) (*tenant.Tenant, error) {
	if !tenant.ValidName(name) {
		return nil, refusal.New(refusal.ListTenants, "", fmt.Sprintf("%q is not a tenant name (lowercase letters, digits, - and _)", name))
	}
	dir, err := tenant.ResolveDir(w.dir, name)
	if err != nil {
		return nil, err
	}
	if _, err := os.Lstat(filepath.Join(dir, tenant.ConfigFile)); err != nil {
		return nil, refusal.New(refusal.ListTenants, "", fmt.Sprintf("tenant %q does not exist in this workspace", name))
	}
	return &tenant.Tenant{Dir: dir, Config: tenant.Config{Name: name}}, nil
}

// pinnedConfig returns the pinned copy of a tenant's tenant.toml.
func (w *Workspace) pinnedConfig(name string) func() ([]byte, error) {
	return func() ([]byte, error) { return w.store.PinnedFile(name, tenant.ConfigFile) }
}

// pinProblem is how list_tenants shows a tenant refused for a pin mismatch.
func pinProblem(pe *tenant.PinError) string {
	if pe.Unpinned {
		return fmt.Sprintf("frozen files not pinned (sealed by an older fapo): the operator must check them and run fapo pin tenants/%s", pe.Tenant)
	}
	return fmt.Sprintf("changed since %s: %s; the operator must review the change and run fapo pin tenants/%s", pe.Since, pe.What(), pe.Tenant)
}

// appendJournal writes one entry to a tenant's journal, for what is
// recorded before (or instead of) a session's operation. A failure to
// journal is logged by the caller's refusal, never hidden: it is returned.
func (w *Workspace) appendJournal(dir, name string, e session.Entry) error {
	j, err := w.journal(&tenant.Tenant{Dir: dir, Config: tenant.Config{Name: name}})
	if err != nil {
		return err
	}
	_, err = j.Append(e)
	return err
}

// Operator says who ran an operator command, for the journal.
type Operator struct {
	// Command is the command line's subcommand ("pin", "final", "session
	// new", "eval", "seal") and Args its arguments.
	Command string
	Args    []string
	// User and UID are the OS account that ran it; SudoUser is $SUDO_USER
	// when it ran under sudo.
	User     string
	UID      string
	SudoUser string
	// Terminal is whether its stdin was a terminal: a person at a keyboard,
	// or a script (or an agent's shell).
	Terminal bool
}

func (op Operator) data() map[string]any {
	d := map[string]any{"command": op.Command, "args": op.Args, "user": op.User, "uid": op.UID, "terminal": op.Terminal}
	if op.SudoUser != "" {
		d["sudo_user"] = op.SudoUser
	}
	return d
}

// RecordOperator journals that the operator ran a command on a tenant. It
// checks no pins: seal --force and pin run exactly when the files changed.
func (w *Workspace) RecordOperator(tenantName string, op Operator) error {
	t, err := w.booksOf(tenantName)
	if err != nil {
		return err
	}
	return w.appendJournal(t.Dir, tenantName, session.Entry{Kind: session.KindOperatorCommand, Data: op.data()})
}

// PinPlan is what `fapo pin` shows before it records: the frozen files as
// read now, and how they differ from the pinned ones. Pin records exactly
// these bytes, so what the operator saw is what is pinned.
type PinPlan struct {
	Tenant string
	// Unpinned: the tenant was sealed before fapo pinned anything; every
	// file is new.
	Unpinned bool
	Changes  []tenant.Change
	// Keys are tenant.toml's changed keys with their values.
	Keys []tenant.KeyChange
	// Diffs are unified diffs, pinned → now, of changed text files other
	// than the train split, by path.
	Diffs map[string]string
	// Files are the paths that will be pinned.
	Files []string
	// Endpoints are the model endpoints that differ from the pinned ones,
	// as this process's environment makes them; Pin records them.
	Endpoints []tenant.EndpointChange
	frozen    *tenant.Frozen
	endpoints map[string]dataset.Endpoint
}

// Empty says there is nothing to pin: every frozen file and endpoint is
// the pinned one.
func (p *PinPlan) Empty() bool { return len(p.Changes) == 0 && len(p.Endpoints) == 0 }

// maxDiffBytes bounds the files whose changes are shown line by line.
const maxDiffBytes = 256 << 10

// PlanPin reads the tenant's frozen files and compares them with the pinned
// ones, for the operator to review.
func (w *Workspace) PlanPin(tenantName string) (*PinPlan, error) {
	if !tenant.ValidName(tenantName) {
		return nil, fmt.Errorf("%q is not a tenant name", tenantName)
	}
	dir, err := tenant.ResolveDir(w.dir, tenantName)
	if err != nil {
		return nil, err
	}
	m, err := w.store.Manifest(tenantName)
	if err != nil {
		return nil, err
	}
	fz, err := tenant.ReadFrozen(dir, m.PinnedPaths())
	if err != nil {
		return nil, err
	}
	if fz.ConfigErr != nil {
		return nil, fmt.Errorf("tenant.toml does not load, so it cannot be pinned; fix it first:\n%w", fz.ConfigErr)
	}
	for _, p := range slices.Sorted(maps.Keys(fz.Links)) {
		return nil, fmt.Errorf("%s is a symbolic link; fapo pins files, not links: replace it with the file itself (or restore it), then pin", p)
	}
	plan := &PinPlan{Tenant: tenantName, Unpinned: m.Pinned == nil, Diffs: map[string]string{}, frozen: fz,
		endpoints: fz.Config.Endpoints(w.opts.Getenv)}
	plan.Changes = fz.Changes(m.Pinned, w.pinnedConfig(tenantName))
	plan.Endpoints = fz.Config.EndpointChanges(m.Endpoints, w.opts.Getenv)
	for p := range fz.Sums {
		plan.Files = append(plan.Files, p)
	}
	slices.Sort(plan.Files)
	for _, c := range plan.Changes {
		if c.Status != tenant.Changed || c.Path == dataset.TrainFile {
			continue
		}
		old, err := w.store.PinnedFile(tenantName, c.Path)
		if err != nil {
			continue // an older pin kept no copy: the hash is all there is
		}
		cur := fz.Source
		if c.Path != tenant.ConfigFile {
			cur = fz.Files[c.Path].Data
		}
		if c.Path == tenant.ConfigFile {
			plan.Keys, _ = tenant.DiffConfig(old, cur)
		}
		if len(old) <= maxDiffBytes && len(cur) <= maxDiffBytes && !bytes.ContainsRune(old, 0) && !bytes.ContainsRune(cur, 0) {
			plan.Diffs[c.Path] = review.UnifiedDiff(map[string][]byte{c.Path: old}, map[string][]byte{c.Path: cur})
		}
	}
	return plan, nil
}

// Pin records the plan's files as the tenant's pinned frozen files and
// journals who did it and what changed.
func (w *Workspace) Pin(plan *PinPlan, op Operator) (*dataset.Manifest, error) {
	// Marked first (importing an earlier journal if there is one): a pinned
	// tenant's journal lives in the database only.
	if err := w.MarkSealed(plan.Tenant, "pin"); err != nil {
		return nil, err
	}
	m, err := w.store.Pin(plan.Tenant, plan.frozen.Pinned(), plan.frozen.Sums[dataset.TrainFile], plan.endpoints)
	if err != nil {
		return nil, err
	}
	data := op.data()
	data["changes"], data["files"], data["endpoints"] = plan.Changes, plan.Files, plan.endpoints
	if len(plan.Endpoints) > 0 {
		data["endpoint_changes"] = plan.Endpoints
	}
	if err := w.appendJournal(plan.frozen.Dir, plan.Tenant, session.Entry{Kind: session.KindPinned, Data: data}); err != nil {
		return m, fmt.Errorf("pinned, but the journal entry failed: %w", err)
	}
	return m, nil
}
