package variant

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func baselineFiles() map[string][]byte {
	return map[string][]byte{
		"chain.toml":        []byte("[[steps]]\nid = \"answer\"\nkind = \"llm\"\nprompt = \"prompts/answer.md\"\n"),
		"prompts/answer.md": []byte("Answer the question.\n{{.context.question}}\n"),
	}
}

// newStore returns a store in a fresh tenant dir whose read-only variant
// trees are made writable again before the test's temp dir is removed.
func newStore(t *testing.T, opts ...Option) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() { unseal(dir) })
	return Open(dir, opts...), dir
}

func withBaseline(t *testing.T, opts ...Option) (*Store, *Variant) {
	t.Helper()
	s, _ := newStore(t, opts...)
	v, err := s.EnsureBaseline(baselineFiles())
	require.NoError(t, err)
	return s, v
}

func proposal(parent ID, prompt string) Proposal {
	files := baselineFiles()
	files["prompts/answer.md"] = []byte(prompt)
	return Proposal{Parent: parent, Level: LevelPrompt, Rationale: "be terse", TargetCluster: "reasoning @ answer", Files: files, Session: "s0001"}
}

func TestParseID(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
	}{
		{"v0000", ""},
		{"v0007", ""},
		{"v12345", ""},
		{"v7", "four digits"},
		{"v00007", "did you mean v0007"},
		{"0007", "four digits"},
		{"v0007/../../etc", "four digits"},
		{"../v0001", "four digits"},
		{"", "four digits"},
		{"V0001", "four digits"},
	}
	for _, tt := range tests {
		id, err := ParseID(tt.in)
		if tt.wantErr != "" {
			require.ErrorContains(t, err, tt.wantErr, tt.in)
			require.Equal(t, -1, ID(tt.in).Num())
			continue
		}
		require.NoError(t, err, tt.in)
		require.Equal(t, tt.in, id.String())
		require.Equal(t, id, FormatID(id.Num()))
	}
}

func TestEnsureBaseline(t *testing.T) {
	s, dir := newStore(t, WithClock(func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) }))
	v, err := s.EnsureBaseline(baselineFiles())
	require.NoError(t, err)
	require.Equal(t, Baseline, v.ID)
	require.Equal(t, LevelBaseline, v.Manifest.Level)
	require.Equal(t, ID(""), v.Manifest.Parent)
	require.Equal(t, baselineFiles(), v.Files())
	require.Equal(t, filepath.Join(dir, "variants", "v0000"), v.Dir)
	require.Equal(t, time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), v.Manifest.Created)

	fi, err := os.Stat(filepath.Join(v.Dir, "prompts", "answer.md"))
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o444), fi.Mode().Perm())
	fi, err = os.Stat(filepath.Join(v.Dir, "prompts"))
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o555), fi.Mode().Perm())

	// Later calls verify instead of rewriting.
	again, err := s.EnsureBaseline(baselineFiles())
	require.NoError(t, err)
	require.Equal(t, v.Manifest, again.Manifest)

	drifted := baselineFiles()
	drifted["prompts/answer.md"] = []byte("edited in place\n")
	_, err = s.EnsureBaseline(drifted)
	require.ErrorContains(t, err, "prompts/answer.md differs")
	require.ErrorContains(t, err, "propose the change as a new variant")

	extra := baselineFiles()
	extra["prompts/new.md"] = []byte("x")
	_, err = s.EnsureBaseline(extra)
	require.ErrorContains(t, err, "prompts/new.md differs")

	_, err = s.EnsureBaseline(map[string][]byte{"prompts/a.md": nil})
	require.ErrorContains(t, err, "needs a chain.toml")
}

func TestEnsureBaselineOverEmptyDir(t *testing.T) {
	s, _ := newStore(t)
	require.NoError(t, os.MkdirAll(filepath.Join(s.Dir(), "v0000"), 0o755))
	v, err := s.EnsureBaseline(baselineFiles())
	require.NoError(t, err)
	require.Equal(t, baselineFiles(), v.Files())

	// A tampered baseline is refused, not rewritten.
	overwrite(t, filepath.Join(v.Dir, "prompts", "answer.md"), "edited\n")
	_, err = s.EnsureBaseline(baselineFiles())
	require.ErrorAs(t, err, new(*TamperedError))
}

