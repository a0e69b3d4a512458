package dataset

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Leak detection compares word sequences, not bytes: text is NFKC-folded,
// lower-cased, and split into words at every character that is not a letter,
// digit or mark, so punctuation, quoting, JSON escaping and line wrapping do
// not hide a copy. Word sequences are hashed; held-out text itself is never
// stored outside the sealed files and never reported.

// ShingleSize is the word-sequence length doctor fingerprints long texts with.
const ShingleSize = 8

const (
	// strongWords is the length from which a short context value is
	// distinctive enough to count as a copy on its own.
	strongWords = 4
	// weakWords is the shortest context value considered at all; it
	// counts only together with the case's expected value.
	weakWords = 2
	// maxScanBytes: larger files are data dumps or binaries, not prompts.
	maxScanBytes = 50 << 20
)

// Normalize returns text as leak detection sees it: NFKC, lower case,
// punctuation and symbols removed, words separated by single spaces.
func Normalize(text string) string {
	var words []string
	tokenize(text, func(w []byte) { words = append(words, string(w)) })
	return strings.Join(words, " ")
}

// Shingles returns the hashes of every run of n consecutive normalized words
// of text, in order (repeats included); none when text has fewer than n
// words. Equal word runs hash equally wherever they occur, which is what
// the workspace scan and the review gate's overlap check compare.
func Shingles(text string, n int) []uint64 {
	if n <= 0 {
		return nil
	}
	var words []uint64
	tokenize(text, func(w []byte) { words = append(words, wordHash(w)) })
	if len(words) < n {
		return nil
	}
	out := make([]uint64, 0, len(words)-n+1)
	for end := n - 1; end < len(words); end++ {
		out = append(out, windowHash(words[end-n+1:end+1]))
	}
	return out
}

// windowHash folds word hashes from the last word back to the first, so a
// scanner can extend the windows ending at the current word one word at a
// time.
func windowHash(words []uint64) uint64 {
	h := uint64(0x9e3779b97f4a7c15)
	for i := len(words) - 1; i >= 0; i-- {
		h = mix64(h ^ words[i])
	}
	return h
}

func wordHash(w []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, b := range w {
		h ^= uint64(b)
		h *= 1099511628211
	}
	return h
}

func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) || unicode.IsNumber(r)
}

func tokenize(text string, emit func(w []byte)) {
	t := tokenizer{emit: emit}
	for _, r := range norm.NFKC.String(text) {
		t.rune(r)
	}
	t.flush()
}

type tokenizer struct {
	word []byte
	emit func(w []byte)
}

func (t *tokenizer) rune(r rune) {
	if !isWordRune(r) {
		t.flush()
		return
	}
	t.word = utf8.AppendRune(t.word, unicode.ToLower(r))
}

func (t *tokenizer) flush() {
	if len(t.word) > 0 {
		t.emit(t.word)
		t.word = t.word[:0]
	}
}

// signal kinds: what a matching word run says about a held-out case.
const (
	kindShingle  uint32 = iota // a ShingleSize-word run of a long value
	kindStrong                 // a whole short context value of strongWords+ words
	kindWeak                   // a whole short context value of weakWords+ words
	kindExpected               // a whole short expected value
)

// Fingerprints are the hashed word runs of a tenant's held-out cases, minus
// any run that also occurs in its train split (text shared with train is not
// a secret, and flagging it would make train.jsonl itself a "leak").
type Fingerprints struct {
	n     int
	cases int
	// lens has bit k set when some short value is k words long.
	lens uint64
	// posts maps a hash to its postings: case index<<2 | kind.
	posts map[uint64][]uint32
	// shingles is, per case, how many distinct shingles it still has; a
	// case matches on min(2, shingles) of them.
	shingles []uint16
	filter   []uint64
}

// Cases returns how many held-out cases were fingerprinted.
func (f *Fingerprints) Cases() int { return f.cases }

// FingerprintBuilder accumulates held-out cases, then removes whatever the
// train split shares with them.
type FingerprintBuilder struct{ fp *Fingerprints }

// NewFingerprintBuilder starts fingerprints with n-word shingles.
func NewFingerprintBuilder(n int) *FingerprintBuilder {
	return &FingerprintBuilder{fp: &Fingerprints{n: n, posts: map[uint64][]uint32{}}}
}

