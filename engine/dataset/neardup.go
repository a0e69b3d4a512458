package dataset

import (
	"crypto/sha256"
	"encoding/binary"
	"math"
	"slices"
)

// The contamination check. A case that reappears under another id, copied
// or lightly edited, would let the optimizer fit validation through train:
// the split keeps such cases together exactly as it keeps a metadata.group
// together. A case's input is the text of its context (every string value,
// keys in sorted order), normalized as leak detection normalizes it (NFKC,
// lower case, words only). Two cases are near-duplicates when
//
//   - their normalized inputs are identical, or
//   - both inputs have at least DupMinShingles distinct word
//     DupShingleWords-grams, and the Jaccard similarity of those sets is at
//     least DupJaccard.
//
// The relation is closed transitively (union-find), together with
// metadata.group: a near-duplicate of one member of a group joins the whole
// group.
//
// Jaccard similarity is estimated, never computed pairwise: each input gets a
// MinHash signature of dupBins values by one-permutation hashing with
// optimal densification (Shrivastava, ICML 2017), so a case costs one hash per
// word whatever dupBins is; banding the signature (locality-sensitive hashing,
// dupBands bands of dupRows values) proposes candidate pairs, and a
// candidate is a near-duplicate when the share of equal signature values, an
// unbiased estimate of the Jaccard similarity, reaches DupJaccard. With 42
// bands of 3 rows a pair at Jaccard 0.5 is proposed with probability
// 1-(1-0.5³)⁴² ≈ 0.996, one at 0.2 with probability 0.29, and the estimate's
// standard error at 0.5 is √(0.25/128) ≈ 0.044, so pairs within a few
// hundredths of the threshold may fall either way.
const (
	// DupShingleWords is the word n-gram length near-duplicates are compared by.
	DupShingleWords = 5
	// DupJaccard is the Jaccard similarity of word n-gram sets from which two
	// inputs are near-duplicates. Changing k scattered words of a text of w
	// words changes up to 5k of its w-4 five-grams: 3 words in a 60-word
	// question leave about 0.59, in a 1,000-word context about 0.97.
	DupJaccard = 0.5
	// DupMinShingles is the fewest distinct n-grams an input needs to be
	// compared by overlap at all; shorter inputs (under about 12 words, such
	// as one-line intents) are grouped only when identical, since two short
	// texts that differ by one word are usually different cases.
	DupMinShingles = 8

	dupBins  = 128
	dupBands = 42
	dupRows  = 3
	// dupBucketPairs bounds the work in one LSH bucket: a bucket of up to
	// this many inputs is compared pairwise, a larger one (templated data)
	// compares each input with the next dupBucketPairs in content order.
	dupBucketPairs = 64
)

// dupIndex collects what the check needs of each case, in two reads of the
// source. The first counts, per distinct context string, how many cases
// carry it; the second makes a 16-byte digest of each normalized input and,
// for inputs long enough, a signature of dupBins 16-bit values (256 bytes a
// case) over the shingles of its distinctive strings only.
//
// A string that DupCommonShare of the cases (and at least dupCommonMin)
// carry verbatim, such as a label list or an instruction every case
// repeats, is boilerplate: it would make every pair of cases look alike.
// It still counts for identity (the digest covers the whole input), only
// not for overlap. A passage a handful of questions share is not
// boilerplate, so questions about one passage are grouped, as they should be.
type dupIndex struct {
	counted int32              // cases seen by count
	common  countSketch        // how many cases carry each string
	n       int32              // cases seen by add
	exact   map[[16]byte]int32 // digest → first case with that input
	edges   [][2]int32         // identical inputs under other ids
	sigs    []uint16           // dupBins values per signed case
	sigOf   []int32            // case of each signature
	order   []uint64           // content key of each signature (digest prefix)

	words, kept []uint64 // scratch
	mins        [dupBins]uint64
	seen        map[uint64]struct{}
}

