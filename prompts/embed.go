// Package prompts holds the texts fapo ships: the optimize playbook served as
// an MCP prompt, the scaffold prompt, the independent reviewer's system prompt
// and the failure-analysis prompt. They are embedded so the binary is the
// whole product.
package prompts

import (
	"embed"
	"fmt"
)

//go:embed *.md
var files embed.FS

// Names of the shipped texts.
const (
	Optimize = "optimize.md"
	Scaffold = "scaffold.md"
	Reviewer = "reviewer.md"
	Analysis = "analysis.md"
)

// Text returns a shipped text by name.
func Text(name string) (string, error) {
	b, err := files.ReadFile(name)
	if err != nil {
		return "", fmt.Errorf("prompt %q is not shipped with fapo", name)
	}
	return string(b), nil
}

// MustText returns a shipped text and panics when it is missing; the names
// are constants checked by the package's tests.
func MustText(name string) string {
	t, err := Text(name)
	if err != nil {
		panic(err)
	}
	return t
}
