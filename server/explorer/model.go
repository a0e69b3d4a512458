package explorer

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fapo-dev/fapo/engine/attribution"
	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/scoring"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/statedb"
	"github.com/fapo-dev/fapo/engine/tenant"
	"github.com/fapo-dev/fapo/engine/variant"
)

// notFoundError and badRequestError choose the HTTP status of an error.
type notFoundError struct{ msg string }

func (e notFoundError) Error() string { return e.msg }

type badRequestError struct{ msg string }

func (e badRequestError) Error() string { return e.msg }

// TenantSummary is one tenant on the dashboard.
type TenantSummary struct {
	Name        string         `json:"name"`
	Description string         `json:"description,omitempty"`
	TaskType    string         `json:"task_type"`
	Target      session.Target `json:"target"`
	Sessions    int            `json:"sessions"`
	// Session is the latest session; the fields below describe it.
	Session        string         `json:"session,omitempty"`
	Incumbent      string         `json:"incumbent,omitempty"`
	IncumbentScore *float64       `json:"incumbent_validation,omitempty"`
	BestScore      *float64       `json:"best_validation,omitempty"`
	TargetMet      bool           `json:"target_met"`
	Used           session.Usage  `json:"used"`
	Budget         session.Budget `json:"budget"`
	TrainRuns      int            `json:"train_runs"`
	LastActivity   *time.Time     `json:"last_activity,omitempty"`
	// FinalTest is the latest one-shot test evaluation (fapo final), an
	// aggregate the journal records; nil before the first.
	FinalTest *FinalScore `json:"final_test,omitempty"`
	Problems  []string    `json:"problems,omitempty"`
}

// FinalScore is a test-split aggregate of fapo final.
type FinalScore struct {
	Variant string    `json:"variant"`
	Score   float64   `json:"score_mean"`
	Cases   int       `json:"cases"`
	Runs    int       `json:"runs"` // test evaluations so far; more than 1 only when forced
	Time    time.Time `json:"time"`
}

// Dashboard is the workspace's tenants.
type Dashboard struct {
	Workspace string          `json:"workspace"`
	Tenants   []TenantSummary `json:"tenants"`
	// Problems are tenants that do not load.
	Problems []string `json:"problems,omitempty"`
}

// SessionView is one session as derived from the journal.
type SessionView struct {
	ID          string               `json:"id"`
	Scope       session.Scope        `json:"scope"`
	Incumbent   string               `json:"incumbent"`
	TargetMet   bool                 `json:"target_met"`
	Used        session.Usage        `json:"used"`
	Left        session.Left         `json:"left"`
	OpenLevels  []variant.Level      `json:"open_levels"`
	Points      []ScorePoint         `json:"validation_history"`
	Train       []TrainPoint         `json:"train_history"`
	Comparisons []session.Comparison `json:"comparisons"`
	Dominant    *session.Dominant    `json:"dominant,omitempty"`
	Error       string               `json:"error,omitempty"`
	state       *session.State
}

// ScorePoint is one validation aggregate of a session, in journal order.
// Validation runs live in the sealed store: only the aggregate is shown.
type ScorePoint struct {
	Iteration int     `json:"iteration"`
	Variant   string  `json:"variant"`
	Value     float64 `json:"score_mean"`
	Cases     int     `json:"cases"`
	// Outcome is baseline, accepted, rejected or evaluated (not compared).
	Outcome string `json:"outcome"`
	// Incumbent is the incumbent's validation score after this point.
	Incumbent float64 `json:"incumbent_score"`
	// Model is the task model of the result when there are several;
	// USDPerCase what one evaluation of a case cost (0: not recorded).
	Model      string    `json:"model,omitempty"`
	USDPerCase float64   `json:"usd_per_case,omitempty"`
	Seq        int64     `json:"seq"`
	Time       time.Time `json:"time"`
}

// TrainPoint is one train aggregate; its run is in the workspace.
type TrainPoint struct {
	Variant string  `json:"variant"`
	Value   float64 `json:"score_mean"`
	Cases   int     `json:"cases"`
	Run     string  `json:"run,omitempty"`
}

// TenantPage is a tenant's overview.
type TenantPage struct {
	Tenant   TenantSummary  `json:"tenant"`
	Sessions []*SessionView `json:"sessions"`
	// Session is the session shown (?session=, default the latest).
	Session *SessionView   `json:"-"`
	Chart   *ScoreChart    `json:"-"`
	Pareto  *ParetoChart   `json:"-"`
	Runs    []*run.Summary `json:"train_runs"`
}

