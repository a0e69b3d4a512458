package pathglob

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		patterns []string
		rel      string
		want     bool
	}{
		{[]string{"tenant.toml"}, "tenant.toml", true},
		{[]string{"tenant.toml"}, "chain.toml", false},
		{[]string{"prompts/**"}, "prompts/answer.md", true},
		{[]string{"prompts/**"}, "prompts/sub/deep.md", true},
		{[]string{"prompts/**"}, "prompts", true},
		{[]string{"prompts/**"}, "promptsx/answer.md", false},
		{[]string{"prompts/*.md"}, "prompts/answer.md", true},
		{[]string{"prompts/*.md"}, "prompts/sub/answer.md", false},
		{[]string{"data/**"}, "./data/x.jsonl", true},
		{nil, "tenant.toml", false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, Match(tt.patterns, tt.rel), "%v ~ %s", tt.patterns, tt.rel)
	}
}

func TestCheck(t *testing.T) {
	for _, ok := range []string{"tenant.toml", "data/**", "prompts/*.md"} {
		require.NoError(t, Check(ok), ok)
	}
	for _, bad := range []string{"", "/etc/passwd", "../x", "data/", "a//b", "[", "data/../x"} {
		require.Error(t, Check(bad), bad)
	}
}
