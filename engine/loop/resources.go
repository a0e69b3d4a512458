package loop

import (
	"github.com/fapo-dev/fapo/engine/session"
)

// TenantConfig returns the text of a tenant's tenant.toml (frozen, readable).
func (w *Workspace) TenantConfig(tenantName string) (string, error) {
	t, err := w.tenant(tenantName)
	if err != nil {
		return "", err
	}
	return string(t.Source), nil // the verified bytes, not the file as it is now
}

// Journal returns the last limit entries of a tenant's journal, as the
// sealed store's database holds it (never the workspace mirror). Entries
// hold aggregates, verdicts and decisions, never held-out cases.
func (w *Workspace) Journal(tenantName string, limit int) ([]session.Entry, error) {
	t, err := w.booksOf(tenantName) // readable while refused: it says why
	if err != nil {
		return nil, err
	}
	j, err := w.journal(t)
	if err != nil {
		return nil, err
	}
	var out []session.Entry
	if err := j.Read(func(e session.Entry) error {
		out = append(out, e)
		if limit > 0 && len(out) > limit {
			out = out[1:]
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return out, nil
}

// Scope returns the scope contract of the tenant's session, from the
// sealed store's database.
func (w *Workspace) Scope(tenantName string) (*session.Scope, error) {
	t, err := w.tenant(tenantName)
	if err != nil {
		return nil, err
	}
	sess, err := w.activeSession(t)
	if err != nil {
		return nil, err
	}
	sc := sess.Scope
	return &sc, nil
}
