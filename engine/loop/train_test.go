package loop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/loop/looptest"
	"github.com/fapo-dev/fapo/engine/refusal"
	"github.com/fapo-dev/fapo/engine/session"
	"github.com/fapo-dev/fapo/engine/tenant"
)

// TestReadTrainRefusesBytesThatDifferFromThePinCheck: when data/train.jsonl
// is swapped between the pin check (which hashed it) and the read of its
// cases, the read is refused with the pin check's refusal and journaled;
// no case of the swapped file is returned. Both ways of holding the split
// are covered.
func TestReadTrainRefusesBytesThatDifferFromThePinCheck(t *testing.T) {
	for _, limit := range []int64{trainMemLimit, 64} {
		f := looptest.New(t, nil)
		w, err := Open(f.Dir, Options{Home: f.Home, Getenv: func(string) string { return "" }})
		require.NoError(t, err)
		t.Cleanup(func() { w.Close() })
		SetTrainMemLimit(t, limit)
		tn, err := w.tenant(looptest.Tenant)
		require.NoError(t, err)
		require.NotEmpty(t, tn.TrainSHA256)

		cases, err := w.trainAll(tn)
		require.NoError(t, err, "the file the check hashed is read")
		require.NotEmpty(t, cases)

		train := filepath.Join(tn.Dir, filepath.FromSlash(dataset.TrainFile))
		orig, err := os.ReadFile(train)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(train, []byte(strings.ReplaceAll(string(orig), "(ref MARK-", "(ref CANARY-")), 0o644))
		got, err := w.trainAll(tn)
		require.Nil(t, got)
		var pe *tenant.PinError
		require.ErrorAs(t, err, &pe)
		require.ErrorContains(t, err, "data/train.jsonl changed since it was sealed")
		require.Equal(t, refusal.Pin, pe.Refusal().Next)
		j, err := w.journal(tn)
		require.NoError(t, err)
		var last session.Entry
		require.NoError(t, j.Read(func(e session.Entry) error { last = e; return nil }))
		require.Equal(t, session.KindPinMismatch, last.Kind)
	}
}
