package explorer_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/httpauth"
	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/server/explorer"
)

// TestPages checks every page and its JSON twin over a scripted session.
func TestPages(t *testing.T) {
	s := newScripted(t)
	srv := s.server(t, explorer.Options{})
	before := snapshot(t, s.Dir)
	base := "/tenants/" + tenantName

	tests := []struct {
		name, path string
		html       []string // substrings of the page
		api        func(t *testing.T, body []byte)
	}{
		{"dashboard", "/", []string{"capitals", "s0001", "v0001", "composite_score ≥ 95", "met", "2/10 variants"},
			func(t *testing.T, b []byte) {
				var d explorer.Dashboard
				require.NoError(t, json.Unmarshal(b, &d))
				require.Len(t, d.Tenants, 1)
				ts := d.Tenants[0]
				require.Equal(t, "v0001", ts.Incumbent)
				require.True(t, ts.TargetMet)
				require.NotNil(t, ts.BestScore)
				require.Equal(t, *ts.IncumbentScore, *ts.BestScore)
				require.Equal(t, 2, ts.Used.Variants)
				require.Equal(t, 2, ts.TrainRuns)
			}},
		{"tenants alias", "/tenants", []string{"capitals"}, nil},
		{"tenant", base, []string{`id="score-chart"`, "pt accepted", "pt rejected", "pt baseline", `class="target"`, `class="incumbent"`, s.BaselineRun, "Compare decisions"},
			func(t *testing.T, b []byte) {
				var p explorer.TenantPage
				require.NoError(t, json.Unmarshal(b, &p))
				require.Len(t, p.Sessions, 1)
				var outcomes []string
				for _, pt := range p.Sessions[0].Points {
					outcomes = append(outcomes, pt.Variant+":"+pt.Outcome)
				}
				require.Equal(t, []string{"v0000:baseline", "v0001:accepted", "v0002:rejected"}, outcomes)
				last := p.Sessions[0].Points[2]
				require.Equal(t, p.Sessions[0].Points[1].Value, last.Incumbent, "a rejected variant leaves the incumbent line where it was")
				require.Len(t, p.Runs, 2)
			}},
		{"tenant session", base + "?session=s0001", []string{`<option value="s0001" selected>`}, nil},
		{"lineage", base + "/variants", []string{"v0000", "└─ ", "review passed", ">accepted<", ">rejected<", "incumbent", "a friendlier tone"},
			func(t *testing.T, b []byte) {
				var l explorer.Lineage
				require.NoError(t, json.Unmarshal(b, &l))
				got := map[string]string{}
				for _, v := range l.Variants {
					got[v.ID] = v.Parent + "|" + v.Decision + "|" + v.Integrity
				}
				require.Equal(t, map[string]string{
					"v0000": "||" + explorer.IntegrityFilesVerified,
					"v0001": "v0000|accepted|" + explorer.IntegrityFilesVerified,
					"v0002": "v0001|rejected|" + explorer.IntegrityFilesVerified,
				}, got)
				require.Equal(t, []int{0, 1, 2}, []int{l.Variants[0].Depth, l.Variants[1].Depth, l.Variants[2].Depth})
			}},
		{"variant diff", base + "/variants/v0002", []string{"Diff against v0001", "prompts/answer.md", `class="replace"`, "friendly sentence", "Unified diff"},
			func(t *testing.T, b []byte) {
				var p explorer.VariantPage
				require.NoError(t, json.Unmarshal(b, &p))
				require.Equal(t, "v0001", p.Against)
				require.Len(t, p.Diff, 1)
				require.Equal(t, "changed", p.Diff[0].Status)
				require.Contains(t, p.Unified, "+Answer in one friendly sentence")
			}},
		{"variant against", base + "/variants/v0002?against=v0000", []string{"Diff against v0000"}, nil},
		{"baseline variant", base + "/variants/v0000", []string{"chain.toml", "prompts/answer.md"}, nil},
		{"run", base + "/runs/" + s.BaselineRun, []string{`id="clusters"`, "format@answer", s.FailedCase, "Failure class"},
			func(t *testing.T, b []byte) {
				var p explorer.RunPage
				require.NoError(t, json.Unmarshal(b, &p))
				require.Equal(t, p.Summary.Cases, p.Attribution.Failed)
				require.Equal(t, "format", p.Attribution.Dominant.Class)
				require.Len(t, p.Cases, p.Summary.Cases)
				require.Equal(t, "format", p.Cases[0].Class)
				require.Equal(t, "answer", p.Cases[0].RootStep)
			}},
		{"run filtered", base + "/runs/" + s.BaselineRun + "?q=" + url.QueryEscape(s.FailedCase), []string{"1 of"},
			func(t *testing.T, b []byte) {
				var p explorer.RunPage
				require.NoError(t, json.Unmarshal(b, &p))
				require.Equal(t, 1, p.Matched)
				require.Equal(t, s.FailedCase, p.Cases[0].CaseID)
			}},
		{"run sorted", base + "/runs/" + s.IncumbentRun + "?sort=score&desc=1&limit=5", []string{"sort=score"},
			func(t *testing.T, b []byte) {
				var p explorer.RunPage
				require.NoError(t, json.Unmarshal(b, &p))
				require.Len(t, p.Cases, 5)
				for i := 1; i < len(p.Cases); i++ {
					require.GreaterOrEqual(t, p.Cases[i-1].Score, p.Cases[i].Score)
				}
			}},
		{"case", base + "/runs/" + s.BaselineRun + "/cases/" + s.FailedCase, []string{"Rendered prompt", "What is the capital of", "The capital of", "tokens", "latency", "cache hits", `id="failure"`},
			func(t *testing.T, b []byte) {
				var p explorer.CasePage
				require.NoError(t, json.Unmarshal(b, &p))
				require.Equal(t, s.FailedCase, p.Case.CaseID)
				require.NotEmpty(t, p.Case.Trace.Steps[0].Messages)
				require.Equal(t, "format", p.Failure.Class)
			}},
		{"journal", base + "/journal", []string{`id="journal"`, "session_started", "accepted", "rejected", "reviewed"},
			func(t *testing.T, b []byte) {
				var p explorer.JournalPage
				require.NoError(t, json.Unmarshal(b, &p))
				require.NotEmpty(t, p.Entries)
				require.Greater(t, p.Entries[0].Seq, p.Entries[len(p.Entries)-1].Seq, "newest first")
			}},
		{"journal kind", base + "/journal?kind=accepted", []string{"accepted"},
			func(t *testing.T, b []byte) {
				var p explorer.JournalPage
				require.NoError(t, json.Unmarshal(b, &p))
				require.Len(t, p.Entries, 1)
			}},
		{"costs", base + "/costs", []string{`id="run-costs"`, s.BaselineRun, "gpt-4o-mini", "Session charges"},
			func(t *testing.T, b []byte) {
				var p explorer.CostPage
				require.NoError(t, json.Unmarshal(b, &p))
				require.Len(t, p.Runs, 2)
				require.Positive(t, p.Train.Calls)
				require.NotEmpty(t, p.Charges)
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := get(t, srv, tc.path)
			require.Equal(t, http.StatusOK, code, body)
			for _, want := range tc.html {
				require.Contains(t, body, want)
			}
			code, body = get(t, srv, "/api"+tc.path)
			require.Equal(t, http.StatusOK, code, body)
			require.True(t, json.Valid([]byte(body)))
			if tc.api != nil {
				tc.api(t, []byte(body))
			}
		})
	}
	t.Run("static and stamp", func(t *testing.T) {
		code, body := get(t, srv, "/static/live.js")
		require.Equal(t, http.StatusOK, code)
		require.Contains(t, body, "/api/stamp")
		code, body = get(t, srv, "/api/stamp")
		require.Equal(t, http.StatusOK, code)
		require.Regexp(t, `"stamp": "[0-9a-f]{16}"`, body)
	})
	require.Equal(t, before, snapshot(t, s.Dir), "serving pages wrote to the workspace")
}

