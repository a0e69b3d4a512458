package loop

import (
	"fmt"

	"github.com/fapo-dev/fapo/engine/variant"
)

// VariantView is a verified variant with its files.
type VariantView struct {
	ID            string            `json:"id" jsonschema:"variant id"`
	Parent        string            `json:"parent,omitempty" jsonschema:"the variant it was proposed from"`
	Level         variant.Level     `json:"level" jsonschema:"prompt, parameter or structural"`
	Rationale     string            `json:"rationale,omitempty" jsonschema:"why it was proposed"`
	TargetCluster string            `json:"target_cluster,omitempty" jsonschema:"the failure cluster it targets (class@step or none)"`
	Session       string            `json:"session,omitempty" jsonschema:"the session that proposed it"`
	Files         map[string]string `json:"files" jsonschema:"its files by path, as the server verified them"`
	Truncated     bool              `json:"truncated,omitempty" jsonschema:"long files were shortened"`
}

// GetVariant returns a variant's manifest and files, verified.
func (w *Workspace) GetVariant(tenantName, id string) (*VariantView, error) {
	t, err := w.tenant(tenantName)
	if err != nil {
		return nil, err
	}
	vs, err := w.variants(t)
	if err != nil {
		return nil, err
	}
	sess, _ := w.activeSession(t)
	v, err := w.getVariant(t, vs, sess, id)
	if err != nil {
		return nil, err
	}
	m := v.Manifest
	out := &VariantView{ID: string(v.ID), Parent: string(m.Parent), Level: m.Level, Rationale: m.Rationale,
		TargetCluster: m.TargetCluster, Session: m.Session, Files: map[string]string{}}
	budget := 36000 / max(1, len(v.Files()))
	for p, b := range v.Files() {
		text, cut := clipText(string(b), budget)
		out.Files[p] = text
		out.Truncated = out.Truncated || cut
	}
	return out, nil
}

// DiffVariants returns the unified diff from a to b; truncated says a long
// diff was shortened (its end says by how much).
func (w *Workspace) DiffVariants(tenantName, a, b string) (diff string, truncated bool, err error) {
	t, err := w.tenant(tenantName)
	if err != nil {
		return "", false, err
	}
	vs, err := w.variants(t)
	if err != nil {
		return "", false, err
	}
	ida, err := variant.ParseID(a)
	if err != nil {
		return "", false, err
	}
	idb, err := variant.ParseID(b)
	if err != nil {
		return "", false, err
	}
	d, err := vs.Diff(ida, idb)
	if err != nil {
		return "", false, err
	}
	if d == "" {
		return "", false, fmt.Errorf("%s and %s have identical files", a, b)
	}
	d, truncated = clipText(d, 38000)
	return d, truncated, nil
}