// Add fingerprints one held-out case.
func (b *FingerprintBuilder) Add(c Case) {
	fp := b.fp
	idx := uint32(fp.cases)
	fp.cases++
	seen := map[uint64]bool{}
	add := func(h uint64, kind uint32) {
		if seen[h<<2|uint64(kind)] {
			return
		}
		seen[h<<2|uint64(kind)] = true
		fp.posts[h] = append(fp.posts[h], idx<<2|kind)
	}
	for _, part := range []struct {
		m        map[string]any
		expected bool
	}{{c.Context, false}, {c.Expected, true}} {
		walkStrings(part.m, func(s string) {
			var words []uint64
			tokenize(s, func(w []byte) { words = append(words, wordHash(w)) })
			switch {
			case len(words) >= fp.n:
				for end := fp.n - 1; end < len(words); end++ {
					add(windowHash(words[end-fp.n+1:end+1]), kindShingle)
				}
			case len(words) == 0:
			case part.expected:
				add(windowHash(words), kindExpected)
				fp.lens |= 1 << len(words)
			case len(words) >= strongWords:
				add(windowHash(words), kindStrong)
				fp.lens |= 1 << len(words)
			case len(words) >= weakWords:
				add(windowHash(words), kindWeak)
				fp.lens |= 1 << len(words)
			}
		})
	}
}

// Exclude removes every context-side signal that occurs anywhere in r (the
// train split as written), exactly as a workspace scan would see it.
// Expected values stay: they count only together with a context match.
func (b *FingerprintBuilder) Exclude(r io.Reader) error {
	fp := b.fp
	fp.buildFilter()
	return fp.scan(r, func(h uint64, _ int) {
		ps := fp.posts[h]
		kept := ps[:0]
		for _, p := range ps {
			if p&3 == kindExpected {
				kept = append(kept, p)
			}
		}
		if len(kept) == 0 {
			delete(fp.posts, h)
		} else {
			fp.posts[h] = kept
		}
	})
}

// Build finishes the fingerprints; the builder must not be used after.
func (b *FingerprintBuilder) Build() *Fingerprints {
	fp := b.fp
	fp.shingles = make([]uint16, fp.cases)
	for _, ps := range fp.posts {
		for _, p := range ps {
			if p&3 == kindShingle && fp.shingles[p>>2] < 65535 {
				fp.shingles[p>>2]++
			}
		}
	}
	fp.buildFilter()
	return fp
}

func walkStrings(v any, fn func(string)) {
	switch v := v.(type) {
	case string:
		fn(v)
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			walkStrings(v[k], fn)
		}
	case []any:
		for _, x := range v {
			walkStrings(x, fn)
		}
	}
}

// The filter is a one-hash Bloom filter in front of the map: most word runs
// of an ordinary file match nothing, and a bit test is far cheaper than a map
// lookup.
const filterBits = 1 << 22

func (fp *Fingerprints) buildFilter() {
	fp.filter = make([]uint64, filterBits/64)
	for h := range fp.posts {
		b := h % filterBits
		fp.filter[b/64] |= 1 << (b % 64)
	}
}