// workspace reads a workspace's on-disk state, and the sessions and journal
// from the sealed store's database (read-only: what a person sees here cannot
// be forged by editing the workspace). It holds nothing between requests but
// the database handle: every page is what the disk and the database say now.
type workspace struct {
	dir string
	// home is the sealed store; only its database's journal and sessions
	// are read, never a held-out split or run.
	home string

	mu sync.Mutex
	db *statedb.DB
}

// state returns the read-only state database, or nil while no fapo process
// has created one (then there are no sessions yet).
func (w *workspace) state() (*statedb.DB, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.db != nil {
		return w.db, nil
	}
	if w.home == "" {
		return nil, nil
	}
	db, err := statedb.OpenReadOnly(w.home)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ready, err := session.Ready(context.Background(), db)
	if err != nil || !ready {
		_ = db.Close()
		return nil, err
	}
	w.db = db
	return db, nil
}

// journalOf returns the tenant's journal in the state database; nil when
// there is none yet.
func (w *workspace) journalOf(t *tenant.Tenant) (*session.Journal, error) {
	db, err := w.state()
	if db == nil || err != nil {
		return nil, err
	}
	return session.OpenJournal(db, t.Name()), nil
}

func (w *workspace) close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.db == nil {
		return nil
	}
	err := w.db.Close()
	w.db = nil
	return err
}

// trainRuns lists the tenant's train runs that the server recorded,
// newest first; a recorded run whose summary is missing, unreadable or
// contradicts the index is left out.
func (w *workspace) trainRuns(t *tenant.Tenant) ([]*run.Summary, error) {
	db, err := w.state()
	if db == nil || err != nil {
		return nil, err
	}
	recs, err := db.Runs(context.Background(), t.Name(), "train")
	if err != nil {
		return nil, err
	}
	store := run.NewStore(t.RunsDir(), false)
	var out []*run.Summary
	for _, rec := range recs {
		sum, err := store.Summary(rec.ID)
		if err != nil || sum.Split != rec.Split || sum.Variant != rec.Variant || sum.RunID != rec.ID {
			continue
		}
		out = append(out, sum)
	}
	slices.SortFunc(out, func(a, b *run.Summary) int { return strings.Compare(b.RunID, a.RunID) })
	return out, nil
}

// tenant resolves a tenant by name only: a path from a URL could point
// anywhere.
func (w *workspace) tenant(name string) (*tenant.Tenant, error) {
	if !tenant.ValidName(name) {
		return nil, badRequestError{fmt.Sprintf("%q is not a tenant name (lowercase letters, digits, - and _): pick one on the dashboard", name)}
	}
	t, err := tenant.Resolve(w.dir, name)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, notFoundError{fmt.Sprintf("tenant %q does not exist in this workspace: pick one on the dashboard", name)}
		}
		return nil, err
	}
	return t, nil
}

func (w *workspace) dashboard() *Dashboard {
	ts, errs := tenant.List(w.dir)
	d := &Dashboard{Workspace: w.dir, Tenants: []TenantSummary{}}
	for _, t := range ts {
		sum, _ := w.summary(t)
		d.Tenants = append(d.Tenants, sum)
	}
	for _, err := range errs {
		d.Problems = append(d.Problems, err.Error())
	}
	return d
}

// summary describes a tenant and its sessions (oldest first).
func (w *workspace) summary(t *tenant.Tenant) (TenantSummary, []*SessionView) {
	c := t.Config
	s := TenantSummary{Name: c.Name, Description: c.Description, TaskType: c.TaskType,
		Target: session.Target{Metric: c.Target.Metric, Min: c.Target.Min},
		Budget: session.Budget{MaxVariants: c.Budget.MaxVariants, MaxValidationEvals: c.Budget.MaxValidationEval, MaxUSD: c.Budget.MaxUSD}}
	sessions, lastActivity, err := w.sessions(t)
	if err != nil {
		s.Problems = append(s.Problems, err.Error())
	}
	s.Sessions = len(sessions)
	// Last activity is the latest of the journal and the train runs: an
	// operator's fapo eval writes a run but no journal entry.
	latest := func(tm time.Time) {
		if !tm.IsZero() && (s.LastActivity == nil || tm.After(*s.LastActivity)) {
			s.LastActivity = &tm
		}
	}
	if runs, err := w.trainRuns(t); err == nil {
		s.TrainRuns = len(runs)
		for _, r := range runs {
			latest(r.Started)
			latest(r.Finished)
		}
	}
	if lastActivity != nil {
		latest(*lastActivity)
	}
	s.FinalTest = w.finalScore(t)
	if len(sessions) == 0 {
		return s, sessions
	}
	last := sessions[len(sessions)-1]
	if last.Error != "" {
		s.Problems = append(s.Problems, "session "+last.ID+": "+last.Error)
		return s, sessions
	}
	s.Session, s.Incumbent, s.TargetMet = last.ID, last.Incumbent, last.TargetMet
	s.Target, s.Used, s.Budget = last.Scope.Target, last.Used, last.Scope.Budget
	for _, p := range last.Points {
		if p.Variant == last.Incumbent {
			v := p.Value
			s.IncumbentScore = &v
		}
		if s.BestScore == nil || p.Value > *s.BestScore {
			v := p.Value
			s.BestScore = &v
		}
	}
	return s, sessions
}

