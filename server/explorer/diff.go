package explorer

import (
	"maps"
	"slices"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
)

// diffContext is how many unchanged lines surround a change; longer
// unchanged stretches fold into one row.
const diffContext = 3

// FileDiff is one file's side-by-side diff.
type FileDiff struct {
	Path string `json:"path"`
	// Status is added, removed or changed.
	Status string    `json:"status"`
	Rows   []DiffRow `json:"rows"`
}

// DiffRow is one row of a side-by-side diff. Kind is equal, delete, insert,
// replace, or fold (Folded unchanged lines left out). A line number of 0
// means the side has no line in this row.
type DiffRow struct {
	Kind    string `json:"kind"`
	LeftNo  int    `json:"left_no,omitempty"`
	Left    string `json:"left,omitempty"`
	RightNo int    `json:"right_no,omitempty"`
	Right   string `json:"right,omitempty"`
	Folded  int    `json:"folded,omitempty"`
}

// sideBySide diffs two file sets file by file, in path order.
func sideBySide(a, b map[string][]byte) []FileDiff {
	all := map[string]bool{}
	for k := range a {
		all[k] = true
	}
	for k := range b {
		all[k] = true
	}
	out := []FileDiff{}
	for _, rel := range slices.Sorted(maps.Keys(all)) {
		x, inA := a[rel]
		y, inB := b[rel]
		if inA && inB && string(x) == string(y) {
			continue
		}
		status := "changed"
		switch {
		case !inA:
			status = "added"
		case !inB:
			status = "removed"
		}
		out = append(out, FileDiff{Path: rel, Status: status, Rows: diffRows(lines(x), lines(y))})
	}
	return out
}

func lines(b []byte) []string {
	if len(b) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func diffRows(a, b []string) []DiffRow {
	var rows []DiffRow
	ops := difflib.NewMatcherWithJunk(a, b, false, nil).GetOpCodes()
	for k, op := range ops {
		switch op.Tag {
		case 'e':
			n := op.I2 - op.I1
			head, tail := diffContext, diffContext
			if k == 0 {
				head = 0
			}
			if k == len(ops)-1 {
				tail = 0
			}
			if n <= head+tail+1 {
				head, tail = n, 0
			}
			for i := 0; i < head; i++ {
				rows = append(rows, DiffRow{Kind: "equal", LeftNo: op.I1 + i + 1, Left: a[op.I1+i], RightNo: op.J1 + i + 1, Right: b[op.J1+i]})
			}
			if folded := n - head - tail; folded > 0 {
				rows = append(rows, DiffRow{Kind: "fold", Folded: folded})
			}
			for i := n - tail; i < n && tail > 0; i++ {
				rows = append(rows, DiffRow{Kind: "equal", LeftNo: op.I1 + i + 1, Left: a[op.I1+i], RightNo: op.J1 + i + 1, Right: b[op.J1+i]})
			}
		default:
			kind := map[byte]string{'r': "replace", 'd': "delete", 'i': "insert"}[op.Tag]
			for i := 0; i < max(op.I2-op.I1, op.J2-op.J1); i++ {
				r := DiffRow{Kind: kind}
				if op.I1+i < op.I2 {
					r.LeftNo, r.Left = op.I1+i+1, a[op.I1+i]
				}
				if op.J1+i < op.J2 {
					r.RightNo, r.Right = op.J1+i+1, b[op.J1+i]
				}
				rows = append(rows, r)
			}
		}
	}
	return rows
}