func TestEnsureBaselineConcurrent(t *testing.T) {
	s, _ := newStore(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { _, errs[i] = s.EnsureBaseline(baselineFiles()) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	entries, err := os.ReadDir(s.Dir())
	require.NoError(t, err)
	require.Len(t, entries, 1, "only v0000, no temporary directories left")
}

func TestReadBaseline(t *testing.T) {
	dir := t.TempDir()
	for rel, b := range baselineFiles() {
		p := filepath.Join(dir, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, b, 0o644))
	}
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "prompts", "sub"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prompts", "sub", "x.md"), []byte("x"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "prompts", ".swp"), []byte("editor junk"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tenant.toml"), []byte("name='x'"), 0o644))
	files, err := ReadBaseline(dir)
	require.NoError(t, err)
	want := baselineFiles()
	want["prompts/sub/x.md"] = []byte("x")
	require.Equal(t, want, files)

	_, err = ReadBaseline(t.TempDir())
	require.ErrorContains(t, err, "every tenant needs a chain.toml")

	// A chain without prompts/ is fine (a retrieve-only chain).
	only := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(only, "chain.toml"), []byte("x"), 0o644))
	files, err = ReadBaseline(only)
	require.NoError(t, err)
	require.Len(t, files, 1)

	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(dir, "prompts", "link.md")))
	_, err = ReadBaseline(dir)
	require.ErrorContains(t, err, "not a regular file")
}

func TestCreate(t *testing.T) {
	s, base := withBaseline(t)
	ctx := context.Background()
	v, err := s.Create(ctx, proposal(base.ID, "Be terse.\n{{.context.question}}\n"))
	require.NoError(t, err)
	require.Equal(t, ID("v0001"), v.ID)
	require.Equal(t, Manifest{
		ID: "v0001", Parent: "v0000", Level: LevelPrompt, Rationale: "be terse", TargetCluster: "reasoning @ answer",
		Session: "s0001", Created: v.Manifest.Created,
		Files: map[string]string{
			"chain.toml":        hashBytes(baselineFiles()["chain.toml"]),
			"prompts/answer.md": hashBytes([]byte("Be terse.\n{{.context.question}}\n")),
		},
	}, v.Manifest)
	b, ok := v.File("prompts/answer.md")
	require.True(t, ok)
	require.Equal(t, "Be terse.\n{{.context.question}}\n", string(b))

	// Files returns a copy: changing it does not change the variant.
	f := v.Files()
	f["prompts/answer.md"][0] = 'X'
	again, err := s.Get(v.ID)
	require.NoError(t, err)
	require.Equal(t, byte('B'), again.Files()["prompts/answer.md"][0])

	v2, err := s.Create(ctx, proposal(v.ID, "third\n"))
	require.NoError(t, err)
	require.Equal(t, ID("v0002"), v2.ID)
	lineage, err := s.Lineage(v2.ID)
	require.NoError(t, err)
	require.Equal(t, []ID{"v0002", "v0001", "v0000"}, []ID{lineage[0].ID, lineage[1].ID, lineage[2].ID})

	list, err := s.List()
	require.NoError(t, err)
	require.Len(t, list, 3)
	require.Equal(t, ID("v0002"), list[2].ID)
}

