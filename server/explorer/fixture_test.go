package explorer_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/server/explorer"
)

const tenantName = looptest.Tenant

// goodPrompt makes the scripted model answer with the bare city (accepted);
// chattyPrompt keeps it verbose (rejected).
const (
	goodPrompt   = "Answer with " + looptest.BarePhrase + ", nothing else.\n\n{{.context.question}}\n"
	chattyPrompt = "Answer in one friendly sentence, repeating the country.\n\n{{.context.question}}\n"
)

// scripted is a workspace after a scripted session: the capitals example
// sealed into a private store (validation and test cases carry held-out
// markers), a session with a train run of the baseline, v0001 accepted,
// v0002 (child of v0001) rejected, and a train run of the new incumbent.
type scripted struct {
	*looptest.Fixture
	BaselineRun  string
	IncumbentRun string
	// FailedCase is a train case of the baseline run, which fails it.
	FailedCase string
}

func newScripted(t *testing.T) *scripted {
	t.Helper()
	f := looptest.New(t, nil)
	// The Explorer reads the sealed store's journal and sessions only, and
	// only where Options.Home says: FAPO_HOME pointing at the store must
	// not make it read anything else there.
	t.Setenv("FAPO_HOME", f.Home)
	w, err := loop.Open(f.Dir, loop.Options{Home: f.Home, Getenv: func(string) string { return "" }})
	require.NoError(t, err)
	defer w.Close()
	ctx := context.Background()
	s := &scripted{Fixture: f}

	_, err = w.StartSession(loop.StartRequest{Tenant: tenantName})
	require.NoError(t, err)
	te, err := w.EvaluateTrain(ctx, loop.RunRequest{Tenant: tenantName})
	require.NoError(t, err)
	s.BaselineRun = te.Summary.RunID
	page, err := w.InspectCases(context.Background(), loop.InspectRequest{Tenant: tenantName, Run: s.BaselineRun, Failed: true, Limit: 1})
	require.NoError(t, err)
	s.FailedCase = page.Cases[0].CaseID

	for _, p := range []struct {
		parent, prompt, rationale string
		accept                    bool
	}{
		{"", goodPrompt, "answers are full sentences; exact match needs the bare city", true},
		{"v0001", chattyPrompt, "a friendlier tone might help", false},
	} {
		prop, err := w.Propose(ctx, loop.ProposeRequest{Tenant: tenantName, Parent: p.parent, Level: "prompt",
			Rationale: p.rationale, TargetCluster: "format @ answer", Prompts: map[string]string{"answer": p.prompt}})
		require.NoError(t, err)
		rev, err := w.Review(ctx, tenantName, prop.Variant)
		require.NoError(t, err)
		require.True(t, rev.Verdict.Pass, "%+v", rev.Verdict.Findings)
		cmp, err := w.Compare(ctx, tenantName, prop.Variant, nil)
		require.NoError(t, err)
		require.Equal(t, p.accept, cmp.Decision.Accept, cmp.Decision.Reason)
	}
	te, err = w.EvaluateTrain(ctx, loop.RunRequest{Tenant: tenantName})
	require.NoError(t, err)
	s.IncumbentRun = te.Summary.RunID
	return s
}

// server serves the Explorer over the fixture's workspace.
func (s *scripted) server(t *testing.T, opts explorer.Options) *httptest.Server {
	t.Helper()
	opts.Workspace, opts.Home = s.Dir, s.Home
	ex, err := explorer.New(opts)
	require.NoError(t, err)
	t.Cleanup(func() { ex.Close() })
	srv := httptest.NewServer(ex)
	t.Cleanup(srv.Close)
	return srv
}

// get fetches path and returns the status and body.
func get(t *testing.T, srv *httptest.Server, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	require.NoError(t, err)
	return do(t, srv, req)
}

func do(t *testing.T, srv *httptest.Server, req *http.Request) (int, string) {
	t.Helper()
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// snapshot lists every file under dir with its size and time, to show
// that serving pages changed nothing.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		out[strings.TrimPrefix(p, dir)] = fmt.Sprint(fi.Mode(), fi.ModTime().UnixNano(), fi.Size())
		return nil
	}))
	return out
}
