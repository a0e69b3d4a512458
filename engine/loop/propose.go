package loop

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/pipeline"
	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/review"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/variant"
)

// ProposeRequest is a proposed change to a parent variant.
type ProposeRequest struct {
	Tenant        string
	Parent        string // default: the incumbent
	Level         variant.Level
	Rationale     string
	TargetCluster string
	// Prompts replaces the user prompt template of a step, by step id.
	Prompts map[string]string
	// SystemPrompts replaces (or adds) the system template of a step.
	SystemPrompts map[string]string
	// Params sets keys of a step's [steps.params] table (temperature,
	// max_tokens, top_p, seed, n) or of the step itself (k, model), by step id.
	Params map[string]map[string]any
	// ChainTOML replaces chain.toml as a whole (structural proposals).
	ChainTOML string
	// Files adds or replaces files by path (prompts/<name>.md), e.g. the
	// prompt of a step a structural proposal adds.
	Files map[string]string
}

// ProposeResult describes the new variant.
type ProposeResult struct {
	Variant string          `json:"variant" jsonschema:"the new variant's id"`
	Parent  string          `json:"parent" jsonschema:"its parent"`
	Level   variant.Level   `json:"level" jsonschema:"its level"`
	Changes []review.Change `json:"changes" jsonschema:"what changed, file by file"`
	Diff    string          `json:"diff" jsonschema:"unified diff against the parent"`
	Next    string          `json:"next" jsonschema:"what to do now"`
	Budget  BudgetView      `json:"budget_left" jsonschema:"what is left of the session's budget"`
}

// Propose writes a new immutable variant from a parent and the requested
// changes. Enforced here, before anything is written: frozen files, what a
// variant may contain, the declared level against what actually changed,
// the escalation policy and the variant budget.
func (w *Workspace) Propose(ctx context.Context, req ProposeRequest) (*ProposeResult, error) {
	o, err := w.begin(req.Tenant)
	if err != nil {
		return nil, err
	}
	defer o.close()
	t, sess, st := o.t, o.sess, o.st
	if strings.TrimSpace(req.Rationale) == "" {
		return nil, fmt.Errorf("rationale is empty: say which failure cluster this addresses and why the change should fix it")
	}
	parent, err := o.variant(req.Parent)
	if err != nil {
		return nil, err
	}
	files, err := applyChanges(parent, req)
	if err != nil {
		return nil, err
	}
	for p := range files {
		if st.Scope.Frozen(p) {
			return nil, fmt.Errorf("%s is frozen by the session's scope contract (%v): a proposal may not change it", p, st.Scope.FrozenFiles)
		}
	}
	cl, err := review.Classify(parent.Files(), files)
	if err != nil {
		return nil, err
	}
	switch {
	case cl.Level == "":
		return nil, fmt.Errorf("the proposal changes nothing relative to %s", parent.ID)
	case cl.Level != req.Level:
		var details []string
		for _, ch := range cl.Changes {
			details = append(details, ch.File+": "+ch.Detail+" ("+ch.Level.String()+")")
		}
		return nil, fmt.Errorf("declared level %q, but the changes are %s-level: %s; propose it at level %s (which the escalation policy must allow)",
			req.Level, cl.Level, strings.Join(details, "; "), cl.Level)
	}
	if t.Config.Pipeline != nil && cl.Level == variant.LevelStructural {
		if err := pipeline.CheckStructural(parent.Files(), files, *t.Config.Pipeline); err != nil {
			return nil, err
		}
	}
	if err := st.Allowed(req.Level); err != nil {
		return nil, err // the level's own refusal comes before any other
	}
	if req.TargetCluster, err = targetCluster(st, req.TargetCluster); err != nil {
		return nil, err
	}
	// Dry run before anything is written or charged: a chain that does not
	// load, or a template that does not render on train cases (a typo such
	// as .context.tiket), would only fail review after costing a variant.
	train, err := w.trainAll(t)
	if err != nil {
		return nil, fmt.Errorf("read train split: %w", err)
	}
	if err := w.dryRun(t, files, train); err != nil {
		return nil, fmt.Errorf("nothing was written or charged: the proposed chain fails its dry run (loaded and rendered on train cases, no model call): %w; fix it and propose again", err)
	}
	vs, err := w.variants(t)
	if err != nil {
		return nil, err
	}
	v, err := sess.Propose(req.Level, func() (*variant.Variant, error) {
		return vs.Create(ctx, variant.Proposal{Parent: parent.ID, Level: req.Level, Rationale: req.Rationale,
			TargetCluster: req.TargetCluster, Files: files, Session: sess.ID()})
	})
	if err != nil {
		return nil, err
	}
	st, err = sess.State()
	if err != nil {
		return nil, err
	}
	diff := review.UnifiedDiff(parent.Files(), v.Files())
	diff, _ = clipText(diff, 12000)
	return &ProposeResult{Variant: string(v.ID), Parent: string(parent.ID), Level: req.Level, Changes: cl.Changes,
		Diff: diff, Next: fmt.Sprintf("call review_variant for %s; it must pass before %s may touch validation", v.ID, v.ID),
		Budget: budgetView(st)}, nil
}

