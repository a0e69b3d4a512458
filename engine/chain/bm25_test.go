package chain

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTokenize(t *testing.T) {
	var got []string
	tokenize("The Café's 2nd ÉTÉ, in Zürich-West; AND x_y", func(tok []byte) { got = append(got, string(tok)) })
	require.Equal(t, []string{"café", "s", "2nd", "été", "zürich", "west", "x", "y"}, got)
}

// The corpus index and the per-case scorer are two implementations of the
// same BM25; they must rank alike.
func TestBM25IndexMatchesPerCaseScoring(t *testing.T) {
	docs := []doc{
		{ID: "0", Title: "Volcano", Text: "Lava flows from the volcano into the sea."},
		{ID: "1", Title: "Ocean", Text: "The ocean is deep; the sea is blue."},
		{ID: "2", Title: "Volcanoes of Iceland", Text: "Iceland has many a volcano, volcano after volcano."},
		{ID: "3", Title: "Cooking", Text: "Boil water, add pasta."},
	}
	for _, q := range []string{"volcano lava", "deep blue sea", "Iceland", "pasta volcano", "nothing here"} {
		for _, fields := range [][]string{retrieveFields, {"text"}, {"title"}} {
			want := newBM25(docs, fields).search(q, 3)
			got := searchDocs(docs, fields, q, 3)
			require.Equal(t, len(want), len(got), q)
			for i := range want {
				require.Equal(t, want[i].ID, got[i].ID, q)
				require.InDelta(t, want[i].Score, got[i].Score, 1e-9, q)
			}
		}
	}
	require.Nil(t, searchDocs(nil, retrieveFields, "x", 3))
	require.Nil(t, newBM25(nil, retrieveFields).search("x", 3))
}