// sessions replays every session of a tenant from the journal in the
// state database, and says when the journal last changed. A tenant without
// a journal has no sessions.
func (w *workspace) sessions(t *tenant.Tenant) ([]*SessionView, *time.Time, error) {
	j, err := w.journalOf(t)
	if j == nil || err != nil {
		return nil, nil, err
	}
	scopes, err := j.Sessions()
	if err != nil {
		return nil, nil, err
	}
	var last *time.Time
	if err := j.Read(func(e session.Entry) error {
		when := e.Time
		last = &when
		return nil
	}); err != nil {
		return nil, nil, err
	}
	var out []*SessionView
	for _, sc := range scopes {
		out = append(out, sessionView(j, sc.ID))
	}
	return out, last, nil
}

func sessionView(j *session.Journal, id string) *SessionView {
	v := &SessionView{ID: id, Points: []ScorePoint{}, Train: []TrainPoint{}, Comparisons: []session.Comparison{}}
	s, err := session.LoadSession(j, id)
	if err == nil {
		v.state, err = s.State()
	}
	if err != nil {
		v.Error = err.Error()
		return v
	}
	st := v.state
	v.Scope, v.Incumbent, v.TargetMet = st.Scope, string(st.Incumbent), st.TargetMet()
	v.Used, v.Left, v.OpenLevels, v.Dominant = st.Used, st.Left(), st.OpenLevels(), st.Dominant
	v.Comparisons = append(v.Comparisons, st.Comparisons...)
	outcome := map[variant.ID]string{}
	for _, c := range st.Comparisons {
		outcome[c.Candidate] = "rejected"
		if c.Decision.Accept {
			outcome[c.Candidate] = "accepted"
		}
	}
	incumbent, current := variant.Baseline, 0.0
	for i, a := range st.History {
		o := outcome[a.Variant]
		switch {
		case a.Variant == variant.Baseline:
			o = "baseline"
		case o == "":
			o = "evaluated"
		}
		if a.Variant == incumbent || o == "accepted" {
			incumbent, current = a.Variant, a.Value
		}
		v.Points = append(v.Points, ScorePoint{Iteration: i + 1, Variant: string(a.Variant), Value: a.Value, Cases: a.Cases,
			Outcome: o, Incumbent: current, Seq: a.Seq, Time: a.Time, Model: a.Model, USDPerCase: a.USDPerCase})
	}
	for _, a := range st.Train {
		v.Train = append(v.Train, TrainPoint{Variant: string(a.Variant), Value: a.Value, Cases: a.Cases, Run: a.Run})
	}
	return v
}

func (w *workspace) tenantPage(name, sessionID string) (*TenantPage, error) {
	t, err := w.tenant(name)
	if err != nil {
		return nil, err
	}
	sum, sessions := w.summary(t)
	p := &TenantPage{Tenant: sum, Sessions: sessions}
	if p.Sessions == nil {
		p.Sessions = []*SessionView{}
	}
	if p.Session, err = pickSession(sessions, sessionID); err != nil {
		return nil, err
	}
	if p.Session != nil {
		p.Chart = scoreChart(p.Session)
		p.Pareto = paretoChart(p.Session)
	}
	if p.Runs, err = w.trainRuns(t); err != nil {
		return nil, err
	}
	if p.Runs == nil {
		p.Runs = []*run.Summary{}
	}
	return p, nil
}

