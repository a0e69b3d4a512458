// Package tenants ships what `fapo init` writes: the commented scaffold of a
// new tenant per task type, and the example tenants. Their source datasets
// are embedded from package examples, outside this directory, because every
// held-out case in a file the agent can read is a leaked case; `fapo init
// --example` seals them straight into the store.
package tenants

import (
	"bytes"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"text/template"

	"github.com/fapo-dev/fapo/engine/dataset/examples"
)

// Only the tenant files are named, so that data/, runs/ or variants/ left
// behind by a local `fapo seal` of an example never end up in the binary
// (pipeline/*.py is an external pipeline's program, not its __pycache__).
//
//go:embed */tenant.toml */chain.toml */prompts/*.md */pipeline/*.py
//go:embed _scaffold/tenant.toml.tmpl _scaffold/*/chain.toml _scaffold/*/prompts/*.md
var files embed.FS

// Examples lists the example tenants, sorted.
func Examples() []string {
	var names []string
	for _, name := range examples.Names() {
		if _, err := fs.Stat(files, name+"/tenant.toml"); err == nil {
			names = append(names, name)
		}
	}
	return names
}

// Example returns the files of an example tenant (tenant.toml, chain.toml,
// prompts/) and its source dataset in JSONL, ready for sealing.
func Example(name string) (fs.FS, []byte, error) {
	if !slices.Contains(Examples(), name) {
		return nil, nil, fmt.Errorf("no example tenant %q; examples: %s", name, strings.Join(Examples(), ", "))
	}
	sub, err := fs.Sub(files, name)
	if err != nil {
		return nil, nil, err
	}
	source, err := examples.Dataset(name)
	if err != nil {
		return nil, nil, err
	}
	return sub, source, nil
}

// TaskTypes lists the task types `fapo init` can scaffold, sorted.
func TaskTypes() []string {
	entries, err := fs.ReadDir(files, "_scaffold")
	if err != nil {
		return nil
	}
	var types []string
	for _, e := range entries {
		if e.IsDir() {
			types = append(types, e.Name())
		}
	}
	slices.Sort(types)
	return types
}

// Scaffold returns the files of a new tenant named name for taskType, keyed
// by slash-separated path relative to the tenant directory: a commented
// tenant.toml with every default visible, chain.toml and prompts/.
func Scaffold(name, taskType string) (map[string][]byte, error) {
	types := TaskTypes()
	if !slices.Contains(types, taskType) {
		return nil, fmt.Errorf("no scaffold for task type %q; choose one of %s", taskType, strings.Join(types, ", "))
	}
	out := map[string][]byte{}
	root := path.Join("_scaffold", taskType)
	err := fs.WalkDir(files, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := files.ReadFile(p)
		if err != nil {
			return err
		}
		out[strings.TrimPrefix(p, root+"/")] = b
		return nil
	})
	if err != nil {
		return nil, err
	}
	tmpl, err := template.New("tenant.toml").Option("missingkey=error").ParseFS(files, "_scaffold/tenant.toml.tmpl")
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	data := map[string]string{
		"Name":        name,
		"TaskType":    taskType,
		"Description": descriptions[taskType],
		"Stratify":    stratify[taskType],
	}
	if err := tmpl.ExecuteTemplate(&buf, "tenant.toml.tmpl", data); err != nil {
		return nil, err
	}
	out["tenant.toml"] = buf.Bytes()
	return out, nil
}

var descriptions = map[string]string{
	"qa":             "Answer a question with a short answer.",
	"classification": "Assign each text exactly one label.",
	"math":           "Solve a word problem; the answer is a number.",
	"claim":          "Decide whether a claim is supported.",
	"instruction":    "Follow the instructions of a prompt.",
}

// stratify is the default stratification per task type: label tasks keep
// their class balance in every split.
var stratify = map[string]string{
	"classification": "expected.label",
	"claim":          "expected.label",
}
