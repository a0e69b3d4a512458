package variant

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLevel(t *testing.T) {
	tests := []struct {
		in      string
		rank    int
		wantErr string
	}{
		{"prompt", 0, ""},
		{"parameter", 1, ""},
		{"structural", 2, ""},
		{"baseline", -1, `level "baseline" is not a proposal level`},
		{"", -1, `level "" is not a proposal level`},
		{"structral", -1, `did you mean "structural"`},
		{"Prompt", -1, "use one of prompt, parameter, structural"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.rank, Level(tt.in).Rank(), tt.in)
		l, err := ParseLevel(tt.in)
		if tt.wantErr != "" {
			require.ErrorContains(t, err, tt.wantErr, tt.in)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, tt.in, l.String())
	}
	require.Less(t, LevelPrompt.Rank(), LevelParameter.Rank())
	require.Less(t, LevelParameter.Rank(), LevelStructural.Rank())
	require.Equal(t, "prompt, structural", JoinLevels([]Level{LevelPrompt, LevelStructural}))
}