func pickSession(sessions []*SessionView, id string) (*SessionView, error) {
	if id == "" {
		if len(sessions) == 0 {
			return nil, nil
		}
		return sessions[len(sessions)-1], nil
	}
	if _, err := session.ParseSessionID(id); err != nil {
		return nil, badRequestError{err.Error()}
	}
	for _, s := range sessions {
		if s.ID == id {
			return s, nil
		}
	}
	return nil, notFoundError{fmt.Sprintf("session %s does not exist in this tenant", id)}
}

// VariantNode is one variant in the lineage.
type VariantNode struct {
	ID            string        `json:"id"`
	Parent        string        `json:"parent,omitempty"`
	Level         variant.Level `json:"level,omitempty"`
	Rationale     string        `json:"rationale,omitempty"`
	TargetCluster string        `json:"target_cluster,omitempty"`
	Session       string        `json:"session,omitempty"`
	Created       *time.Time    `json:"created,omitempty"`
	Integrity     string        `json:"integrity"`
	Problem       string        `json:"problem,omitempty"`
	// Review is the latest verdict of the review gate in its session.
	Review *session.Review `json:"review,omitempty"`
	// Decision is accepted or rejected once compared.
	Decision   string   `json:"decision,omitempty"`
	Incumbent  bool     `json:"incumbent,omitempty"`
	Validation *float64 `json:"validation_score,omitempty"`
	Depth      int      `json:"depth"`
}

// Lineage is every variant of a tenant, in tree order (a parent before its
// children, depth-first).
type Lineage struct {
	Tenant   string         `json:"tenant"`
	Variants []*VariantNode `json:"variants"`
}

func (w *workspace) lineage(name string) (*Lineage, error) {
	t, err := w.tenant(name)
	if err != nil {
		return nil, err
	}
	_, sessions := w.summary(t)
	ids, err := variantIDs(t)
	if err != nil {
		return nil, err
	}
	nodes := map[string]*VariantNode{}
	var order []*VariantNode
	for _, id := range ids {
		sv, err := readVariant(t, id)
		if isIncomplete(err) {
			continue
		}
		n := &VariantNode{ID: string(id), Integrity: IntegrityTampered}
		if err != nil {
			n.Problem = tamperProblem(err)
		} else {
			m := sv.Manifest
			n.Parent, n.Level, n.Rationale, n.TargetCluster, n.Session = string(m.Parent), m.Level, m.Rationale, m.TargetCluster, m.Session
			n.Integrity = sv.Integrity
			if !m.Created.IsZero() {
				c := m.Created
				n.Created = &c
			}
		}
		annotate(n, sessions)
		nodes[n.ID] = n
		order = append(order, n)
	}
	children := map[string][]*VariantNode{}
	var roots []*VariantNode
	for _, n := range order {
		if p, ok := nodes[n.Parent]; ok && p != n {
			children[n.Parent] = append(children[n.Parent], n)
		} else {
			roots = append(roots, n)
		}
	}
	out := &Lineage{Tenant: t.Name(), Variants: []*VariantNode{}}
	seen := map[string]bool{}
	var walk func(n *VariantNode, depth int)
	walk = func(n *VariantNode, depth int) {
		if seen[n.ID] {
			return
		}
		seen[n.ID] = true
		n.Depth = depth
		out.Variants = append(out.Variants, n)
		for _, c := range children[n.ID] {
			walk(c, depth+1)
		}
	}
	for _, r := range roots {
		walk(r, 0)
	}
	for _, n := range order { // parent cycles: still listed
		walk(n, 0)
	}
	return out, nil
}

// annotate adds what the session of a variant says about it: the baseline
// is described by the latest session, a proposal by the one it was made in.
func annotate(n *VariantNode, sessions []*SessionView) {
	var sv *SessionView
	for _, s := range sessions {
		if s.state == nil {
			continue
		}
		if s.ID == n.Session || (n.ID == string(variant.Baseline) && n.Session == "") {
			sv = s
		}
	}
	if sv == nil {
		return
	}
	id := variant.ID(n.ID)
	if r, ok := sv.state.LatestReview(id); ok {
		n.Review = &r
	}
	for _, c := range sv.state.Comparisons {
		if c.Candidate == id {
			n.Decision = "rejected"
			if c.Decision.Accept {
				n.Decision = "accepted"
			}
		}
	}
	if a, ok := sv.state.Validation(id); ok {
		v := a.Value
		n.Validation = &v
	}
	n.Incumbent = sv.state.Incumbent == id && sv == sessions[len(sessions)-1]
}

