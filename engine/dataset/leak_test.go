package dataset

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"Hello,   World!", "hello world"},
		{"M.I.L.F.$ — “quoted”\n\tnext", "m i l f quoted next"},
		{"ＦＵＬＬ width ﬁ", "full width fi"}, // NFKC folds width and ligatures
		{"Straße ÉCOLE", "straße école"},
		{"card_arrival", "card arrival"},
		{"  ", ""},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, Normalize(tt.in), tt.in)
	}
}

func TestShingles(t *testing.T) {
	require.Nil(t, Shingles("one two three", 4))
	require.Nil(t, Shingles("anything at all", 0))
	s := Shingles("one two three four five", 3)
	require.Len(t, s, 3)
	require.Equal(t, s, Shingles("ONE, two; three — four\nfive.", 3), "normalization hides formatting")
	require.Equal(t, s[1:], Shingles("two three four five", 3), "equal runs hash equally anywhere")
	require.NotEqual(t, Shingles("one two three", 3), Shingles("three two one", 3))
	require.NotEqual(t, Shingles("a b", 2), Shingles("a b", 1)[:1])
}

func heldCase(id, text, label string) Case {
	return Case{CaseID: id, TaskType: "t", Context: map[string]any{"text": text}, Expected: map[string]any{"label": label}}
}

func TestFingerprintsMatchText(t *testing.T) {
	b := NewFingerprintBuilder(8)
	b.Add(heldCase("long", "the lighthouse keeper wrote letters to his sister every tuesday for forty years", "SUPPORTED"))
	b.Add(heldCase("short", "where is my new card", "card_arrival"))
	b.Add(heldCase("weak", "pin blocked", "pin_blocked_now"))
	b.Add(heldCase("shared", "this sentence also appears in the train split word for word", "x"))
	require.NoError(t, b.Exclude(strings.NewReader(`{"context":{"text":"This sentence also appears in the train split, word for word."}}`)))
	fp := b.Build()
	require.Equal(t, 4, fp.Cases())

	tests := []struct {
		name  string
		text  string
		cases int
	}{
		{"verbatim long", "The lighthouse keeper wrote letters to his sister every Tuesday for forty years.", 1},
		{"json escaped", `{"text": "The lighthouse keeper wrote letters\nto his sister every Tuesday for forty years"}`, 1},
		{"unicode escaped", `"the lighthouse keeper wrote letters to his sister every tu\u0065sday for forty years"`, 1},
		{"one shingle of many is not enough", "the lighthouse keeper wrote letters to his sister", 0},
		{"one shingle with the expected value", "the lighthouse keeper wrote letters to his sister: SUPPORTED", 1},
		{"strong short value", "Q: Where is my new card? A: ...", 1},
		{"weak value alone", "my pin blocked again", 0},
		{"weak value with its expected", "pin blocked -> pin_blocked_now", 1},
		{"expected alone", "SUPPORTED card_arrival", 0},
		{"text shared with train", "this sentence also appears in the train split word for word", 0},
		{"unrelated", "nothing to see here at all, just a prompt about lighthouses", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cases, _ := fp.MatchText(tt.text)
			require.Equal(t, tt.cases, cases)
		})
	}
}

func TestFingerprintsMarshalRoundTrip(t *testing.T) {
	b := NewFingerprintBuilder(8)
	b.Add(heldCase("a", "the lighthouse keeper wrote letters to his sister every tuesday for forty years", "SUPPORTED"))
	b.Add(heldCase("b", "where is my new card", "card_arrival"))
	fp := b.Build()
	back, err := unmarshalFingerprints(fp.marshal())
	require.NoError(t, err)
	require.Equal(t, fp.n, back.n)
	require.Equal(t, fp.lens, back.lens)
	require.Equal(t, fp.posts, back.posts)
	require.Equal(t, fp.shingles, back.shingles)

	for _, bad := range [][]byte{nil, {1}, {0, 0, 0, 0}, append(fp.marshal()[:8], 0xff)} {
		_, err := unmarshalFingerprints(bad)
		require.Error(t, err)
	}
}

func TestScanWorkspace(t *testing.T) {
	lines := genLines(30)
	f := newFixture(t, lines)
	ctx := context.Background()
	_, err := f.store.Seal(ctx, f.req())
	require.NoError(t, err)
	fp, err := f.store.Fingerprints(ctx, "demo")
	require.NoError(t, err)
	require.Equal(t, 12, fp.Cases())

	ws := filepath.Dir(filepath.Dir(f.tenant))
	require.NoError(t, os.WriteFile(filepath.Join(f.tenant, "prompt.md"), []byte("Answer the question briefly."), 0o644))
	leaks, err := ScanWorkspace(ctx, ws, fp)
	require.NoError(t, err)
	require.Empty(t, leaks, "train.jsonl and ordinary files are not leaks")

	var held []Case
	require.NoError(t, f.store.ReadSplit(ctx, "demo", Validation, func(c Case) error { held = append(held, c); return nil }))
	one, err := json.Marshal(held[0])
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(f.tenant, "notes.md"), append([]byte("copied:\n"), one...), 0o644))
	// A .git directory, a binary and a symlink are not scanned.
	require.NoError(t, os.MkdirAll(filepath.Join(ws, ".git"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(ws, ".git", "blob"), one, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(ws, "bin.dat"), append([]byte{0}, one...), 0o644))
	require.NoError(t, os.Symlink(filepath.Join(f.tenant, "notes.md"), filepath.Join(ws, "link.md")))
	all, err := os.ReadFile(f.source)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(ws, "source-copy.jsonl"), all, 0o644))

	leaks, err = ScanWorkspace(ctx, ws, fp)
	require.NoError(t, err)
	require.Equal(t, []Leak{
		{Path: "source-copy.jsonl", Cases: 12},
		{Path: filepath.Join("tenants", "demo", "notes.md"), Cases: 1},
	}, leaks)

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = ScanWorkspace(cctx, ws, fp)
	require.ErrorIs(t, err, context.Canceled)
	_, err = ScanWorkspace(ctx, filepath.Join(ws, "missing"), fp)
	require.ErrorContains(t, err, "scan")
}
