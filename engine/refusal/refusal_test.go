package refusal

import (
	"errors"
	"fmt"
	"io/fs"
	"testing"

	"github.com/stretchr/testify/require"
)

// A refusal that wraps its cause keeps it visible to errors.Is and in the
// text, after the hint of whichever audience renders it, and a sentinel
// the message already names is not repeated.
func TestWrapKeepsTheCause(t *testing.T) {
	hint := func(*Refusal) string { return "HINT" }
	tests := []struct {
		name  string
		err   error
		cause error
		want  string
	}{
		{"cause follows the hint", fmt.Errorf("load: %w", Wrap(CreateTenant, "t", "t: not a tenant", fs.ErrNotExist)), fs.ErrNotExist,
			"load: t: not a tenant: HINT: file does not exist"},
		{"sentinel named in the message", Wrap(Seal, "demo", "tenant demo is not sealed in /h", errors.New("not sealed")), nil,
			"tenant demo is not sealed in /h: HINT"},
		{"no cause", New(GoOnline, "", "offline"), nil, "offline: HINT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, Render(tt.err, hint))
			if tt.cause != nil {
				require.ErrorIs(t, tt.err, tt.cause)
			}
			r, ok := Of(tt.err)
			require.True(t, ok)
			require.NotEmpty(t, neutral(r), "every action has a neutral sentence")
		})
	}
	for _, a := range Actions() {
		require.NotEmpty(t, neutral(New(a, "s", "m")), "action %d has a neutral sentence", a)
	}
}