// TestLiveStampMoves checks that the stamp live pages poll changes when the
// journal in the state database grows, and only then: not when the
// workspace mirror is edited.
func TestLiveStampMoves(t *testing.T) {
	s := newScripted(t)
	srv := s.server(t, explorer.Options{})
	stamp := func() string {
		_, body := get(t, srv, "/api/stamp")
		var v map[string]string
		require.NoError(t, json.Unmarshal([]byte(body), &v))
		return v["stamp"]
	}
	first := stamp()
	require.Equal(t, first, stamp())
	_, page := get(t, srv, "/tenants/"+tenantName)
	require.Contains(t, page, `<meta name="fapo-stamp" content="`+first+`">`)
	f, err := os.OpenFile(filepath.Join(s.TenantDir(), "journal.jsonl"), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"seq":99,"kind":"accepted","session":"s0001","variant":"v0002"}` + "\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	require.Equal(t, first, stamp(), "the mirror is not what the Explorer shows")
	_, page = get(t, srv, "/api/tenants/"+tenantName+"/journal")
	require.NotContains(t, page, `"seq": 99`)

	w, err := loop.Open(s.Dir, loop.Options{Home: s.Home, Getenv: func(string) string { return "" }})
	require.NoError(t, err)
	defer w.Close()
	_, err = w.Attribute(context.Background(), tenantName, s.BaselineRun, false) // journals, writes no file the stamp reads
	require.NoError(t, err)
	require.NotEqual(t, first, stamp())
	_, page = get(t, srv, "/tenants/"+tenantName+"?live=0")
	require.Contains(t, page, `data-live="0"`)
}

// TestBadRequests checks refusals: writes, traversal, malformed and unknown
// ids, bad query values.
func TestBadRequests(t *testing.T) {
	s := newScripted(t)
	srv := s.server(t, explorer.Options{})
	base := "/tenants/" + tenantName
	secret := filepath.Join(s.Dir, "secret.txt")
	require.NoError(t, os.WriteFile(secret, []byte("OUTSIDE-SECRET"), 0o600))
	tests := []struct {
		name, path string
		code       int
		msg        string
	}{
		{"dotdot tenant", "/tenants/../secret.txt", http.StatusTemporaryRedirect, ""},
		{"encoded dotdot tenant", "/tenants/%2e%2e", http.StatusBadRequest, "not a tenant name"},
		{"encoded slash tenant", "/tenants/..%2fsecret.txt", http.StatusBadRequest, "not a tenant name"},
		{"encoded dotdot in api", "/api/tenants/%2e%2e/journal", http.StatusBadRequest, "not a tenant name"},
		{"absolute tenant", "/tenants/%2fetc%2fpasswd", http.StatusBadRequest, "not a tenant name"},
		{"unknown tenant", "/tenants/nosuch", http.StatusNotFound, "does not exist"},
		{"bad variant id", base + "/variants/v1", http.StatusBadRequest, "invalid variant id"},
		{"traversal variant id", base + "/variants/%2e%2e%2f%2e%2e%2ftenant.toml", http.StatusBadRequest, "invalid variant id"},
		{"unknown variant", base + "/variants/v0099", http.StatusNotFound, "does not exist"},
		{"bad against", base + "/variants/v0001?against=../v0000", http.StatusBadRequest, "invalid variant id"},
		{"bad run id", base + "/runs/..%2f..%2fsecret.txt", http.StatusBadRequest, "not a run id"},
		{"unknown run", base + "/runs/r20990101T000000Z-abcdef", http.StatusNotFound, "is not a train run of tenant capitals recorded by the server"},
		{"unknown case", base + "/runs/" + s.BaselineRun + "/cases/nosuch", http.StatusNotFound, "is not in train run"},
		{"bad sort", base + "/runs/" + s.BaselineRun + "?sort=evil", http.StatusBadRequest, "sort by one of"},
		{"bad offset", base + "/runs/" + s.BaselineRun + "?offset=-1", http.StatusBadRequest, "whole number"},
		{"bad session", base + "?session=../x", http.StatusBadRequest, "invalid session id"},
		{"unknown session", base + "?session=s0009", http.StatusNotFound, "does not exist"},
		{"bad journal session", base + "/journal?session=x", http.StatusBadRequest, "invalid session id"},
		{"unknown page", "/nope", http.StatusNotFound, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, prefix := range []string{"", "/api"} {
				p := tc.path
				if prefix != "" && !strings.HasPrefix(p, "/api") {
					p = prefix + p
				}
				code, body := get(t, srv, p)
				require.NotContains(t, body, "OUTSIDE-SECRET")
				if strings.HasPrefix(tc.path, "/api") && prefix == "" {
					continue
				}
				require.Equal(t, tc.code, code, "%s: %s", p, body)
				require.Contains(t, body, tc.msg)
				if prefix == "/api" && tc.msg != "" {
					var e map[string]string
					require.NoError(t, json.Unmarshal([]byte(body), &e), body)
					require.Contains(t, e["error"], tc.msg)
				}
			}
		})
	}
	t.Run("writes refused", func(t *testing.T) {
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
			req, err := http.NewRequest(m, srv.URL+base, strings.NewReader("x"))
			require.NoError(t, err)
			code, body := do(t, srv, req)
			require.Equal(t, http.StatusMethodNotAllowed, code, m)
			require.Contains(t, body, "read-only")
		}
	})
	t.Run("head allowed", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodHead, srv.URL+base, nil)
		require.NoError(t, err)
		code, _ := do(t, srv, req)
		require.Equal(t, http.StatusOK, code)
	})
	t.Run("foreign host refused without token", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodGet, srv.URL+"/", nil)
		require.NoError(t, err)
		req.Host = "evil.example:8765"
		code, body := do(t, srv, req)
		require.Equal(t, http.StatusForbidden, code)
		require.Contains(t, body, "--token-file")
	})
}

// TestTamperedVariantShown checks that an edited variant is flagged and
// none of its content shown.
func TestTamperedVariantShown(t *testing.T) {
	s := newScripted(t)
	srv := s.server(t, explorer.Options{})
	p := filepath.Join(s.TenantDir(), "variants", "v0002", "prompts", "answer.md")
	require.NoError(t, os.Chmod(p, 0o644))
	require.NoError(t, os.Chmod(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, []byte("EDITED IN PLACE {{.context.question}}"), 0o644))

	code, body := get(t, srv, "/tenants/"+tenantName+"/variants/v0002")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "tampered")
	require.Contains(t, body, "prompts/answer.md was changed")
	require.NotContains(t, body, "EDITED IN PLACE")
	code, body = get(t, srv, "/api/tenants/"+tenantName+"/variants")
	require.Equal(t, http.StatusOK, code)
	var l explorer.Lineage
	require.NoError(t, json.Unmarshal([]byte(body), &l))
	require.Len(t, l.Variants, 3, "a tampered variant stays in the lineage")
	for _, v := range l.Variants {
		if v.ID == "v0002" {
			require.Equal(t, explorer.IntegrityTampered, v.Integrity)
		}
	}
}

// TestToken checks the bearer, ?token= and cookie flows.
func TestToken(t *testing.T) {
	s := newScripted(t)
	srv := s.server(t, explorer.Options{Token: "s3cret-token"})

	code, body := get(t, srv, "/")
	require.Equal(t, http.StatusUnauthorized, code)
	require.Contains(t, body, "?token=")
	code, _ = get(t, srv, "/?token=wrong")
	require.Equal(t, http.StatusUnauthorized, code)

	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/api/tenants", nil)
	req.Header.Set("Authorization", "Bearer s3cret-token")
	req.Host = "explorer.example" // any host is fine with a token
	code, body = do(t, srv, req)
	require.Equal(t, http.StatusOK, code, body)

	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Get(srv.URL + "/tenants/" + tenantName + "?session=s0001&token=s3cret-token")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	require.Equal(t, "/tenants/"+tenantName+"?session=s0001", resp.Header.Get("Location"), "the token leaves the URL")
	cookies := resp.Cookies()
	require.Len(t, cookies, 1)
	require.True(t, cookies[0].HttpOnly)
	req, _ = http.NewRequest(http.MethodGet, srv.URL+"/tenants/"+tenantName, nil)
	req.AddCookie(cookies[0])
	code, _ = do(t, srv, req)
	require.Equal(t, http.StatusOK, code)
}

func TestNewRefusesNonWorkspace(t *testing.T) {
	_, err := explorer.New(explorer.Options{Workspace: t.TempDir()})
	require.ErrorContains(t, err, "has no tenants/ directory")
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:8765": true, "localhost:1": true, "[::1]:80": true, "127.3.4.5:80": true,
		"0.0.0.0:8765": false, ":8765": false, "192.168.1.2:80": false, "example.com:80": false, "nonsense": false,
	} {
		require.Equal(t, want, httpauth.LoopbackAddr(addr), addr)
	}
}

// TestNoHeldOutContent crawls every page and API answer reachable from the
// dashboard and checks that no held-out marker of the sealed store appears.
func TestNoHeldOutContent(t *testing.T) {
	s := newScripted(t)
	srv := s.server(t, explorer.Options{})
	href := regexp.MustCompile(`href="([^"#]+)"`)
	seen := map[string]bool{}
	perPath := map[string]int{}
	queue := []string{"/", "/api/stamp"}
	pages := 0
	for len(queue) > 0 && pages < 1500 {
		p := queue[0]
		queue = queue[1:]
		if seen[p] {
			continue
		}
		seen[p] = true
		pages++
		code, body := get(t, srv, p)
		require.Less(t, code, 500, "%s: %s", p, body)
		require.Empty(t, s.LeakedMarkers(body), "held-out content in %s", p)
		if strings.HasPrefix(p, "/api") || strings.HasPrefix(p, "/static") {
			continue
		}
		if !seen["/api"+p] && p != "/" {
			queue = append(queue, "/api"+p)
		}
		for _, m := range href.FindAllStringSubmatch(body, -1) {
			link := strings.ReplaceAll(m[1], "&amp;", "&")
			if strings.HasPrefix(link, "?") {
				link = strings.SplitN(p, "?", 2)[0] + link
			}
			if !strings.HasPrefix(link, "/") {
				continue
			}
			path := strings.SplitN(link, "?", 2)[0]
			if strings.Contains(link, "?") {
				if perPath[path] >= 12 {
					continue
				}
				perPath[path]++
			}
			queue = append(queue, link)
		}
	}
	require.Greater(t, pages, 100, "the crawl reached the case pages")
	require.True(t, seen["/tenants/"+tenantName+"/runs/"+s.BaselineRun+"/cases/"+s.FailedCase], "a case page was crawled")
	// The train markers are there: the crawl did see case content.
	_, body := get(t, srv, "/api/tenants/"+tenantName+"/runs/"+s.BaselineRun+"/cases/"+s.FailedCase)
	require.Contains(t, body, "MARK-"+s.FailedCase)
}

