package loop

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestClipTextBudgetsTheJSONString: what clipText keeps of a string is at
// most n bytes once encoding/json has escaped it (quotes, newlines, '<',
// control characters, invalid UTF-8), and as much as fits.
func TestClipTextBudgetsTheJSONString(t *testing.T) {
	encoded := func(s string) int {
		b, err := json.Marshal(s)
		require.NoError(t, err)
		return len(b) - 2
	}
	alphabet := []string{"a", "é", "日", "😀", "\"", "\\", "\n", "\t", "\x01", "<", ">", "&", "\u2028", "\xff", " "}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		var b strings.Builder
		for range rng.IntN(60) {
			b.WriteString(alphabet[rng.IntN(len(alphabet))])
		}
		s, n := b.String(), rng.IntN(120)
		got, cut := clipText(s, n)
		if !cut {
			require.Equal(t, s, got)
			require.LessOrEqual(t, encoded(s), n, "%q", s)
			continue
		}
		kept, _, ok := strings.Cut(got, " …[")
		require.True(t, ok)
		require.True(t, strings.HasPrefix(s, kept))
		require.LessOrEqual(t, encoded(kept), n, "%q kept of %q", kept, s)
		rest := s[len(kept):]
		next := len(rest)
		for i := range rest {
			if i > 0 {
				next = i
				break
			}
		}
		require.Greater(t, encoded(s[:len(kept)+next]), n, "one more character would have fit: %q of %q", kept, s)
	}
}
