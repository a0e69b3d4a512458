// Package explorer is the fapo Explorer: a read-only web UI and JSON API
// over a workspace (tenants, variants and their diffs, train runs with every
// step's trace, attribution, costs) and over the sessions and journal in the
// sealed store's database, which it opens read-only so that what a person
// sees cannot be forged by editing the workspace. Of the sealed store it
// reads those two tables only, never a held-out split or run, so held-out
// cases cannot reach a page: validation results are the aggregates the
// journal records, exactly as the MCP tools show them. Every route is GET or
// HEAD; ids from URLs are validated before they name a path.
package explorer

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fapo-dev/fapo/engine/httpauth"
	"github.com/fapo-dev/fapo/engine/run"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/tenant"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// TokenCookie carries the access token after a ?token= visit.
const TokenCookie = "fapo_explorer_token"

// Options configure the Explorer.
type Options struct {
	// Workspace is the directory holding tenants/.
	Workspace string
	// Home is the sealed store whose database (opened read-only) holds the
	// sessions, the journal and the index of runs: only train runs the
	// server recorded are shown, never a directory found under runs/ (the
	// agent can plant one, or link one into the sealed store). "" shows no
	// sessions and no train run.
	Home string
	// Token, when set, is required of every request: as a bearer token, as
	// ?token= (which sets a cookie and redirects to the same URL without
	// it) or as that cookie. Without a token only requests naming a
	// loopback host are answered, which keeps other web pages from
	// reading the Explorer through DNS rebinding.
	Token string
	// Poll is how often pages check for changes while live; default 2s.
	Poll time.Duration
	// Logger receives request errors; nil discards them.
	Logger *slog.Logger
}

// Server is the Explorer's HTTP handler.
type Server struct {
	ws    *workspace
	opts  Options
	pages map[string]*template.Template
	mux   *http.ServeMux
	log   *slog.Logger
}

// New returns the Explorer over opts.Workspace.
func New(opts Options) (*Server, error) {
	abs, err := filepath.Abs(opts.Workspace)
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat(filepath.Join(abs, tenant.TenantsDir)); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("workspace %s has no %s/ directory: pass --workspace with the directory that holds tenants/", opts.Workspace, tenant.TenantsDir)
	}
	if opts.Poll <= 0 {
		opts.Poll = 2 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{ws: &workspace{dir: abs, home: opts.Home}, opts: opts, pages: map[string]*template.Template{}, mux: http.NewServeMux(), log: log}
	if err := s.parseTemplates(); err != nil {
		return nil, err
	}
	s.routes()
	return s, nil
}

// Close releases the state database.
func (s *Server) Close() error { return s.ws.close() }

func (s *Server) routes() {
	page := func(pattern string, h func(r *http.Request) (string, any, error)) {
		s.mux.Handle("GET "+pattern, s.page(h))
		s.mux.Handle("GET /api"+pattern, s.page(h))
	}
	page("/{$}", s.dashboard)
	page("/tenants", s.dashboard)
	page("/tenants/{tenant}", s.tenant)
	page("/tenants/{tenant}/variants", s.lineage)
	page("/tenants/{tenant}/variants/{id}", s.variant)
	page("/tenants/{tenant}/runs/{run}", s.run)
	page("/tenants/{tenant}/runs/{run}/cases/{case}", s.runCase)
	page("/tenants/{tenant}/journal", s.journal)
	page("/tenants/{tenant}/costs", s.costs)
	s.mux.HandleFunc("GET /api/stamp", s.stamp)
	static, _ := fs.Sub(staticFS, "static")
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
}

// ServeHTTP answers GET and HEAD only, after the access check.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "the Explorer is read-only: only GET and HEAD are allowed", http.StatusMethodNotAllowed)
		return
	}
	if !s.authorized(w, r) {
		return
	}
	s.mux.ServeHTTP(w, r)
}

