// Package examples holds the source datasets of fapo's example tenants,
// embedded in the binary for `fapo init --example`. They live outside
// tenants/ on purpose: a directory of tenants is what a workspace serves, and
// a held-out case in a file of the served workspace is a leaked case. The
// datasets reach a workspace only through the seal, which keeps validation
// and test in the sealed store.
package examples

import (
	"embed"
	"io/fs"
	"slices"
	"strings"
)

//go:embed *.cases.jsonl
var files embed.FS

const suffix = ".cases.jsonl"

// Names lists the examples that have a dataset, sorted.
func Names() []string {
	entries, err := fs.ReadDir(files, ".")
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range entries {
		if name, ok := strings.CutSuffix(e.Name(), suffix); ok && !e.IsDir() {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// Dataset is the JSONL source of the example name.
func Dataset(name string) ([]byte, error) {
	return files.ReadFile(name + suffix)
}
