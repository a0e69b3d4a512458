package dataset

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset/datasettest"
)

func TestSealSharedData(t *testing.T) {
	for _, tt := range []struct {
		file, field string
	}{
		{"hover.jsonl", "claim"},
		{"banking77.jsonl", "text"},
	} {
		t.Run(tt.file, func(t *testing.T) {
			src := datasettest.SharedFile(t, tt.file)
			ctx := context.Background()
			srcSHA := fileSHA(t, src)
			cases, err := ReadAll(src)
			require.NoError(t, err)
			sizes := map[string]int{}
			for _, c := range cases {
				sizes[stringify(c.Expected["label"])]++
			}

			ws := t.TempDir()
			tenantDir := filepath.Join(ws, "tenants", "demo")
			require.NoError(t, os.MkdirAll(tenantDir, 0o755))
			store := OpenStore(filepath.Join(t.TempDir(), "home"))
			cfg := SplitConfig{Train: 0.6, Validation: 0.2, Test: 0.2, Seed: 11, Stratify: "expected.label"}
			req := SealRequest{TenantName: "demo", TenantDir: tenantDir, Source: src, Split: cfg}
			m, err := store.Seal(ctx, req)
			require.NoError(t, err)
			require.Equal(t, srcSHA, fileSHA(t, src), "source unchanged")

			// Counts are within one case of the ratios, give or take the
			// cases that near-duplicate groups keep together (hover's
			// claims come in mutated families).
			require.NotNil(t, m.Duplicates)
			slack := 1.0 + float64(m.Duplicates.Cases)
			n := len(cases)
			for j, sp := range splits {
				require.Less(t, math.Abs(float64(m.Counts.Of(sp))-float64(n)*cfg.ratios()[j]), slack, "split %s", sp)
			}
			require.Len(t, m.Strata, len(sizes))
			for label, c := range m.Strata {
				for j, sp := range splits {
					require.Less(t, math.Abs(float64(c.Of(sp))-float64(sizes[label])*cfg.ratios()[j]), slack, "stratum %s split %s", label, sp)
				}
			}

			decrypted := func() map[Split][]string {
				out := map[Split][]string{}
				for _, sp := range []Split{Validation, Test} {
					require.NoError(t, store.ReadSplit(ctx, "demo", sp, func(c Case) error {
						b, err := json.Marshal(c)
						out[sp] = append(out[sp], string(b))
						return err
					}))
				}
				return out
			}
			first := decrypted()
			train1 := fileSHA(t, filepath.Join(tenantDir, "data", "train.jsonl"))
			m2, err := store.Seal(ctx, req)
			require.NoError(t, err)
			require.Equal(t, m.Counts, m2.Counts)
			require.Equal(t, m.Strata, m2.Strata)
			require.Equal(t, first, decrypted(), "second run decrypts to the same split")
			require.Equal(t, train1, fileSHA(t, filepath.Join(tenantDir, "data", "train.jsonl")))

			// No plaintext of held-out cases in the sealed files.
			var held []Case
			for _, sp := range []Split{Validation, Test} {
				require.NoError(t, store.ReadSplit(ctx, "demo", sp, func(c Case) error { held = append(held, c); return nil }))
			}
			for _, name := range []string{"validation.jsonl.enc", "test.jsonl.enc", "fingerprints.enc"} {
				raw, err := os.ReadFile(filepath.Join(store.Home(), "tenants", "demo", name))
				require.NoError(t, err)
				for _, c := range held[:10] {
					text := c.Context[tt.field].(string)
					require.NotContains(t, string(raw), text[:min(len(text), 16)], "%s holds plaintext of %s", name, c.CaseID)
				}
			}

			// The workspace is clean; a held-out case copied into it is found.
			fp, err := store.Fingerprints(ctx, "demo")
			require.NoError(t, err)
			leaks, err := ScanWorkspace(ctx, ws, fp)
			require.NoError(t, err)
			require.Empty(t, leaks)
			var dump []byte
			for _, c := range held {
				b, err := json.Marshal(c)
				require.NoError(t, err)
				dump = append(append(dump, b...), '\n')
			}
			require.NoError(t, os.WriteFile(filepath.Join(ws, "heldout.jsonl"), dump, 0o644))
			leaks, err = ScanWorkspace(ctx, ws, fp)
			require.NoError(t, err)
			require.Len(t, leaks, 1)
			t.Logf("%s: a dump of %d held-out cases matches %d of them", tt.file, len(held), leaks[0].Cases)
			require.GreaterOrEqual(t, float64(leaks[0].Cases), 0.9*float64(len(held)))
		})
	}
}
