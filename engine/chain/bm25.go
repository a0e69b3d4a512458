package chain

import (
	"bufio"
	"cmp"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// BM25 constants: the usual defaults, which suit short passages.
const (
	bm25K1 = 1.2
	bm25B  = 0.75
)

type doc struct {
	ID, Title, Text string
}

type posting struct {
	doc int32
	tf  int32
}

// bm25Index is an inverted index over a fixed set of passages. A per-case
// index holds about ten passages; a corpus index is built once per Chain and
// read concurrently by every case, so it is never mutated after build.
type bm25Index struct {
	docs     []doc
	postings map[string][]posting
	docLen   []float64
	avgLen   float64
}

func newBM25(docs []doc, fields []string) *bm25Index {
	ix := &bm25Index{docs: docs, postings: map[string][]posting{}, docLen: make([]float64, len(docs))}
	tf := map[string]int32{}
	var total float64
	for i, d := range docs {
		clear(tf)
		n := 0
		tokenizeDoc(d, fields, func(t []byte) { tf[string(t)]++; n++ })
		for t, c := range tf {
			ix.postings[t] = append(ix.postings[t], posting{doc: int32(i), tf: c})
		}
		ix.docLen[i] = float64(n)
		total += float64(n)
	}
	if len(docs) > 0 {
		ix.avgLen = total / float64(len(docs))
	}
	return ix
}

// search returns the k best passages with a positive score, best first;
// ties keep the passages' order.
func (ix *bm25Index) search(query string, k int) []RetrievedDoc {
	if len(ix.docs) == 0 || ix.avgLen == 0 {
		return nil
	}
	scores := map[int32]float64{}
	seen := map[string]bool{}
	n := float64(len(ix.docs))
	tokenize(query, func(tb []byte) {
		t := string(tb)
		if seen[t] {
			return
		}
		seen[t] = true
		ps := ix.postings[t]
		if len(ps) == 0 {
			return
		}
		df := float64(len(ps))
		idf := math.Log(1 + (n-df+0.5)/(df+0.5))
		for _, p := range ps {
			tf := float64(p.tf)
			norm := bm25K1 * (1 - bm25B + bm25B*ix.docLen[p.doc]/ix.avgLen)
			scores[p.doc] += idf * tf * (bm25K1 + 1) / (tf + norm)
		}
	})
	hits := make([]hit, 0, len(scores))
	for d, s := range scores {
		hits = append(hits, hit{d, s})
	}
	return topK(ix.docs, hits, k)
}

// stopwords are dropped from queries and passages: they match everything
// and would drown the terms that discriminate.
var stopwords = map[string]bool{}

func init() {
	for w := range strings.FieldsSeq(`a an and are as at be but by for from has have he her his how i in is it its
		of on or she that the their there they this to was were what when where which who whom why will with you`) {
		stopwords[w] = true
	}
}

// tokenize calls emit for every lower-cased run of letters and digits that
// is not a stopword. The token passed to emit is only valid during the call:
// it lives in a reused buffer so that scoring allocates nothing per token.
func tokenize(s string, emit func(tok []byte)) {
	var arr [64]byte
	buf := arr[:0]
	flush := func() {
		if len(buf) > 0 && !stopwords[string(buf)] {
			emit(buf)
		}
		buf = buf[:0]
	}
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf && ('a' <= r && r <= 'z' || '0' <= r && r <= '9'):
			buf = append(buf, byte(r))
		case r < utf8.RuneSelf && 'A' <= r && r <= 'Z':
			buf = append(buf, byte(r)+('a'-'A'))
		case r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)):
			buf = utf8.AppendRune(buf, unicode.ToLower(r))
		default:
			flush()
		}
	}
	flush()
}

func tokenizeDoc(d doc, fields []string, emit func([]byte)) {
	for _, f := range fields {
		switch f {
		case "title":
			tokenize(d.Title, emit)
		case "text":
			tokenize(d.Text, emit)
		}
	}
}

// searchDocs ranks a handful of per-case passages without building an
// inverted index: only the query's terms are counted, which is what makes
// per-case retrieval cheap next to a model call.
func searchDocs(docs []doc, fields []string, query string, k int) []RetrievedDoc {
	var terms []string
	tokenize(query, func(t []byte) {
		for _, q := range terms {
			if q == string(t) {
				return
			}
		}
		terms = append(terms, string(t))
	})
	if len(terms) == 0 || len(docs) == 0 {
		return nil
	}
	nt := len(terms)
	tf := make([]int32, len(docs)*nt)
	lens := make([]float64, len(docs))
	var total float64
	for i, d := range docs {
		row := tf[i*nt : (i+1)*nt]
		tokenizeDoc(d, fields, func(t []byte) {
			lens[i]++
			for j, q := range terms {
				if q == string(t) {
					row[j]++
					return
				}
			}
		})
		total += lens[i]
	}
	if total == 0 {
		return nil
	}
	avg := total / float64(len(docs))
	n := float64(len(docs))
	scores := make([]float64, len(docs))
	for j := range terms {
		df := 0.0
		for i := range docs {
			if tf[i*nt+j] > 0 {
				df++
			}
		}
		if df == 0 {
			continue
		}
		idf := math.Log(1 + (n-df+0.5)/(df+0.5))
		for i := range docs {
			if f := float64(tf[i*nt+j]); f > 0 {
				scores[i] += idf * f * (bm25K1 + 1) / (f + bm25K1*(1-bm25B+bm25B*lens[i]/avg))
			}
		}
	}
	hits := make([]hit, 0, len(docs))
	for i, s := range scores {
		if s > 0 {
			hits = append(hits, hit{int32(i), s})
		}
	}
	return topK(docs, hits, k)
}

type hit struct {
	doc   int32
	score float64
}

// topK sorts hits best first, ties in passage order, and returns k of them.
func topK(docs []doc, hits []hit, k int) []RetrievedDoc {
	slices.SortFunc(hits, func(a, b hit) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		return cmp.Compare(a.doc, b.doc)
	})
	out := make([]RetrievedDoc, 0, min(k, len(hits)))
	for _, h := range hits[:min(k, len(hits))] {
		d := docs[h.doc]
		out = append(out, RetrievedDoc{ID: d.ID, Title: d.Title, Score: h.score, Text: d.Text})
	}
	return out
}

// loadCorpus reads the JSONL corpus name of fsys, {id, title, text} lines;
// rel is how messages name it.
func loadCorpus(fsys fs.FS, name, rel string) ([]doc, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, fmt.Errorf("corpus %s: %w", rel, err)
	}
	defer func() { _ = f.Close() }()
	var docs []doc
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), 16*1024*1024)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(strings.TrimSpace(string(b))) == 0 {
			continue
		}
		var d struct {
			ID    any    `json:"id"`
			Title string `json:"title"`
			Text  string `json:"text"`
		}
		if err := json.Unmarshal(b, &d); err != nil {
			return nil, fmt.Errorf("corpus %s:%d: %v; each line must be {\"id\", \"title\", \"text\"}", rel, line, err)
		}
		id := toText(d.ID)
		if id == "" {
			id = fmt.Sprint(line)
		}
		docs = append(docs, doc{ID: id, Title: d.Title, Text: d.Text})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("corpus %s:%d: %w", rel, line+1, err)
	}
	return docs, nil
}