// VariantPage is one variant: its files and its diff against another
// (its parent unless ?against= says otherwise).
type VariantPage struct {
	Tenant  string        `json:"tenant"`
	Variant *VariantNode  `json:"variant"`
	Against string        `json:"against,omitempty"`
	Files   []VariantFile `json:"files"`
	Diff    []FileDiff    `json:"diff"`
	// Unified is the same diff as variant diffs are shown to the agent.
	Unified string `json:"unified_diff"`
}

// VariantFile is one file of a variant.
type VariantFile struct {
	Path    string `json:"path"`
	Bytes   int    `json:"bytes"`
	Changed bool   `json:"changed"`
	Content string `json:"content"`
}

func (w *workspace) variantPage(name, id, against string) (*VariantPage, error) {
	t, err := w.tenant(name)
	if err != nil {
		return nil, err
	}
	vid, err := variant.ParseID(id)
	if err != nil {
		return nil, badRequestError{err.Error()}
	}
	lin, err := w.lineage(name)
	if err != nil {
		return nil, err
	}
	var node *VariantNode
	for _, n := range lin.Variants {
		if n.ID == id {
			node = n
		}
	}
	if node == nil {
		return nil, notFoundError{fmt.Sprintf("variant %s does not exist in tenant %s: pick one in the lineage", id, name)}
	}
	p := &VariantPage{Tenant: name, Variant: node, Files: []VariantFile{}, Diff: []FileDiff{}}
	sv, err := readVariant(t, vid)
	if err != nil {
		return p, nil // the node says it is tampered; nothing of it is shown
	}
	if against == "" {
		against = string(sv.Manifest.Parent)
	}
	var base map[string][]byte
	if against != "" {
		aid, err := variant.ParseID(against)
		if err != nil {
			return nil, badRequestError{err.Error()}
		}
		av, err := readVariant(t, aid)
		if err != nil {
			if errors.As(err, new(*variant.NotFoundError)) {
				return nil, notFoundError{err.Error()}
			}
			return nil, fmt.Errorf("cannot diff against %s: %w", aid, err)
		}
		p.Against, base = against, av.Files
		p.Diff = sideBySide(base, sv.Files)
		if p.Unified, err = variant.UnifiedDiff(against, id, base, sv.Files); err != nil {
			return nil, err
		}
	}
	for _, rel := range slices.Sorted(maps.Keys(sv.Files)) {
		old, ok := base[rel]
		p.Files = append(p.Files, VariantFile{Path: rel, Bytes: len(sv.Files[rel]), Content: string(sv.Files[rel]),
			Changed: base != nil && (!ok || string(old) != string(sv.Files[rel]))})
	}
	return p, nil
}

// RunPage is a train run: its summary, attribution and a page of its cases.
type RunPage struct {
	Tenant      string              `json:"tenant"`
	Summary     *run.Summary        `json:"summary"`
	Attribution *AttributionSummary `json:"attribution"`
	Query       CaseQuery           `json:"query"`
	Matched     int                 `json:"matched"`
	Cases       []CaseRow           `json:"cases"`
	// Classes and Steps are the values the filters offer.
	Classes []string   `json:"-"`
	Steps   []string   `json:"-"`
	Chart   *BarChart  `json:"-"`
	Pages   []PageLink `json:"-"`
}

// AttributionSummary is a run's attribution without its per-case list,
// which the case rows carry.
type AttributionSummary struct {
	Cases int `json:"cases"`
	// Errored and Failed count as every tool does: no answer because of
	// the infrastructure, and scored below full marks.
	Errored          int                   `json:"errored"`
	Failed           int                   `json:"failed"`
	FailBelow        float64               `json:"fail_below"`
	Clusters         []attribution.Cluster `json:"clusters"`
	Dominant         *attribution.Cluster  `json:"dominant,omitempty"`
	RecommendedLevel variant.Level         `json:"recommended_level,omitempty"`
	Note             string                `json:"note,omitempty"`
}

// CaseRow is one case in a run's table.
type CaseRow struct {
	CaseID   string        `json:"case_id"`
	Score    float64       `json:"composite_score"`
	Failed   bool          `json:"failed"` // scored below full marks
	Errored  bool          `json:"errored,omitempty"`
	Class    string        `json:"class,omitempty"`
	RootStep string        `json:"root_step,omitempty"`
	Level    variant.Level `json:"level,omitempty"`
	Evidence string        `json:"evidence,omitempty"`
	Error    string        `json:"error,omitempty"`
}