func TestCreateRefusals(t *testing.T) {
	s, base := withBaseline(t)
	tests := []struct {
		name    string
		edit    func(p *Proposal)
		wantErr string
	}{
		{"unknown level", func(p *Proposal) { p.Level = "promt" }, `did you mean "prompt"`},
		{"baseline level", func(p *Proposal) { p.Level = LevelBaseline }, "not a proposal level"},
		{"no rationale", func(p *Proposal) { p.Rationale = "  " }, "needs a rationale"},
		{"no chain", func(p *Proposal) { delete(p.Files, "chain.toml") }, "needs a chain.toml"},
		{"tenant.toml", func(p *Proposal) { p.Files["tenant.toml"] = []byte("x") }, "scorer, data and tenant.toml are frozen"},
		{"data", func(p *Proposal) { p.Files["data/train.jsonl"] = []byte("x") }, "not part of a variant"},
		{"manifest", func(p *Proposal) { p.Files["manifest.toml"] = []byte("x") }, "not part of a variant"},
		{"traversal", func(p *Proposal) { p.Files["prompts/../../tenant.toml"] = []byte("x") }, "not a clean relative path"},
		{"climb", func(p *Proposal) { p.Files["../outside.md"] = []byte("x") }, "not a clean relative path"},
		{"absolute", func(p *Proposal) { p.Files["/etc/passwd"] = []byte("x") }, "absolute"},
		{"backslash", func(p *Proposal) { p.Files[`prompts\a.md`] = []byte("x") }, "forward slashes"},
		{"dot segment", func(p *Proposal) { p.Files["prompts/./a.md"] = []byte("x") }, "not a clean relative path"},
		{"hidden", func(p *Proposal) { p.Files["prompts/.hidden"] = []byte("x") }, "hidden files"},
		{"empty path", func(p *Proposal) { p.Files[""] = []byte("x") }, "empty file path"},
		{"prompts dir itself", func(p *Proposal) { p.Files["prompts"] = []byte("x") }, "not part of a variant"},
		{"file dir clash", func(p *Proposal) { p.Files["prompts/answer.md/x"] = []byte("x") }, "clash"},
		{"too big", func(p *Proposal) { p.Files["prompts/big.md"] = make([]byte, MaxFileBytes+1) }, "over the"},
		{"bad parent", func(p *Proposal) { p.Parent = "../v0000" }, "invalid variant id"},
		{"missing parent", func(p *Proposal) { p.Parent = "v0042" }, "v0042 does not exist: variants go from v0000 to v0000"},
		{"identical", func(p *Proposal) { p.Files = baselineFiles() }, "identical to its parent v0000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := proposal(base.ID, "changed\n")
			tt.edit(&p)
			_, err := s.Create(context.Background(), p)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := s.Create(ctx, proposal(base.ID, "changed\n"))
	require.ErrorIs(t, err, context.Canceled)

	list, err := s.List()
	require.NoError(t, err)
	require.Len(t, list, 1, "no refused proposal left a variant behind")
	entries, err := os.ReadDir(s.Dir())
	require.NoError(t, err)
	require.Len(t, entries, 1, "no reservation or temporary directory left behind")
}

func TestCreateConcurrentIDs(t *testing.T) {
	s, base := withBaseline(t)
	const n = 20
	ids := make([]ID, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			v, err := s.Create(context.Background(), proposal(base.ID, fmt.Sprintf("variant %d\n", i)))
			errs[i] = err
			if err == nil {
				ids[i] = v.ID
				b, _ := v.File("prompts/answer.md")
				require.Equal(t, fmt.Sprintf("variant %d\n", i), string(b))
			}
		})
	}
	wg.Wait()
	seen := map[ID]bool{}
	for i := range n {
		require.NoError(t, errs[i])
		require.False(t, seen[ids[i]], "id %s allocated twice", ids[i])
		seen[ids[i]] = true
	}
	var got []string
	for id := range seen {
		got = append(got, string(id))
	}
	sort.Strings(got)
	require.Equal(t, "v0001", got[0])
	require.Equal(t, "v0020", got[n-1])
}

