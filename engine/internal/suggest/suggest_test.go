package suggest

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestClosest(t *testing.T) {
	kinds := []string{"exact_match", "f1", "contains", "regex"}
	tests := []struct{ word, want string }{
		{"exat_match", "exact_match"},
		{"contain", "contains"},
		{"regx", "regex"},
		{"bm25", ""},
		{"", "f1"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, Closest(tt.word, kinds), tt.word)
	}
	require.Equal(t, `; did you mean "exact_match"?`, Hint("exat_match", kinds))
	require.Empty(t, Hint("regex", kinds))
}