// CaseQuery is the table's state, kept in the URL.
type CaseQuery struct {
	Q      string `json:"q,omitempty"`
	Class  string `json:"class,omitempty"`
	Step   string `json:"step,omitempty"`
	Failed bool   `json:"failed,omitempty"`
	Sort   string `json:"sort"`
	Desc   bool   `json:"desc,omitempty"`
	Offset int    `json:"offset"`
	Limit  int    `json:"limit"`
}

// PageLink is one link of the table's pager.
type PageLink struct {
	Label   string
	Offset  int
	Current bool
}

// sortKeys are the columns a case table sorts by.
var sortKeys = []string{"case", "score", "class", "step"}

func (w *workspace) trainRun(t *tenant.Tenant, id string) (*run.Store, *run.Summary, error) {
	if !run.ValidID(id) {
		return nil, nil, badRequestError{fmt.Sprintf("%q is not a run id (run ids look like r20261123T101500Z-a1b2c3)", id)}
	}
	// One answer for unknown, held-out and planted runs alike: the page
	// never confirms that a held-out run exists.
	notFound := notFoundError{fmt.Sprintf("run %s is not a train run of tenant %s recorded by the server (validation and test runs are sealed and never shown)", id, t.Name())}
	db, err := w.state() // opened on first use: this may be the first page asked for
	if err != nil {
		return nil, nil, err
	}
	if db == nil {
		return nil, nil, notFound
	}
	rec, ok, err := db.Run(context.Background(), t.Name(), id)
	if err != nil {
		return nil, nil, err
	}
	if !ok || rec.Split != "train" {
		return nil, nil, notFound
	}
	store := run.NewStore(t.RunsDir(), false)
	sum, err := store.Summary(id)
	if err != nil {
		return nil, nil, err
	}
	if sum.Split != rec.Split || sum.Variant != rec.Variant || sum.RunID != id {
		return nil, nil, notFound
	}
	return store, sum, nil
}

func (w *workspace) runCases(t *tenant.Tenant, store *run.Store, id string) ([]run.CaseResult, error) {
	var out []run.CaseResult
	err := store.Cases(id, func(cr run.CaseResult) error {
		out = append(out, cr)
		return nil
	})
	return out, err
}

// attribute classifies a run's failures as the attribute tool does: the
// steps of the run's variant (its chain), the tenant's thresholds. When the
// chain cannot be loaded the steps come from the traces.
func attribute(t *tenant.Tenant, variantID string, results []run.CaseResult) *attribution.Report {
	var steps []chain.StepInfo
	if vid, err := variant.ParseID(variantID); err == nil {
		if sv, err := readVariant(t, vid); err == nil {
			// The checked bytes, never the directory again.
			if ch, err := chain.LoadFiles(sv.Files, chain.CorpusDir(t.Dir)); err == nil {
				steps = ch.Steps()
			}
		}
	}
	if steps == nil && len(results) > 0 {
		for _, st := range results[0].Trace.Steps {
			steps = append(steps, chain.StepInfo{ID: st.StepID, Kind: st.Kind})
		}
	}
	return attribution.Attribute(results, steps, loop.AttributionOptions(t))
}

func (w *workspace) runPage(name, id string, q CaseQuery) (*RunPage, error) {
	t, err := w.tenant(name)
	if err != nil {
		return nil, err
	}
	store, sum, err := w.trainRun(t, id)
	if err != nil {
		return nil, err
	}
	results, err := w.runCases(t, store, id)
	if err != nil {
		return nil, err
	}
	rep := attribute(t, sum.Variant, results)
	p := &RunPage{Tenant: name, Summary: sum, Cases: []CaseRow{}, Attribution: &AttributionSummary{Cases: rep.Cases, Errored: rep.Errored, Failed: rep.Failed,
		FailBelow: rep.FailBelow, Clusters: rep.Clusters, Dominant: rep.Dominant, RecommendedLevel: rep.RecommendedLevel, Note: rep.Note}}
	p.Chart = clusterChart(rep.Clusters)
	failures := map[string]attribution.Failure{}
	classes, steps := map[string]bool{}, map[string]bool{}
	for _, f := range rep.Failures {
		failures[f.CaseID] = f
		classes[f.Class], steps[f.RootStep] = true, true
	}
	p.Classes, p.Steps = slices.Sorted(maps.Keys(classes)), slices.Sorted(maps.Keys(steps))
	var rows []CaseRow
	for _, cr := range results {
		row := CaseRow{CaseID: cr.CaseID, Score: cr.Score, Error: firstNonEmpty(cr.ExecError, cr.ScoreError),
			Errored: cr.Errored(), Failed: !cr.Errored() && cr.Score < scoring.MaxScore}
		if f, ok := failures[cr.CaseID]; ok {
			row.Class, row.RootStep, row.Level, row.Evidence = f.Class, f.RootStep, f.Level, f.Evidence
		}
		if q.matches(row) {
			rows = append(rows, row)
		}
	}
	q.sort(rows)
	p.Matched = len(rows)
	if q.Offset > len(rows) {
		q.Offset = 0
	}
	end := min(q.Offset+q.Limit, len(rows))
	p.Cases = append(p.Cases, rows[q.Offset:end]...)
	for off := 0; off < len(rows); off += q.Limit {
		p.Pages = append(p.Pages, PageLink{Label: fmt.Sprint(off/q.Limit + 1), Offset: off, Current: off == q.Offset})
	}
	if len(p.Pages) == 1 {
		p.Pages = nil
	}
	p.Query = q
	return p, nil
}