func TestCrashedProposalIsNotAVariant(t *testing.T) {
	s, base := withBaseline(t)
	// A crash after the reservation and before the rename leaves an empty
	// vNNNN and a temporary directory holding a half-written variant.
	require.NoError(t, os.Mkdir(filepath.Join(s.Dir(), "v0001"), 0o755))
	half := filepath.Join(s.Dir(), ".v0001.tmp-123")
	require.NoError(t, os.MkdirAll(filepath.Join(half, "prompts"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(half, "chain.toml"), []byte("x"), 0o644))

	_, err := s.Get("v0001")
	var inc *IncompleteError
	require.ErrorAs(t, err, &inc)
	require.ErrorContains(t, err, "propose the change again")

	list, err := s.List()
	require.NoError(t, err)
	require.Len(t, list, 1)

	v, err := s.Create(context.Background(), proposal(base.ID, "after the crash\n"))
	require.NoError(t, err)
	require.Equal(t, ID("v0002"), v.ID, "the crashed id is never reused")
}

func TestTampering(t *testing.T) {
	tests := []struct {
		name     string
		tamper   func(t *testing.T, dir string)
		wantFile string
		wantErr  string
	}{
		{"changed bytes", func(t *testing.T, dir string) {
			overwrite(t, filepath.Join(dir, "prompts", "answer.md"), "Ignore the rules.\n")
		}, "prompts/answer.md", "was changed"},
		{"changed chain", func(t *testing.T, dir string) {
			overwrite(t, filepath.Join(dir, "chain.toml"), "[[steps]]\n")
		}, "chain.toml", "was changed"},
		{"extra file", func(t *testing.T, dir string) {
			overwrite(t, filepath.Join(dir, "prompts", "extra.md"), "smuggled\n")
		}, "prompts/extra.md", "was added"},
		{"extra file in new dir", func(t *testing.T, dir string) {
			overwrite(t, filepath.Join(dir, "prompts", "sub", "extra.md"), "smuggled\n")
		}, "prompts/sub/extra.md", "was added"},
		{"missing file", func(t *testing.T, dir string) {
			remove(t, filepath.Join(dir, "prompts", "answer.md"))
		}, "prompts/answer.md", "is missing"},
		{"missing manifest", func(t *testing.T, dir string) {
			remove(t, filepath.Join(dir, ManifestFile))
		}, ManifestFile, "is missing"},
		{"edited manifest rationale", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, ManifestFile), func(s string) string {
				return strings.Replace(s, "be terse", "be verbose", 1)
			})
		}, ManifestFile, "was edited"},
		{"manifest hash rewritten to match an edit", func(t *testing.T, dir string) {
			overwrite(t, filepath.Join(dir, "prompts", "answer.md"), "new\n")
			editFile(t, filepath.Join(dir, ManifestFile), func(s string) string {
				return strings.Replace(s, hashBytes([]byte("Be terse.\n")), hashBytes([]byte("new\n")), 1)
			})
		}, ManifestFile, "was edited"},
		{"manifest digest line dropped", func(t *testing.T, dir string) {
			editFile(t, filepath.Join(dir, ManifestFile), func(s string) string {
				_, rest, _ := strings.Cut(s, "\n")
				return rest
			})
		}, ManifestFile, "digest line"},
		{"manifest renamed variant", func(t *testing.T, dir string) {
			// A copy of another variant's directory under this id: its
			// manifest verifies but names the other id.
			parent := filepath.Join(filepath.Dir(dir), "v0000")
			remove(t, dir)
			require.NoError(t, os.CopyFS(dir, os.DirFS(parent)))
		}, ManifestFile, `names variant "v0000"`},
		{"symlink", func(t *testing.T, dir string) {
			unseal(dir)
			require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(dir, "prompts", "link.md")))
		}, "prompts/link.md", "symlink"},
		{"file replaced by symlink", func(t *testing.T, dir string) {
			remove(t, filepath.Join(dir, "prompts", "answer.md"))
			require.NoError(t, os.Symlink("/etc/hostname", filepath.Join(dir, "prompts", "answer.md")))
		}, "prompts/answer.md", "symlink"},
		{"variant dir replaced by file", func(t *testing.T, dir string) {
			remove(t, dir)
			require.NoError(t, os.WriteFile(dir, []byte("x"), 0o644))
		}, "v0001", "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, base := withBaseline(t)
			v, err := s.Create(context.Background(), proposal(base.ID, "Be terse.\n"))
			require.NoError(t, err)
			tt.tamper(t, v.Dir)

			_, err = s.Get(v.ID)
			var te *TamperedError
			require.ErrorAs(t, err, &te)
			require.Equal(t, tt.wantFile, te.File)
			require.ErrorContains(t, err, tt.wantErr)
			require.ErrorContains(t, err, "variant v0001 was tampered with: "+tt.wantFile)
			require.ErrorContains(t, err, "variants are immutable: propose a new variant instead")

			// Every use refuses it: diffs, children, listing.
			_, err = s.Diff(base.ID, v.ID)
			require.ErrorAs(t, err, &te)
			_, err = s.ChangedFiles(v.ID, base.ID)
			require.ErrorAs(t, err, &te)
			_, err = s.Create(context.Background(), proposal(v.ID, "child\n"))
			require.ErrorAs(t, err, &te)
			list, err := s.List()
			require.ErrorAs(t, err, &te)
			require.Len(t, list, 1, "the untouched baseline is still listed")
		})
	}
}