// TestPlantedRunsNotShown: a copy of a real train run planted under a
// fresh id and a link from runs/ to a held-out run of the sealed store are
// not listed anywhere, and their pages answer as for an unknown run.
func TestPlantedRunsNotShown(t *testing.T) {
	s := newScripted(t)
	planted := s.PlantRunCopy(t, s.BaselineRun)
	held := s.HeldOutRuns(t)
	require.NotEmpty(t, held)
	s.PlantRunLink(t, held[0])
	srv := s.server(t, explorer.Options{})

	_, dash := get(t, srv, "/api/")
	require.Contains(t, dash, `"train_runs": 2,`, "the dashboard counts the server's two train runs only")
	base := "/api/tenants/" + tenantName
	for _, p := range []string{base, base + "/costs"} {
		code, body := get(t, srv, p)
		require.Equal(t, http.StatusOK, code, p)
		require.Contains(t, body, s.BaselineRun, "%s lists the server's own run", p)
		require.NotContains(t, body, planted, p)
		// The journal's charges name held-out runs by design; no run list
		// may hold one.
		require.NotContains(t, body, `"run_id": "`+held[0], "%s lists the linked held-out run", p)
		require.NotContains(t, body, `"run": "`+held[0], "%s lists the linked held-out run", p)
		require.Empty(t, s.LeakedMarkers(body), p)
	}
	for _, id := range append([]string{planted}, held...) {
		for _, p := range []string{base + "/runs/" + id, base + "/runs/" + id + "/cases/" + s.FailedCase} {
			code, body := get(t, srv, p)
			require.Equal(t, http.StatusNotFound, code, p)
			require.Contains(t, body, "is not a train run of tenant "+tenantName+" recorded by the server", p)
			require.Empty(t, s.LeakedMarkers(body), p)
		}
	}
}

// TestRunPageFirst: a run page asked for before any other (a bookmark, a
// link shared by someone) opens the sealed store's index itself.
func TestRunPageFirst(t *testing.T) {
	s := newScripted(t)
	srv := s.server(t, explorer.Options{})
	code, body := get(t, srv, "/api/tenants/"+tenantName+"/runs/"+s.BaselineRun)
	require.Equal(t, http.StatusOK, code, body)
}