func firstNonEmpty(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

func (q CaseQuery) matches(r CaseRow) bool {
	switch {
	case q.Failed && !r.Failed && !r.Errored,
		q.Class != "" && r.Class != q.Class,
		q.Step != "" && r.RootStep != q.Step:
		return false
	case q.Q == "":
		return true
	}
	needle := strings.ToLower(q.Q)
	for _, s := range []string{r.CaseID, r.Class, r.RootStep, r.Evidence, r.Error} {
		if strings.Contains(strings.ToLower(s), needle) {
			return true
		}
	}
	return false
}

func (q CaseQuery) sort(rows []CaseRow) {
	key := func(r CaseRow) string {
		switch q.Sort {
		case "class":
			return r.Class
		case "step":
			return r.RootStep
		}
		return r.CaseID
	}
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if q.Desc {
			a, b = b, a
		}
		if q.Sort == "score" {
			if a.Score != b.Score {
				return a.Score < b.Score
			}
			return a.CaseID < b.CaseID
		}
		if ka, kb := key(a), key(b); ka != kb {
			return ka < kb
		}
		return a.CaseID < b.CaseID
	})
}

// CasePage is one train case with every step's trace.
type CasePage struct {
	Tenant  string               `json:"tenant"`
	Run     string               `json:"run"`
	Variant string               `json:"variant"`
	Failure *attribution.Failure `json:"failure,omitempty"`
	Case    run.CaseResult       `json:"case"`
}

func (w *workspace) casePage(name, runID, caseID string) (*CasePage, error) {
	t, err := w.tenant(name)
	if err != nil {
		return nil, err
	}
	store, sum, err := w.trainRun(t, runID)
	if err != nil {
		return nil, err
	}
	results, err := w.runCases(t, store, runID)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(results, func(cr run.CaseResult) bool { return cr.CaseID == caseID })
	if i < 0 {
		return nil, notFoundError{fmt.Sprintf("case %q is not in train run %s", caseID, runID)}
	}
	p := &CasePage{Tenant: name, Run: runID, Variant: sum.Variant, Case: results[i]}
	rep := attribute(t, sum.Variant, results[i:i+1])
	if len(rep.Failures) == 1 {
		p.Failure = &rep.Failures[0]
	}
	return p, nil
}

// JournalPage is a tenant's journal, newest first.
type JournalPage struct {
	Tenant  string          `json:"tenant"`
	Kind    string          `json:"kind,omitempty"`
	Session string          `json:"session,omitempty"`
	Kinds   []string        `json:"-"`
	Entries []session.Entry `json:"entries"`
}