func TestKeyedManifest(t *testing.T) {
	s, base := withBaseline(t, WithKey([]byte("secret")))
	v, err := s.Create(context.Background(), proposal(base.ID, "Be terse.\n"))
	require.NoError(t, err)

	// Recomputing the plain digest after an edit does not help without the key.
	editFile(t, filepath.Join(v.Dir, ManifestFile), func(s string) string {
		first, body, _ := strings.Cut(s, "\n")
		require.Contains(t, first, schemeHMACSHA256)
		body = strings.Replace(body, "be terse", "be verbose", 1)
		return digestPrefix + manifestDigest([]byte(body), nil) + "\"\n" + body
	})
	_, err = s.Get(v.ID)
	require.ErrorContains(t, err, "not signed with the store's key")

	otherKey := Open(filepath.Dir(s.Dir()), WithKey([]byte("other")))
	_, err = otherKey.Get(base.ID)
	require.ErrorContains(t, err, "was edited")

	noKey := Open(filepath.Dir(s.Dir()))
	_, err = noKey.Get(base.ID)
	require.ErrorContains(t, err, "signed with a key this store was not opened with")
}

func TestDiff(t *testing.T) {
	s, base := withBaseline(t)
	ctx := context.Background()
	p := proposal(base.ID, "Answer the question briefly.\n{{.context.question}}\n")
	p.Files["prompts/verify.md"] = []byte("Check it.")
	v1, err := s.Create(ctx, p)
	require.NoError(t, err)

	diff, err := s.Diff(base.ID, v1.ID)
	require.NoError(t, err)
	require.Equal(t, `diff v0000/prompts/answer.md v0001/prompts/answer.md
--- v0000/prompts/answer.md
+++ v0001/prompts/answer.md
@@ -1,2 +1,2 @@
-Answer the question.
+Answer the question briefly.
 {{.context.question}}
diff v0000/prompts/verify.md v0001/prompts/verify.md
--- /dev/null
+++ v0001/prompts/verify.md
@@ -0,0 +1 @@
+Check it.
\ No newline at end of file
`, diff)

	back, err := s.Diff(v1.ID, base.ID)
	require.NoError(t, err)
	require.Contains(t, back, "--- v0001/prompts/verify.md\n+++ /dev/null\n")

	same, err := s.Diff(v1.ID, v1.ID)
	require.NoError(t, err)
	require.Empty(t, same)

	changed, err := s.ChangedFiles(base.ID, v1.ID)
	require.NoError(t, err)
	require.Equal(t, []string{"prompts/answer.md", "prompts/verify.md"}, changed)

	_, err = s.Diff(base.ID, "v0009")
	require.ErrorContains(t, err, "v0009 does not exist")
	_, err = s.Diff("nope", base.ID)
	require.ErrorContains(t, err, "invalid variant id")
	_, err = s.ChangedFiles("v0009", base.ID)
	require.ErrorContains(t, err, "v0009 does not exist")
}

func TestGetOnEmptyStore(t *testing.T) {
	s, _ := newStore(t)
	_, err := s.Get(Baseline)
	var nf *NotFoundError
	require.ErrorAs(t, err, &nf)
	require.ErrorContains(t, err, "the store is empty")
	list, err := s.List()
	require.NoError(t, err)
	require.Empty(t, list)
	_, err = s.Create(context.Background(), proposal(Baseline, "x"))
	require.ErrorContains(t, err, "parent v0000")
}

// The tamper helpers unseal first: as root the permissions would not stop
// them, but as an ordinary user they do, which is the point of sealing.
func overwrite(t *testing.T, p, content string) {
	t.Helper()
	unseal(filepath.Dir(filepath.Dir(p)))
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	if err := os.Chmod(p, 0o644); err != nil && !errors.Is(err, fs.ErrNotExist) {
		require.NoError(t, err)
	}
	require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
}

func remove(t *testing.T, p string) {
	t.Helper()
	unseal(filepath.Dir(p))
	unseal(p)
	require.NoError(t, os.RemoveAll(p))
}

func editFile(t *testing.T, p string, edit func(string) string) {
	t.Helper()
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	overwrite(t, p, edit(string(b)))
}

func TestStoreOnBrokenDirectory(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "variants"), []byte("not a directory"), 0o644))
	s := Open(dir)
	_, err := s.EnsureBaseline(baselineFiles())
	require.ErrorContains(t, err, "read variant v0000")
	_, err = s.List()
	require.ErrorContains(t, err, "list variants")
}
