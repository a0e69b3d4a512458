package dataset

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/refusal"
)

func TestDefaultHome(t *testing.T) {
	home := "/home/u"
	if runtime.GOOS == "windows" {
		t.Skip("paths below are unix")
	}
	linuxDefault := "/home/u/.local/share/fapo"
	if runtime.GOOS == "darwin" {
		linuxDefault = "/home/u/Library/Application Support/fapo"
	}
	tests := []struct {
		name string
		env  map[string]string
		want string
		err  string
	}{
		{"fapo home wins", map[string]string{"FAPO_HOME": "/srv/fapo", "XDG_DATA_HOME": "/x", "HOME": home}, "/srv/fapo", ""},
		{"xdg", map[string]string{"XDG_DATA_HOME": "/x", "HOME": home}, "/x/fapo", ""},
		{"relative xdg ignored", map[string]string{"XDG_DATA_HOME": "rel", "HOME": home}, linuxDefault, ""},
		{"home", map[string]string{"HOME": home}, linuxDefault, ""},
		{"nothing", map[string]string{}, "", "set FAPO_HOME"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DefaultHome(func(k string) string { return tt.env[k] })
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

// fixture is a tenant directory, a store and a source file.
type fixture struct {
	store  *Store
	tenant string
	source string
}

func newFixture(t *testing.T, lines []string) fixture {
	t.Helper()
	root := t.TempDir()
	tenant := filepath.Join(root, "ws", "tenants", "demo")
	require.NoError(t, os.MkdirAll(tenant, 0o755))
	src := filepath.Join(root, "cases.jsonl")
	require.NoError(t, os.WriteFile(src, []byte(strings.Join(lines, "\n")+"\n"), 0o444))
	return fixture{store: OpenStore(filepath.Join(root, "home")), tenant: tenant, source: src}
}

func (f fixture) req() SealRequest {
	return SealRequest{TenantName: "demo", TenantDir: f.tenant, Source: f.source,
		Split: SplitConfig{Train: 0.6, Validation: 0.2, Test: 0.2, Seed: 42, Stratify: "expected.label"}}
}

var sentences = []string{
	"the quick brown fox jumps over the lazy dog near the river bank",
	"a violin concerto was first performed in vienna during the winter of that year",
	"the lighthouse keeper wrote letters to his sister every tuesday for forty years",
	"several species of moss grow only on the northern side of volcanic rocks",
	"the committee postponed its decision about the bridge until the spring session",
}

// genLines makes n cases whose texts share words but no run of them: the
// seal's contamination check would group templated texts.
func genLines(n int) []string {
	var vocab []string
	for _, s := range sentences {
		vocab = append(vocab, strings.Fields(s)...)
	}
	out := make([]string, n)
	for i := range out {
		words := make([]string, 12)
		for k := range words {
			words[k] = vocab[int(mix64(uint64(i)<<8|uint64(k))%uint64(len(vocab)))]
		}
		text := fmt.Sprintf("case %d says %s and then mentions item number %d twice", i, strings.Join(words, " "), i*7919)
		out[i] = fmt.Sprintf(`{"case_id":"c%03d","task_type":"qa","context":{"text":%q},"expected":{"label":"L%d"}}`, i, text, i%3)
	}
	return out
}

func fileSHA(t *testing.T, path string) [32]byte {
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return sha256.Sum256(b)
}

func readSplitIDs(t *testing.T, s *Store, name string, sp Split) []string {
	var ids []string
	require.NoError(t, s.ReadSplit(context.Background(), name, sp, func(c Case) error {
		ids = append(ids, c.CaseID)
		return nil
	}))
	return ids
}

func TestSealRoundTrip(t *testing.T) {
	f := newFixture(t, genLines(50))
	before := fileSHA(t, f.source)
	m, err := f.store.Seal(context.Background(), f.req())
	require.NoError(t, err)
	require.Equal(t, before, fileSHA(t, f.source), "the source must not change")

	require.Equal(t, SplitCounts{Train: 30, Validation: 10, Test: 10}, m.Counts)
	require.Equal(t, 50, m.Source.Cases)
	require.Equal(t, fmt.Sprintf("%x", before), m.Source.SHA256)
	require.Equal(t, FormatVersion, m.FormatVersion)
	require.Len(t, m.Strata, 3)
	require.Equal(t, []string{"L0", "L1", "L2"}, m.StrataNames())

	got, err := f.store.Manifest("demo")
	require.NoError(t, err)
	require.Equal(t, m.Counts, got.Counts)
	require.Equal(t, m.TrainSHA256, fmt.Sprintf("%x", fileSHA(t, filepath.Join(f.tenant, "data", "train.jsonl"))))

	train, err := ReadAll(filepath.Join(f.tenant, "data", "train.jsonl"))
	require.NoError(t, err)
	all := map[string]Split{}
	for _, c := range train {
		all[c.CaseID] = Train
	}
	for _, sp := range []Split{Validation, Test} {
		ids := readSplitIDs(t, f.store, "demo", sp)
		require.Len(t, ids, m.Counts.Of(sp))
		for _, id := range ids {
			_, dup := all[id]
			require.False(t, dup, "%s in two splits", id)
			all[id] = sp
		}
	}
	require.Len(t, all, 50)

	if runtime.GOOS != "windows" {
		for path, want := range map[string]os.FileMode{
			filepath.Join(f.store.Home(), "keys", "demo.key"):                    0o600,
			filepath.Join(f.store.Home(), "keys"):                                0o700,
			filepath.Join(f.store.Home(), "tenants", "demo"):                     0o700,
			filepath.Join(f.store.Home(), "tenants", "demo", "test.jsonl.enc"):   0o600,
			filepath.Join(f.store.Home(), "tenants", "demo", "manifest.json"):    0o600,
			filepath.Join(f.store.Home(), "tenants", "demo", "fingerprints.enc"): 0o600,
			filepath.Join(f.tenant, "data", "train.jsonl"):                       0o644,
		} {
			info, err := os.Stat(path)
			require.NoError(t, err)
			require.Equal(t, want, info.Mode().Perm(), path)
		}
		key, err := os.ReadFile(filepath.Join(f.store.Home(), "keys", "demo.key"))
		require.NoError(t, err)
		require.Len(t, key, 32)
	}
	// No staging files are left behind.
	for _, dir := range []string{filepath.Join(f.tenant, "data"), filepath.Join(f.store.Home(), "tenants", "demo")} {
		entries, err := os.ReadDir(dir)
		require.NoError(t, err)
		for _, e := range entries {
			require.False(t, strings.Contains(e.Name(), ".tmp-"), e.Name())
		}
	}
}

func TestSealIsReproducible(t *testing.T) {
	f := newFixture(t, genLines(40))
	m1, err := f.store.Seal(context.Background(), f.req())
	require.NoError(t, err)
	train1 := fileSHA(t, filepath.Join(f.tenant, "data", "train.jsonl"))
	val1 := readSplitIDs(t, f.store, "demo", Validation)
	enc1, err := os.ReadFile(f.store.splitPath("demo", Validation))
	require.NoError(t, err)

	m2, err := f.store.Seal(context.Background(), f.req())
	require.NoError(t, err)
	require.Equal(t, m1.Counts, m2.Counts)
	require.Equal(t, m1.Strata, m2.Strata)
	require.Equal(t, train1, fileSHA(t, filepath.Join(f.tenant, "data", "train.jsonl")))
	require.Equal(t, val1, readSplitIDs(t, f.store, "demo", Validation))
	enc2, err := os.ReadFile(f.store.splitPath("demo", Validation))
	require.NoError(t, err)
	require.NotEqual(t, enc1, enc2, "fresh nonces on every seal")
}

func TestSealRefusesWhenRunsExist(t *testing.T) {
	f := newFixture(t, genLines(20))
	_, err := f.store.Seal(context.Background(), f.req())
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(filepath.Join(f.tenant, "runs", "r20250101T000000Z-abcdef"), 0o755))
	_, err = f.store.Seal(context.Background(), f.req())
	require.ErrorContains(t, err, "already has 1 runs")
	r, ok := refusal.Of(err)
	require.True(t, ok)
	require.Equal(t, refusal.Reseal, r.Next)
	req := f.req()
	req.Force = true
	_, err = f.store.Seal(context.Background(), req)
	require.NoError(t, err)
}

func TestSealErrors(t *testing.T) {
	good := genLines(10)
	tests := []struct {
		name  string
		lines []string
		edit  func(*SealRequest)
		want  string
	}{
		{"bad name", good, func(r *SealRequest) { r.TenantName = "../evil" }, "tenant name"},
		{"bad ratios", good, func(r *SealRequest) { r.Split.Test = 0.5 }, "must sum to 1"},
		{"missing source", good, func(r *SealRequest) { r.Source += ".nope" }, "no such file"},
		{"bad line", append(append([]string{}, good...), `{"case_id":"x"`), nil, "cases.jsonl:11: invalid JSON"},
		{"duplicate", append(append([]string{}, good...), good[3]), nil, `cases.jsonl:11: duplicate case_id "c003" (first on line 4)`},
		{"missing stratum", append(append([]string{}, good...), `{"case_id":"x","task_type":"qa","context":{},"expected":{}}`), nil, "cases.jsonl:11: case \"x\" has no expected.label"},
		{"task type", good, func(r *SealRequest) { r.TaskType = "classification" }, `cases.jsonl:1: task_type "qa", but the tenant's task_type is "classification"`},
		{"empty", []string{""}, nil, "has no cases"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, tt.lines)
			req := f.req()
			if tt.edit != nil {
				tt.edit(&req)
			}
			_, err := f.store.Seal(context.Background(), req)
			require.ErrorContains(t, err, tt.want)
			_, err = os.Stat(f.store.ManifestPath("demo"))
			require.ErrorIs(t, err, os.ErrNotExist, "a failed seal writes no manifest")
			_, err = os.Stat(filepath.Join(f.tenant, "data", "train.jsonl"))
			require.ErrorIs(t, err, os.ErrNotExist, "a failed seal writes no train split")
		})
	}
}

