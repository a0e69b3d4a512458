package explorer_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/loop"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/server/explorer"
)

// TestHomeShowsTrainRunsAndFinalScore: the home page's last activity counts
// an operator's train run (which writes no journal entry), and the test
// score of fapo final is on the home page, not only in the journal.
func TestHomeShowsTrainRunsAndFinalScore(t *testing.T) {
	f := looptest.New(t, nil)
	w, err := loop.Open(f.Dir, loop.Options{Home: f.Home, Getenv: func(string) string { return "" }})
	require.NoError(t, err)
	defer w.Close()
	ctx := context.Background()
	sum, err := w.EvaluateForOperator(ctx, loop.RunRequest{Tenant: tenantName, Split: dataset.Train})
	require.NoError(t, err)
	s := &scripted{Fixture: f}
	srv := s.server(t, explorer.Options{})

	dashboard := func() (explorer.TenantSummary, string) {
		code, body := get(t, srv, "/api/")
		require.Equal(t, http.StatusOK, code, body)
		var d explorer.Dashboard
		require.NoError(t, json.Unmarshal([]byte(body), &d))
		require.Len(t, d.Tenants, 1)
		_, page := get(t, srv, "/")
		return d.Tenants[0], page
	}
	ts, page := dashboard()
	require.Equal(t, 1, ts.TrainRuns)
	require.NotNil(t, ts.LastActivity, "a train run is activity")
	require.False(t, ts.LastActivity.Before(sum.Started))
	require.Nil(t, ts.FinalTest)
	require.NotContains(t, page, "<td>–</td>", "last activity shows a time")

	res, err := w.Final(ctx, loop.FinalRequest{Tenant: tenantName})
	require.NoError(t, err)
	ts, page = dashboard()
	require.NotNil(t, ts.FinalTest)
	require.Equal(t, res.Summary.ScoreMean, ts.FinalTest.Score)
	require.Equal(t, res.Summary.Cases, ts.FinalTest.Cases)
	require.Equal(t, "v0000", ts.FinalTest.Variant)
	require.Equal(t, 1, ts.FinalTest.Runs)
	require.Contains(t, page, "Test (fapo final)")
	require.True(t, strings.Contains(page, "v0000, "+strconv.Itoa(res.Summary.Cases)+" cases"), page)
}
