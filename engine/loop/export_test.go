package loop

import (
	"context"
	"testing"
)

// SetTrainMemLimit lowers the size up to which a verified train split is
// held in memory, so that tests reach the spill to the sealed store.
func SetTrainMemLimit(t testing.TB, n int64) {
	old := trainMemLimit
	trainMemLimit = n
	t.Cleanup(func() { trainMemLimit = old })
}

// ResealTrainLog seals a train run's case log as it is now on disk, as if
// the run had written it: for tests that build large logs by hand.
func (w *Workspace) ResealTrainLog(t testing.TB, tenantName, runID string) {
	t.Helper()
	tt, err := w.tenant(tenantName)
	if err != nil {
		t.Fatal(err)
	}
	_, h, err := trainRuns(tt).CasesBytes(runID)
	if err == nil {
		err = w.db.SealRunLog(context.Background(), tenantName, runID, h[:])
	}
	if err != nil {
		t.Fatal(err)
	}
}
