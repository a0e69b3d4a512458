package prompts

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestShippedTexts(t *testing.T) {
	for name, mustMention := range map[string][]string{
		Optimize: {"start_session", "evaluate", "inspect_cases", "attribute", "propose_variant", "review_variant", "compare", "prompt", "parameter", "structural"},
		Scaffold: {"tenant.toml", "chain.toml", "fapo seal"},
		Reviewer: {"scope", "overfit", "leak", "coherence", `"verdict"`},
		Analysis: {"case_ids", "patterns"},
	} {
		text, err := Text(name)
		require.NoError(t, err, name)
		for _, m := range mustMention {
			require.Contains(t, text, m, "%s should mention %q", name, m)
		}
	}
	_, err := Text("nope.md")
	require.ErrorContains(t, err, "not shipped")
}