// scan calls hit for every word run of r that is a fingerprint, with the
// run's length in words. JSON string escapes are undone on the way, so a
// case copied into a JSON file is seen as its text.
func (fp *Fingerprints) scan(r io.Reader, hit func(h uint64, words int)) error {
	ring := make([]uint64, fp.n)
	count := 0
	onWord := func(w []byte) {
		ring[count%fp.n] = wordHash(w)
		count++
		h := uint64(0x9e3779b97f4a7c15)
		for k := 1; k <= fp.n && k <= count; k++ {
			h = mix64(h ^ ring[(count-k)%fp.n])
			if k < fp.n && fp.lens&(1<<k) == 0 {
				continue
			}
			b := h % filterBits
			if fp.filter[b/64]&(1<<(b%64)) == 0 {
				continue
			}
			if _, ok := fp.posts[h]; ok {
				hit(h, k)
			}
		}
	}
	t := tokenizer{emit: onWord}
	br := bufio.NewReaderSize(norm.NFKC.Reader(r), 64<<10)
	for {
		c, _, err := br.ReadRune()
		if err != nil {
			t.flush()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if c != '\\' {
			t.rune(c)
			continue
		}
		t.flush()
		next, _, err := br.ReadRune()
		if err != nil {
			continue // the loop's next read reports it
		}
		if next != 'u' {
			continue // \n, \t, \", \\ ...: a separator like any punctuation
		}
		var hex [4]byte
		if _, err := io.ReadFull(br, hex[:]); err != nil {
			continue
		}
		var v rune
		if _, err := fmt.Sscanf(string(hex[:]), "%04x", &v); err != nil {
			continue
		}
		for _, x := range norm.NFKC.String(string(v)) {
			t.rune(x)
		}
	}
}

// matcher counts, for one text, which held-out cases it contains.
type matcher struct {
	fp       *Fingerprints
	shingles map[uint32]uint64 // case → first matched shingle, or ^0 once two matched
	ctx      map[uint32]bool   // cases with a weak or shingle context match
	exp      map[uint32]bool
	matched  map[uint32]bool
	runs     int // matched word runs of any kind
}

func (fp *Fingerprints) newMatcher() *matcher {
	return &matcher{fp: fp, shingles: map[uint32]uint64{}, ctx: map[uint32]bool{}, exp: map[uint32]bool{}, matched: map[uint32]bool{}}
}

func (m *matcher) hit(h uint64, _ int) {
	m.runs++
	for _, p := range m.fp.posts[h] {
		c, kind := p>>2, p&3
		switch kind {
		case kindStrong:
			m.matched[c] = true
		case kindWeak:
			m.ctx[c] = true
		case kindExpected:
			m.exp[c] = true
		case kindShingle:
			m.ctx[c] = true
			first, ok := m.shingles[c]
			switch {
			case !ok:
				m.shingles[c] = h
				if m.fp.shingles[c] <= 1 {
					m.matched[c] = true
				}
			case first != h:
				m.matched[c] = true
			}
		}
	}
}

func (m *matcher) cases() int {
	for c := range m.ctx {
		if m.exp[c] {
			m.matched[c] = true
		}
	}
	return len(m.matched)
}

// MatchText returns how many held-out cases text contains a copy of, and how
// many fingerprinted word runs it shares with them; counts only, so a caller
// can report a leak without repeating it.
func (fp *Fingerprints) MatchText(text string) (cases, runs int) {
	m := fp.newMatcher()
	_ = fp.scan(strings.NewReader(text), m.hit) // a strings.Reader does not fail
	return m.cases(), m.runs
}

// Leak is a workspace file that contains held-out case content. It holds
// counts only: doctor output may be read by the agent.
type Leak struct {
	// Path is relative to the scanned root.
	Path string
	// Cases is how many distinct held-out cases the file contains.
	Cases int
}

// ScanWorkspace reads every regular file under root (not .git, not files over
// 50 MB, not binaries) and reports, sorted by path, each one that contains
// held-out cases.
func ScanWorkspace(ctx context.Context, root string, fp *Fingerprints) ([]Leak, error) {
	var leaks []Leak
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("scan %s: %w", path, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" && path != root {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		n, err := scanFile(path, fp)
		if err != nil {
			return err
		}
		if n > 0 {
			rel, err := filepath.Rel(root, path)
			if err != nil {
				rel = path
			}
			leaks = append(leaks, Leak{Path: rel, Cases: n})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return leaks, nil
}

func scanFile(path string, fp *Fingerprints) (int, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("scan %s: %w", path, err)
	}
	defer func() { _ = f.Close() }()
	info, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("scan %s: %w", path, err)
	}
	if info.Size() > maxScanBytes {
		return 0, nil
	}
	br := bufio.NewReaderSize(f, 64<<10)
	head, _ := br.Peek(8000)
	if bytes.IndexByte(head, 0) >= 0 {
		return 0, nil // binary
	}
	m := fp.newMatcher()
	if err := fp.scan(br, m.hit); err != nil {
		return 0, fmt.Errorf("scan %s: %w", path, err)
	}
	return m.cases(), nil
}

// Fingerprints serialize as: n, cases, lens, number of hashes, then per hash
// the hash, its posting count and postings, all uvarints.
func (fp *Fingerprints) marshal() []byte {
	hashes := make([]uint64, 0, len(fp.posts))
	for h := range fp.posts {
		hashes = append(hashes, h)
	}
	sort.Slice(hashes, func(a, b int) bool { return hashes[a] < hashes[b] })
	out := binary.AppendUvarint(nil, uint64(fp.n))
	out = binary.AppendUvarint(out, uint64(fp.cases))
	out = binary.AppendUvarint(out, fp.lens)
	out = binary.AppendUvarint(out, uint64(len(hashes)))
	for _, h := range hashes {
		out = binary.LittleEndian.AppendUint64(out, h)
		out = binary.AppendUvarint(out, uint64(len(fp.posts[h])))
		for _, p := range fp.posts[h] {
			out = binary.AppendUvarint(out, uint64(p))
		}
	}
	return out
}

func unmarshalFingerprints(b []byte) (*Fingerprints, error) {
	bad := errors.New("fingerprints are damaged")
	next := func() (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, bad
		}
		b = b[n:]
		return v, nil
	}
	var hdr [4]uint64
	for i := range hdr {
		v, err := next()
		if err != nil {
			return nil, err
		}
		hdr[i] = v
	}
	if hdr[0] == 0 || hdr[0] > 64 || hdr[1] > 1<<30 {
		return nil, bad
	}
	b0 := NewFingerprintBuilder(int(hdr[0]))
	fp := b0.fp
	fp.cases, fp.lens = int(hdr[1]), hdr[2]
	for range hdr[3] {
		if len(b) < 8 {
			return nil, bad
		}
		h := binary.LittleEndian.Uint64(b)
		b = b[8:]
		n, err := next()
		if err != nil || n > uint64(len(b)) {
			return nil, bad
		}
		ps := make([]uint32, n)
		for i := range ps {
			p, err := next()
			if err != nil || p>>2 >= uint64(fp.cases) {
				return nil, bad
			}
			ps[i] = uint32(p)
		}
		fp.posts[h] = ps
	}
	return b0.Build(), nil
}