func TestSealCancelled(t *testing.T) {
	f := newFixture(t, genLines(10))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := f.store.Seal(ctx, f.req())
	require.ErrorIs(t, err, context.Canceled)
}

func TestStoreReadErrors(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, genLines(30))
	_, err := f.store.Manifest("demo")
	require.ErrorIs(t, err, ErrNotSealed)
	require.ErrorContains(t, err, "tenant demo is not sealed")
	r, ok := refusal.Of(err)
	require.True(t, ok)
	require.Equal(t, refusal.Seal, r.Next)
	require.Equal(t, "demo", r.Subject)
	_, err = f.store.Fingerprints(ctx, "demo")
	require.ErrorIs(t, err, ErrNotSealed)
	require.ErrorIs(t, f.store.ReadSplit(ctx, "demo", Validation, func(Case) error { return nil }), ErrNotSealed)
	_, err = f.store.Manifest("a/b")
	require.ErrorContains(t, err, "tenant name")

	_, err = f.store.Seal(ctx, f.req())
	require.NoError(t, err)
	require.ErrorContains(t, f.store.ReadSplit(ctx, "demo", Train, func(Case) error { return nil }), "data/train.jsonl")

	encPath := f.store.splitPath("demo", Validation)
	orig, err := os.ReadFile(encPath)
	require.NoError(t, err)
	lines := bytes.Split(bytes.TrimSpace(orig), []byte("\n"))
	restore := func() { require.NoError(t, os.WriteFile(encPath, orig, 0o600)) }

	tests := []struct {
		name    string
		content []byte
		want    string
	}{
		{"swapped records", bytes.Join(append([][]byte{lines[1], lines[0]}, lines[2:]...), []byte("\n")), "failed authentication"},
		{"truncated", bytes.Join(lines[:len(lines)-1], []byte("\n")), "the manifest says"},
		{"not base64", append(append([]byte{}, orig...), []byte("!!!\n")...), "not valid base64"},
		{"flipped bit", func() []byte {
			raw, _ := base64.StdEncoding.DecodeString(string(lines[0]))
			raw[len(raw)-1] ^= 1
			return bytes.Join(append([][]byte{[]byte(base64.StdEncoding.EncodeToString(raw))}, lines[1:]...), []byte("\n"))
		}(), "failed authentication"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer restore()
			require.NoError(t, os.WriteFile(encPath, tt.content, 0o600))
			require.ErrorContains(t, f.store.ReadSplit(ctx, "demo", Validation, func(Case) error { return nil }), tt.want)
		})
	}

	keyPath := f.store.keyPath("demo")
	key, err := os.ReadFile(keyPath)
	require.NoError(t, err)
	other := bytes.Repeat([]byte{7}, 32)
	require.NoError(t, os.WriteFile(keyPath, other, 0o600))
	require.ErrorContains(t, f.store.ReadSplit(ctx, "demo", Validation, func(Case) error { return nil }), "not the key it was sealed with")
	_, err = f.store.Fingerprints(ctx, "demo")
	require.ErrorContains(t, err, "failed authentication")
	require.NoError(t, os.WriteFile(keyPath, key[:10], 0o600))
	require.ErrorContains(t, f.store.ReadSplit(ctx, "demo", Test, func(Case) error { return nil }), "corrupt (10 bytes, want 32)")
	_, err = f.store.Seal(ctx, f.req())
	require.ErrorContains(t, err, "corrupt (10 bytes, want 32)")
	require.NoError(t, os.Remove(keyPath))
	require.ErrorContains(t, f.store.ReadSplit(ctx, "demo", Test, func(Case) error { return nil }), "without it the sealed splits cannot be read")
	require.NoError(t, os.WriteFile(keyPath, key, 0o600))

	require.NoError(t, os.WriteFile(f.store.ManifestPath("demo"), []byte("{"), 0o600))
	_, err = f.store.Manifest("demo")
	require.ErrorContains(t, err, "is damaged")
	require.NoError(t, os.WriteFile(f.store.ManifestPath("demo"), []byte(`{"format_version":99}`), 0o600))
	_, err = f.store.Manifest("demo")
	require.ErrorContains(t, err, "format version 99")
}