// authorized checks the token, or the Host header when there is none.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.Token == "" {
		if !httpauth.LoopbackHost(r.Host) {
			http.Error(w, "the Explorer answers only requests to localhost; serve it with --token-file to reach it by another name", http.StatusForbidden)
			return false
		}
		return true
	}
	if tok := r.URL.Query().Get("token"); tok != "" {
		if !httpauth.TokenEqual(tok, s.opts.Token) {
			http.Error(w, "wrong token: use the token in the file passed with --token-file", http.StatusUnauthorized)
			return false
		}
		// No Secure flag: the Explorer serves plain HTTP on loopback, where a
		// Secure cookie would never be sent back.
		http.SetCookie(w, &http.Cookie{Name: TokenCookie, Value: tok, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode}) //nolint:gosec // G124: see above
		q := r.URL.Query()
		q.Del("token")
		u := *r.URL
		u.RawQuery = q.Encode()
		http.Redirect(w, r, u.RequestURI(), http.StatusSeeOther) //nolint:gosec // G710: a path on this server (RequestURI has no host), the same URL without its token
		return false
	}
	if httpauth.HasBearer(r, s.opts.Token) {
		return true
	}
	if c, err := r.Cookie(TokenCookie); err == nil && httpauth.TokenEqual(c.Value, s.opts.Token) {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="fapo explorer"`)
	http.Error(w, "this Explorer needs its token: open it once with ?token=<token> or send Authorization: Bearer <token>", http.StatusUnauthorized)
	return false
}

// page turns a view builder into a handler that answers JSON under /api
// and HTML elsewhere.
func (s *Server) page(build func(r *http.Request) (string, any, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api := strings.HasPrefix(r.URL.Path, "/api/") || r.URL.Path == "/api"
		name, data, err := build(r)
		if err != nil {
			s.fail(w, r, api, err)
			return
		}
		if api {
			writeJSON(w, http.StatusOK, data)
			return
		}
		s.render(w, r, http.StatusOK, name, data)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, api bool, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.As(err, new(badRequestError)):
		status = http.StatusBadRequest
	case errors.As(err, new(notFoundError)):
		status = http.StatusNotFound
	default:
		s.log.Error("explorer request failed", "path", r.URL.Path, "err", err)
	}
	if api {
		writeJSON(w, status, map[string]string{"error": err.Error()})
		return
	}
	s.render(w, r, status, "error", errorView{Status: status, Message: err.Error()})
}

type errorView struct {
	Status  int
	Message string
}

// view is what every template receives.
type view struct {
	Data  any
	Stamp string
	Poll  int64
	Live  bool
	Path  string
	Query string
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, name string, data any) {
	t := s.pages[name]
	v := view{Data: data, Stamp: s.ws.stamp(), Poll: s.opts.Poll.Milliseconds(), Live: r.URL.Query().Get("live") != "0",
		Path: r.URL.Path, Query: r.URL.RawQuery}
	var buf strings.Builder
	if err := t.ExecuteTemplate(&buf, "layout", v); err != nil {
		s.log.Error("explorer template failed", "page", name, "err", err)
		http.Error(w, "rendering the page failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(buf.String()))
}

func (s *Server) dashboard(*http.Request) (string, any, error) {
	return "dashboard", s.ws.dashboard(), nil
}

func (s *Server) tenant(r *http.Request) (string, any, error) {
	p, err := s.ws.tenantPage(r.PathValue("tenant"), r.URL.Query().Get("session"))
	return "tenant", p, err
}

func (s *Server) lineage(r *http.Request) (string, any, error) {
	p, err := s.ws.lineage(r.PathValue("tenant"))
	return "lineage", p, err
}

func (s *Server) variant(r *http.Request) (string, any, error) {
	p, err := s.ws.variantPage(r.PathValue("tenant"), r.PathValue("id"), r.URL.Query().Get("against"))
	return "variant", p, err
}

func (s *Server) run(r *http.Request) (string, any, error) {
	q, err := parseCaseQuery(r)
	if err != nil {
		return "", nil, err
	}
	p, err := s.ws.runPage(r.PathValue("tenant"), r.PathValue("run"), q)
	return "run", p, err
}

func (s *Server) runCase(r *http.Request) (string, any, error) {
	p, err := s.ws.casePage(r.PathValue("tenant"), r.PathValue("run"), r.PathValue("case"))
	return "case", p, err
}

func (s *Server) journal(r *http.Request) (string, any, error) {
	q := r.URL.Query()
	p, err := s.ws.journal(r.PathValue("tenant"), q.Get("kind"), q.Get("session"))
	return "journal", p, err
}

func (s *Server) costs(r *http.Request) (string, any, error) {
	p, err := s.ws.costs(r.PathValue("tenant"))
	return "costs", p, err
}

// maxLimit bounds one page of a case table.
const maxLimit = 500

func parseCaseQuery(r *http.Request) (CaseQuery, error) {
	v := r.URL.Query()
	q := CaseQuery{Q: v.Get("q"), Class: v.Get("class"), Step: v.Get("step"), Sort: v.Get("sort"), Limit: 100,
		Failed: v.Get("failed") == "1" || v.Get("failed") == "true", Desc: v.Get("desc") == "1" || v.Get("desc") == "true"}
	if q.Sort == "" {
		q.Sort = "case"
	}
	valid := false
	for _, k := range sortKeys {
		valid = valid || k == q.Sort
	}
	if !valid {
		return q, badRequestError{fmt.Sprintf("sort=%q: sort by one of %s", q.Sort, strings.Join(sortKeys, ", "))}
	}
	for name, dst := range map[string]*int{"offset": &q.Offset, "limit": &q.Limit} {
		if s := v.Get(name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				return q, badRequestError{fmt.Sprintf("%s=%q: want a whole number >= 0", name, s)}
			}
			*dst = n
		}
	}
	if q.Limit == 0 || q.Limit > maxLimit {
		q.Limit = maxLimit
	}
	return q, nil
}

// stamp answers the change stamp that live pages poll.
func (s *Server) stamp(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"stamp": s.ws.stamp()})
}

// stamp summarizes what the pages show in a short string that changes when
// a journal grows, a run finishes or a variant appears: the journals' last
// sequence numbers, sizes and times of the files, never their content.
func (w *workspace) stamp() string {
	h := sha256.New()
	tenants, _ := filepath.Glob(filepath.Join(w.dir, tenant.TenantsDir, "*", tenant.ConfigFile))
	db, _ := w.state()
	for _, cfg := range tenants {
		dir := filepath.Dir(cfg)
		if fi, err := os.Stat(cfg); err == nil {
			fmt.Fprintf(h, "%s %d %d\n", cfg, fi.Size(), fi.ModTime().UnixNano())
		}
		if db != nil {
			last, err := session.OpenJournal(db, filepath.Base(dir)).LastSeq(context.Background())
			fmt.Fprintf(h, "journal %d %v\n", last, err)
		}
		for _, sub := range []string{tenant.RunsDir, tenant.VariantsDir} {
			entries, _ := os.ReadDir(filepath.Join(dir, sub))
			for _, e := range entries {
				fmt.Fprintf(h, "%s/%s\n", sub, e.Name())
				if sub == tenant.RunsDir && run.ValidID(e.Name()) {
					if fi, err := os.Stat(filepath.Join(dir, sub, e.Name(), "summary.json")); err == nil {
						fmt.Fprintf(h, "summary %d\n", fi.ModTime().UnixNano())
					}
				}
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