// targetCluster checks a proposal's target cluster against the latest
// train attribution: it names one of its clusters ("format@answer", spaces
// ignored) or is "none"; left out, the proposal targets none.
func targetCluster(st *session.State, name string) (string, error) {
	n := strings.ReplaceAll(strings.TrimSpace(name), " ", "")
	if n == "" || strings.EqualFold(n, "none") {
		return strings.ToLower(n), nil
	}
	if st.Dominant == nil || len(st.Dominant.Clusters) == 0 && st.Dominant.Class == "" {
		return "", refusal.New(refusal.Attribute, st.Scope.Tenant, fmt.Sprintf("target_cluster %q names no cluster: no train attribution is recorded in this session yet (pass none, or name one of its clusters once there is)", clipID(name)))
	}
	clusters := st.Dominant.Clusters
	if len(clusters) == 0 { // an attribution journaled before clusters were
		clusters = []string{st.Dominant.Class + "@" + st.Dominant.Step}
	}
	for _, c := range clusters {
		if strings.EqualFold(c, n) {
			return c, nil
		}
	}
	return "", fmt.Errorf("target_cluster %q is not a cluster of the latest train attribution (run %s): name one of %s, or pass none",
		clipID(name), st.Dominant.Run, strings.Join(clusters, ", "))
}

// applyChanges builds the candidate's complete file set from the parent's.
func applyChanges(parent *variant.Variant, req ProposeRequest) (map[string][]byte, error) {
	files := parent.Files()
	if req.ChainTOML != "" {
		files[chain.FileName] = []byte(req.ChainTOML)
	}
	for p, text := range req.Files {
		if err := variant.ValidatePath(p); err != nil {
			return nil, fmt.Errorf("files[%q]: %w", p, err)
		}
		files[p] = []byte(text)
	}
	if len(req.Prompts) > 0 || len(req.SystemPrompts) > 0 || len(req.Params) > 0 {
		var doc map[string]any
		if _, err := toml.Decode(string(files[chain.FileName]), &doc); err != nil {
			return nil, fmt.Errorf("chain.toml of the parent does not parse: %w", err)
		}
		steps := stepTables(doc)
		find := func(id string) (map[string]any, error) {
			for _, s := range steps {
				if s["id"] == id {
					return s, nil
				}
			}
			var ids []string
			for _, s := range steps {
				ids = append(ids, fmt.Sprint(s["id"]))
			}
			return nil, fmt.Errorf("step %q does not exist in %s's chain (steps: %s)", id, parent.ID, strings.Join(ids, ", "))
		}
		for _, id := range slices.Sorted(maps.Keys(req.Prompts)) {
			s, err := find(id)
			if err != nil {
				return nil, err
			}
			p, _ := s["prompt"].(string)
			if p == "" {
				return nil, fmt.Errorf("step %q has no prompt file (kind %v): prompts apply to llm steps", id, s["kind"])
			}
			files[p] = []byte(req.Prompts[id])
		}
		var edits []variant.StepEdit
		for _, id := range slices.Sorted(maps.Keys(req.SystemPrompts)) {
			s, err := find(id)
			if err != nil {
				return nil, err
			}
			p, _ := s["system"].(string)
			if p == "" {
				// Adding a system prompt where there was none reads a new
				// file: the chain changes, which Classify calls structural.
				p = "prompts/" + id + ".system.md"
				edits = append(edits, variant.StepEdit{Step: id, Key: "system", Kind: variant.KindString, Value: p})
			}
			files[p] = []byte(req.SystemPrompts[id])
		}
		for _, id := range slices.Sorted(maps.Keys(req.Params)) {
			if _, err := find(id); err != nil {
				return nil, err
			}
			for _, k := range slices.Sorted(maps.Keys(req.Params[id])) {
				pk, ok := paramKinds[k]
				if !ok {
					return nil, fmt.Errorf("params[%q][%q]: not a parameter; parameters are %s", id, k, strings.Join(paramNames(), ", "))
				}
				edits = append(edits, variant.StepEdit{Step: id, Table: pk.table, Key: k, Kind: pk.kind, Value: req.Params[id][k]})
			}
		}
		if len(edits) > 0 {
			out, err := variant.EditStepKeys(files[chain.FileName], edits)
			if err != nil {
				return nil, err
			}
			files[chain.FileName] = out
		}
	}
	return files, nil
}

// paramKinds are the keys a parameter proposal may set: where they live
// in a [[steps]] table and the TOML type the chain decodes them as (a JSON
// number 64 must become the integer 64 for max_tokens, 64.0 for
// temperature).
var paramKinds = map[string]struct {
	table string
	kind  variant.ValueKind
}{
	"temperature": {"params", variant.KindFloat}, "top_p": {"params", variant.KindFloat},
	"max_tokens": {"params", variant.KindInteger}, "seed": {"params", variant.KindInteger},
	"n": {"params", variant.KindInteger}, "stop": {"params", variant.KindStrings},
	"k": {"", variant.KindInteger}, "model": {"", variant.KindString}, "max_rounds": {"", variant.KindInteger},
	"max_iterations": {"", variant.KindInteger}, "max_tool_calls": {"", variant.KindInteger},
}

func paramNames() []string { return slices.Sorted(maps.Keys(paramKinds)) }

func stepTables(doc map[string]any) []map[string]any {
	if s, ok := doc["steps"].([]map[string]any); ok {
		return s
	}
	return nil
}