const (
	// DupCommonShare is the share of cases from which a context string
	// they all carry verbatim is boilerplate, not evidence of a duplicate.
	DupCommonShare = 0.1
	dupCommonMin   = 3
)

func newDupIndex() *dupIndex {
	return &dupIndex{exact: map[[16]byte]int32{}, seen: map[uint64]struct{}{}, common: newCountSketch()}
}

// count is the first read: it tallies each distinct context string once
// per case.
func (d *dupIndex) count(c Case) {
	d.counted++
	clear(d.seen)
	walkStrings(c.Context, func(s string) {
		h := stringHash(s)
		if _, dup := d.seen[h]; !dup {
			d.seen[h] = struct{}{}
			d.common.add(h)
		}
	})
}

func (d *dupIndex) isCommon(s string) bool {
	// Capped where the sketch's cells saturate: a string in 65,535 cases
	// is common whatever the corpus.
	limit := min(max(dupCommonMin, int(math.Ceil(DupCommonShare*float64(d.counted)))), 1<<16-1)
	return d.common.get(stringHash(s)) >= limit
}

func stringHash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return mix64(h)
}

func wordsDigest(words []uint64) [16]byte {
	h := sha256.New()
	var b [8]byte
	for _, w := range words {
		binary.LittleEndian.PutUint64(b[:], w)
		h.Write(b[:])
	}
	var out [16]byte
	copy(out[:], h.Sum(nil))
	return out
}

// add is the second read, in the same order as count's. Cases without any
// word in their context are never grouped: an empty input says nothing.
func (d *dupIndex) add(c Case) {
	ord := d.n
	d.n++
	d.words, d.kept = d.words[:0], d.kept[:0]
	walkStrings(c.Context, func(s string) {
		start := len(d.words)
		tokenize(s, func(w []byte) { d.words = append(d.words, wordHash(w)) })
		if !d.isCommon(s) {
			d.kept = append(d.kept, d.words[start:]...)
		}
	})
	if len(d.words) == 0 {
		return
	}
	key := wordsDigest(d.words)
	if first, ok := d.exact[key]; ok {
		d.edges = append(d.edges, [2]int32{first, ord})
		return // its signature would equal first's
	}
	d.exact[key] = ord
	if len(d.kept) < DupShingleWords+DupMinShingles-1 {
		return
	}
	clear(d.seen)
	for i := range d.mins {
		d.mins[i] = ^uint64(0)
	}
	for end := DupShingleWords - 1; end < len(d.kept); end++ {
		h := windowHash(d.kept[end-DupShingleWords+1 : end+1])
		d.seen[h] = struct{}{}
		b := h >> 57 // top 7 bits: the bin, dupBins = 128
		d.mins[b] = min(d.mins[b], h)
	}
	if len(d.seen) < DupMinShingles {
		return
	}
	sig := densify(&d.mins)
	d.sigs = append(d.sigs, sig[:]...)
	d.sigOf = append(d.sigOf, ord)
	d.order = append(d.order, binary.LittleEndian.Uint64(key[:8]))
}

// countSketch is a count-min sketch (two rows, conservative update): it
// never undercounts, and over-counts only by collisions, which at its size
// (16 MiB) and the thresholds it is compared with (a tenth of the cases)
// cannot make a string look common. A map of every distinct string of a
// large corpus would take far more memory.
type countSketch struct{ cells []uint16 }

const sketchBits = 22

func newCountSketch() countSketch { return countSketch{cells: make([]uint16, 2<<sketchBits)} }

func (s countSketch) slots(h uint64) (int, int) {
	mask := uint64(1)<<sketchBits - 1
	return int(h & mask), 1<<sketchBits + int((h>>32)&mask)
}

func (s countSketch) add(h uint64) {
	a, b := s.slots(h)
	m := min(s.cells[a], s.cells[b])
	if m == ^uint16(0) {
		return
	}
	for _, i := range []int{a, b} {
		if s.cells[i] == m {
			s.cells[i]++
		}
	}
}

