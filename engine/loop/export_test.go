package loop

import "testing"

// SetTrainMemLimit lowers the size up to which a verified train split is
// held in memory, so that tests reach the spill to the sealed store.
func SetTrainMemLimit(t testing.TB, n int64) {
	old := trainMemLimit
	trainMemLimit = n
	t.Cleanup(func() { trainMemLimit = old })
}
