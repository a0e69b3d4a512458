package variant

import (
	"fmt"
	"slices"
	"strings"

	"github.com/fapo-dev/fapo/engine/internal/suggest"
)

// Level is how deep a change goes. A variant records its level so the
// session can enforce escalation (cheapest first), the reviewer can check
// that what changed fits the level claimed, and attribution can say which
// level a failure needs. This is the one definition of the levels and their
// order; everything else asks it.
type Level string

// The levels, cheapest first, and the baseline's own (not a proposal level).
const (
	LevelBaseline   Level = "baseline"
	LevelPrompt     Level = "prompt"
	LevelParameter  Level = "parameter"
	LevelStructural Level = "structural"
)

// Levels lists the levels a proposal may claim, cheapest first.
var Levels = []Level{LevelPrompt, LevelParameter, LevelStructural}

// Rank is l's position in escalation order, cheapest 0; -1 for anything a
// proposal may not claim (the baseline, "", a typo).
func (l Level) Rank() int { return slices.Index(Levels, l) }

// Valid reports whether a proposal may claim l.
func (l Level) Valid() bool { return l.Rank() >= 0 }

func (l Level) String() string { return string(l) }

// ParseLevel reads a level a person or agent wrote; the error lists the
// levels and suggests the one meant.
func ParseLevel(s string) (Level, error) {
	if l := Level(s); l.Valid() {
		return l, nil
	}
	names := LevelNames(Levels)
	return "", fmt.Errorf("level %q is not a proposal level: use one of %s%s", s, strings.Join(names, ", "), suggest.Hint(s, names))
}

// LevelNames is ls as strings, for messages.
func LevelNames(ls []Level) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = string(l)
	}
	return out
}

// JoinLevels renders ls for a message: "prompt, parameter".
func JoinLevels(ls []Level) string { return strings.Join(LevelNames(ls), ", ") }

// LevelsOf converts level names as a client sent them; whoever applies them
// checks them (ParseLevel), with the message that fits.
func LevelsOf(names []string) []Level {
	if names == nil {
		return nil
	}
	out := make([]Level, len(names))
	for i, n := range names {
		out[i] = Level(n)
	}
	return out
}