func (w *workspace) journal(name, kind, sessionID string) (*JournalPage, error) {
	t, err := w.tenant(name)
	if err != nil {
		return nil, err
	}
	if sessionID != "" {
		if _, err := session.ParseSessionID(sessionID); err != nil {
			return nil, badRequestError{err.Error()}
		}
	}
	p := &JournalPage{Tenant: name, Kind: kind, Session: sessionID, Entries: []session.Entry{}}
	j, err := w.journalOf(t)
	if j == nil || err != nil {
		return p, err
	}
	kinds := map[string]bool{}
	err = j.Read(func(e session.Entry) error {
		kinds[string(e.Kind)] = true
		if (kind == "" || string(e.Kind) == kind) && (sessionID == "" || e.Session == sessionID) {
			p.Entries = append(p.Entries, e)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Reverse(p.Entries)
	p.Kinds = slices.Sorted(maps.Keys(kinds))
	return p, nil
}

// CostPage is a tenant's cost ledger: train runs' usage from their
// summaries, and what sessions charged (validation runs included, as the
// journal records them: dollars only).
type CostPage struct {
	Tenant    string           `json:"tenant"`
	Runs      []RunCost        `json:"train_runs"`
	ByModel   []run.ModelUsage `json:"train_by_model"`
	Train     run.Usage        `json:"train_total"`
	Charges   []Charge         `json:"session_charges"`
	SessionUS float64          `json:"session_usd"`
}

// RunCost is one train run's usage.
type RunCost struct {
	Run     string    `json:"run"`
	Variant string    `json:"variant"`
	Started time.Time `json:"started"`
	Cases   int       `json:"cases"`
	Usage   run.Usage `json:"usage"`
}

// Charge is one spent or charged entry of the journal.
type Charge struct {
	Seq             int64     `json:"seq"`
	Time            time.Time `json:"time"`
	Session         string    `json:"session"`
	Variant         string    `json:"variant,omitempty"`
	Kind            string    `json:"kind"`
	USD             float64   `json:"usd,omitempty"`
	ValidationEvals int       `json:"validation_evals,omitempty"`
	Reason          string    `json:"reason,omitempty"`
}

func (w *workspace) costs(name string) (*CostPage, error) {
	t, err := w.tenant(name)
	if err != nil {
		return nil, err
	}
	runs, err := w.trainRuns(t)
	if err != nil {
		return nil, err
	}
	p := &CostPage{Tenant: name, Runs: []RunCost{}, ByModel: []run.ModelUsage{}, Charges: []Charge{}}
	models := map[string]*run.Usage{}
	for _, s := range runs {
		p.Runs = append(p.Runs, RunCost{Run: s.RunID, Variant: s.Variant, Started: s.Started, Cases: s.Cases, Usage: s.Usage})
		addUsage(&p.Train, s.Usage)
		for _, mu := range s.UsageByModel {
			if models[mu.Model] == nil {
				models[mu.Model] = &run.Usage{}
			}
			addUsage(models[mu.Model], mu.Usage)
		}
	}
	for _, m := range slices.Sorted(maps.Keys(models)) {
		p.ByModel = append(p.ByModel, run.ModelUsage{Model: m, Usage: *models[m]})
	}
	j, err := w.journal(name, "", "")
	if err != nil {
		return nil, err
	}
	for _, e := range slices.Backward(j.Entries) {
		if e.Kind != session.KindSpent && e.Kind != session.KindCharged {
			continue
		}
		c := Charge{Seq: e.Seq, Time: e.Time, Session: e.Session, Variant: e.Variant, Kind: string(e.Kind)}
		c.USD, _ = e.Data["usd"].(float64)
		evals, _ := e.Data["validation_evals"].(float64)
		c.ValidationEvals = int(evals)
		c.Reason, _ = e.Data["reason"].(string)
		p.Charges = append(p.Charges, c)
		p.SessionUS += c.USD
	}
	return p, nil
}

// addUsage sums usage; run.Usage's own adder is unexported.
func addUsage(u *run.Usage, o run.Usage) {
	u.Calls += o.Calls
	u.CacheHits += o.CacheHits
	u.PromptTokens += o.PromptTokens
	u.CompletionTokens += o.CompletionTokens
	u.USD += o.USD
	for _, m := range o.Unpriced {
		if !slices.Contains(u.Unpriced, m) {
			u.Unpriced = append(u.Unpriced, m)
		}
	}
}

// finalScore reads the latest test evaluation from the journal, or nil.
func (w *workspace) finalScore(t *tenant.Tenant) *FinalScore {
	j, err := w.journalOf(t)
	if j == nil || err != nil {
		return nil
	}
	var f *FinalScore
	runs := 0
	_ = j.Read(func(e session.Entry) error {
		if e.Kind != session.KindFinalRun || e.Data["refused"] == true {
			return nil
		}
		score, ok := e.Data["score_mean"].(float64)
		if !ok {
			return nil
		}
		runs++
		cases, _ := e.Data["cases"].(float64)
		f = &FinalScore{Variant: e.Variant, Score: score, Cases: int(cases), Time: e.Time}
		return nil
	})
	if f != nil {
		f.Runs = runs
	}
	return f
}