func TestSealedFilesHideText(t *testing.T) {
	f := newFixture(t, genLines(30))
	_, err := f.store.Seal(context.Background(), f.req())
	require.NoError(t, err)
	var held []string
	for _, sp := range []Split{Validation, Test} {
		require.NoError(t, f.store.ReadSplit(context.Background(), "demo", sp, func(c Case) error {
			held = append(held, c.Context["text"].(string))
			return nil
		}))
	}
	sort.Strings(held)
	for _, name := range []string{"validation.jsonl.enc", "test.jsonl.enc", "fingerprints.enc", "manifest.json"} {
		raw, err := os.ReadFile(filepath.Join(f.store.Home(), "tenants", "demo", name))
		require.NoError(t, err)
		for _, text := range held {
			require.NotContains(t, string(raw), text[:30], name)
		}
	}
}

// BenchmarkSeal100k seals a generated 100k-case file and reports the bytes
// allocated per seal (two streaming passes, fingerprints, encryption).
func BenchmarkSeal100k(b *testing.B) {
	root := b.TempDir()
	src := filepath.Join(root, "big.jsonl")
	f, err := os.Create(src)
	require.NoError(b, err)
	for i := range 100_000 {
		fmt.Fprintf(f, `{"case_id":"c%06d","task_type":"classification","context":{"text":"how do I change the pin of card number %d before friday"},"expected":{"label":"L%d"}}`+"\n", i, i, i%77)
	}
	require.NoError(b, f.Close())
	tenant := filepath.Join(root, "tenants", "big")
	require.NoError(b, os.MkdirAll(tenant, 0o755))
	store := OpenStore(filepath.Join(root, "home"))
	req := SealRequest{TenantName: "big", TenantDir: tenant, Source: src,
		Split: SplitConfig{Train: 0.6, Validation: 0.2, Test: 0.2, Seed: 1, Stratify: "expected.label"}}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	seals := 0
	for b.Loop() {
		_, err := store.Seal(context.Background(), req)
		require.NoError(b, err)
		seals++
	}
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.TotalAlloc-before.TotalAlloc)/float64(seals), "alloc-bytes/seal")
}