func (s countSketch) get(h uint64) int {
	a, b := s.slots(h)
	return int(min(s.cells[a], s.cells[b]))
}

// densify fills the empty bins of a one-permutation MinHash: an empty bin
// takes the value of the first non-empty bin its own seeded probe sequence
// hits. Probes depend only on the bin, so two inputs agree on a densified bin
// exactly when the probes land on agreeing bins, which keeps the share of
// equal values an unbiased estimate of the Jaccard similarity.
func densify(mins *[dupBins]uint64) [dupBins]uint16 {
	var out [dupBins]uint16
	for b, m := range mins {
		if m != ^uint64(0) {
			out[b] = uint16(mix64(m))
			continue
		}
		for attempt := uint64(1); ; attempt++ {
			p := mix64(uint64(b)<<32|attempt) % dupBins
			if attempt > 64*dupBins { // unreachable with a bin filled; be total
				p = uint64(slices.IndexFunc(mins[:], func(v uint64) bool { return v != ^uint64(0) }))
			}
			if mins[p] != ^uint64(0) {
				out[b] = uint16(mix64(mins[p]))
				break
			}
		}
	}
	return out
}

func (d *dupIndex) sig(i int32) []uint16 { return d.sigs[int(i)*dupBins : int(i+1)*dupBins] }

// similar estimates whether signatures i and j reach DupJaccard.
func (d *dupIndex) similar(i, j int32) bool {
	a, b := d.sig(i), d.sig(j)
	eq := 0
	for k := range a {
		if a[k] == b[k] {
			eq++
		}
	}
	return float64(eq) >= DupJaccard*dupBins
}

// components returns, per case, the smallest case ordinal of its
// near-duplicate component (itself when it has none).
func (d *dupIndex) components() []int32 {
	if d.n != d.counted {
		panic("dataset: the near-duplicate index saw the cases once, it needs both reads")
	}
	parent := make([]int32, d.n)
	for i := range parent {
		parent[i] = int32(i)
	}
	find := func(x int32) int32 {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	union := func(a, b int32) {
		ra, rb := find(a), find(b)
		if ra == rb {
			return
		}
		if rb < ra {
			ra, rb = rb, ra
		}
		parent[rb] = ra
	}
	for _, e := range d.edges {
		union(e[0], e[1])
	}
	nsig := int32(len(d.sigOf))
	type entry struct {
		band  uint64
		order uint64
		sig   int32
	}
	buf := make([]entry, nsig)
	for band := range dupBands {
		for i := range nsig {
			s := d.sig(i)[band*dupRows : (band+1)*dupRows]
			h := uint64(band)<<48 | uint64(s[0])<<32 | uint64(s[1])<<16 | uint64(s[2])
			buf[i] = entry{band: h, order: d.order[i], sig: i}
		}
		// Content order within a bucket, so the pairs a large bucket
		// compares do not depend on the order of the source lines.
		slices.SortFunc(buf, func(a, b entry) int {
			switch {
			case a.band != b.band:
				return cmpU64(a.band, b.band)
			case a.order != b.order:
				return cmpU64(a.order, b.order)
			}
			return int(a.sig - b.sig)
		})
		for lo := 0; lo < len(buf); {
			hi := lo + 1
			for hi < len(buf) && buf[hi].band == buf[lo].band {
				hi++
			}
			for x := lo; x < hi; x++ {
				for y := x + 1; y < hi && y <= x+dupBucketPairs; y++ {
					a, b := d.sigOf[buf[x].sig], d.sigOf[buf[y].sig]
					if find(a) != find(b) && d.similar(buf[x].sig, buf[y].sig) {
						union(a, b)
					}
				}
			}
			lo = hi
		}
	}
	out := make([]int32, d.n)
	for i := range out {
		out[i] = find(int32(i))
	}
	return out
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
