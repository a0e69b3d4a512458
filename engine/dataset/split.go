package dataset

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/fapo-dev/fapo/engine/internal/suggest"
)

// SplitConfig says how a source dataset is split. It mirrors
// tenant.DataConfig, which this package cannot import (tenant depends on
// scoring, which depends on dataset).
type SplitConfig struct {
	Train      float64
	Validation float64
	Test       float64
	Seed       int64
	// Stratify is a case path ("expected.label", "metadata.domain") whose
	// values keep their proportions in every split; "" means none.
	Stratify string
}

// splits is the order every per-split array in this package follows.
var splits = [3]Split{Train, Validation, Test}

func (c SplitConfig) ratios() [3]float64 { return [3]float64{c.Train, c.Validation, c.Test} }

// Validate reports a configuration seal cannot split by, naming the
// tenant.toml keys involved.
func (c SplitConfig) Validate() error {
	var sum float64
	for i, r := range c.ratios() {
		if math.IsNaN(r) || math.IsInf(r, 0) || r < 0 || r > 1 {
			return fmt.Errorf("data.%s = %v: a split ratio must be between 0 and 1", splits[i], r)
		}
		sum += r
	}
	if math.Abs(sum-1) > 1e-6 {
		return fmt.Errorf("data.train + data.validation + data.test = %g: the ratios must sum to 1 (e.g. 0.6, 0.2, 0.2)", sum)
	}
	if c.Validation == 0 {
		return errors.New("data.validation = 0: optimization needs a validation split to accept variants on")
	}
	if c.Stratify != "" {
		root, rest, _ := strings.Cut(c.Stratify, ".")
		roots := []string{"context", "expected", "metadata", "task_type"}
		if !slices.Contains(roots, root) || (root != "task_type" && rest == "") {
			return fmt.Errorf("data.stratify = %q: want a case path such as expected.label or metadata.domain (first segment one of %s)%s",
				c.Stratify, strings.Join(roots, ", "), suggest.Hint(root, roots))
		}
	}
	return nil
}

// stringify turns a stratum or group value into a map key. Strings stay as
// they are so manifest keys read naturally; other values use their JSON.
func stringify(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// planner collects what a split needs from a first pass over the source:
// per case only two small integers (its unit and stratum), per unit its key
// and size. Cases themselves are not kept; the second pass streams them.
type planner struct {
	cfg       SplitConfig
	caseUnit  []int32
	caseStrat []int32
	units     []unit
	unitIndex map[string]int32
	strata    []string
	stratIdx  map[string]int32
	// groups counts metadata.group values; dups finds near-duplicate
	// inputs, and merged is what mergeDuplicates did with them.
	groups int
	dups   *dupIndex
	merged DuplicateGroups
}

// unit is what the split assigns: one case, or every case of a
// metadata.group so that a group never spans splits, or (after
// mergeDuplicates) every case of a family of near-duplicates and the
// groups they touch.
type unit struct {
	key     string
	size    int32
	stratum int32 // of its first case
	// mixed counts cases per stratum, only for a group whose cases are
	// in more than one (most units never need the map).
	mixed map[int32]int32
}

func newPlanner(cfg SplitConfig) *planner {
	return &planner{cfg: cfg, unitIndex: map[string]int32{}, stratIdx: map[string]int32{}, dups: newDupIndex()}
}

// add records the next case in source order. Its error has no position.
func (p *planner) add(c Case) error {
	stratum := ""
	if p.cfg.Stratify != "" {
		v, ok := c.Lookup(p.cfg.Stratify)
		if !ok {
			return fmt.Errorf("case %q has no %s to stratify on; give every case one or clear data.stratify", c.CaseID, p.cfg.Stratify)
		}
		stratum = stringify(v)
	}
	si, ok := p.stratIdx[stratum]
	if !ok {
		si = int32(len(p.strata))
		p.strata = append(p.strata, stratum)
		p.stratIdx[stratum] = si
	}
	key := "c\x00" + c.CaseID
	if g, ok := c.Metadata["group"]; ok && g != nil {
		key = "g\x00" + stringify(g)
	}
	ui, ok := p.unitIndex[key]
	if !ok {
		ui = int32(len(p.units))
		p.units = append(p.units, unit{key: key, stratum: si})
		p.unitIndex[key] = ui
		if key[0] == 'g' {
			p.groups++
		}
	}
	u := &p.units[ui]
	if u.mixed == nil && si != u.stratum {
		u.mixed = map[int32]int32{u.stratum: u.size}
	}
	u.size++
	if u.mixed != nil {
		u.mixed[si]++
	}
	p.caseUnit = append(p.caseUnit, ui)
	p.caseStrat = append(p.caseStrat, si)
	p.dups.count(c)
	return nil
}

// addInput feeds the near-duplicate check the next case of a second read,
// in the order add saw them (see dupIndex: the first read tells which
// strings are boilerplate).
func (p *planner) addInput(c Case) { p.dups.add(c) }

// DuplicateGroups is what the contamination check did at a seal: Groups
// units (cases, or metadata.groups) that near-duplicate inputs joined into
// one, holding Cases cases in all; Exact of those cases repeat another
// case's input word for word.
type DuplicateGroups struct {
	Groups int `json:"groups"`
	Cases  int `json:"cases"`
	Exact  int `json:"exact"`
	// ShingleWords and Jaccard are the criterion the seal used.
	ShingleWords int     `json:"shingle_words"`
	Jaccard      float64 `json:"jaccard"`
}

// mergeDuplicates joins the units of near-duplicate cases (see
// neardup.go), after the first pass and before assign. A merged unit is
// keyed by the smallest key among its parts, so the split still does not
// depend on the order of the source lines.
func (p *planner) mergeDuplicates() {
	if p.dups == nil {
		return // merged already
	}
	comp := p.dups.components()
	p.merged = DuplicateGroups{Exact: len(p.dups.edges), ShingleWords: DupShingleWords, Jaccard: DupJaccard}
	p.dups = nil // the signatures are large; the split needs none of it
	parent := make([]int32, len(p.units))
	for i := range parent {
		parent[i] = int32(i)
	}
	find := func(x int32) int32 {
		for parent[x] != x {
			parent[x] = parent[parent[x]]
			x = parent[x]
		}
		return x
	}
	joined := false
	for i, root := range comp {
		a, b := find(p.caseUnit[i]), find(p.caseUnit[root])
		if a != b {
			parent[max(a, b)] = min(a, b)
			joined = true
		}
	}
	if !joined {
		return
	}
	remap := make([]int32, len(p.units))
	var units []unit
	parts := map[int32]int{}
	for ui := range p.units {
		r := find(int32(ui))
		if r == int32(ui) {
			remap[ui] = int32(len(units))
			units = append(units, unit{key: p.units[ui].key, stratum: p.units[ui].stratum})
		}
	}
	for ui := range p.units {
		r := find(int32(ui))
		u, old := &units[remap[r]], &p.units[ui]
		remap[ui] = remap[r]
		parts[remap[ui]]++
		u.key = min(u.key, old.key)
		counts := old.mixed
		if counts == nil {
			counts = map[int32]int32{old.stratum: old.size}
		}
		for s, n := range counts {
			if u.mixed == nil && s != u.stratum {
				u.mixed = map[int32]int32{u.stratum: u.size}
			}
			u.size += n
			if u.mixed != nil {
				u.mixed[s] += n
			}
		}
	}
	for i := range p.caseUnit {
		p.caseUnit[i] = remap[p.caseUnit[i]]
	}
	for ui, n := range parts {
		if n > 1 {
			p.merged.Groups++
			p.merged.Cases += int(units[ui].size)
		}
	}
	p.units, p.unitIndex = units, nil
}

// plan is the outcome of a split: the split of every case by source
// ordinal, and the resulting counts.
type plan struct {
	caseSplit []Split
	counts    [3]int
	strata    map[string][3]int
}

// assign splits the units. Membership depends only on the seed, the ratios
// and the set of (case_id or group, stratum) pairs, never on the order of the
// source lines: units are ordered by a seeded hash of their key.
func (p *planner) assign() plan {
	p.mergeDuplicates()
	ratios := p.cfg.ratios()
	// Strata are ranked by value, not by first appearance, so that the
	// allocation does not depend on the order of the source lines.
	rank := make([]int32, len(p.strata))
	{
		order := make([]int32, len(p.strata))
		for i := range order {
			order[i] = int32(i)
		}
		sort.Slice(order, func(a, b int) bool { return p.strata[order[a]] < p.strata[order[b]] })
		for r, si := range order {
			rank[si] = int32(r)
		}
	}
	// A group with cases in several strata goes with its most common one
	// (ties: the smallest value), so strata stay within ±1 case only when
	// there are no groups.
	byStratum := make([][]int32, len(p.strata))
	for ui := range p.units {
		u := &p.units[ui]
		best, bestN := rank[u.stratum], u.size
		if u.mixed != nil {
			best, bestN = -1, -1
		}
		for s, n := range u.mixed {
			if r := rank[s]; n > bestN || n == bestN && r < best {
				best, bestN = r, n
			}
		}
		byStratum[best] = append(byStratum[best], int32(ui))
	}
	sizes := make([]int, len(p.strata))
	for s, us := range byStratum {
		for _, ui := range us {
			sizes[s] += int(p.units[ui].size)
		}
	}
	targets := allocate(sizes, ratios)
	seed := mix64(uint64(p.cfg.Seed) ^ 0x5ea1ed)
	unitSplit := make([]int8, len(p.units))
	for s, us := range byStratum {
		hashes := make(map[int32]uint64, len(us))
		for _, ui := range us {
			h := fnv.New64a()
			h.Write([]byte(p.units[ui].key))
			hashes[ui] = mix64(h.Sum64() ^ seed)
		}
		// Large groups first, so the small units that follow can even out
		// the counts they disturb.
		sort.Slice(us, func(a, b int) bool {
			ua, ub := &p.units[us[a]], &p.units[us[b]]
			if ua.size != ub.size {
				return ua.size > ub.size
			}
			if hashes[us[a]] != hashes[us[b]] {
				return hashes[us[a]] < hashes[us[b]]
			}
			return ua.key < ub.key
		})
		var got [3]int
		for _, ui := range us {
			best := -1
			for j := range 3 {
				if ratios[j] == 0 {
					continue
				}
				if best < 0 || targets[s][j]-got[j] > targets[s][best]-got[best] { //nolint:gosec // G602: read only when best >= 0
					best = j
				}
			}
			// Validate makes the ratios sum to 1, so some j was chosen.
			unitSplit[ui] = int8(best)
			got[best] += int(p.units[ui].size) //nolint:gosec // G602: best >= 0, see above
		}
	}
	out := plan{caseSplit: make([]Split, len(p.caseUnit)), strata: map[string][3]int{}}
	for i, ui := range p.caseUnit {
		j := unitSplit[ui]
		out.caseSplit[i] = splits[j]
		out.counts[j]++
		if p.cfg.Stratify != "" {
			c := out.strata[p.strata[p.caseStrat[i]]]
			c[j]++
			out.strata[p.strata[p.caseStrat[i]]] = c
		}
	}
	return out
}

// allocate returns how many cases of each stratum go to each split: every
// cell is the floor or the ceiling of size×ratio, every row sums to its
// size, and the split totals are the largest-remainder rounding of
// total×ratio. Such a rounding always exists for three columns; it is found
// greedily by largest remainder and completed by augmenting paths.
func allocate(sizes []int, ratios [3]float64) [][3]int {
	total := 0
	for _, n := range sizes {
		total += n
	}
	totals := largestRemainder(total, ratios)
	cells := make([][3]int, len(sizes))
	fracs := make([][3]float64, len(sizes))
	rowNeed := make([]int, len(sizes))
	colNeed := totals
	for i, n := range sizes {
		rowNeed[i] = n
		for j, r := range ratios {
			q := float64(n) * r
			f := math.Floor(q + 1e-9)
			cells[i][j] = int(f)
			fracs[i][j] = max(q-f, 0)
			rowNeed[i] -= int(f)
			colNeed[j] -= int(f)
		}
	}
	type cand struct {
		i, j int
		f    float64
	}
	var cands []cand
	for i := range sizes {
		for j := range 3 {
			if fracs[i][j] > 1e-9 {
				cands = append(cands, cand{i, j, fracs[i][j]})
			}
		}
	}
	sort.SliceStable(cands, func(a, b int) bool { return cands[a].f > cands[b].f })
	used := make([][3]bool, len(sizes))
	for _, c := range cands {
		if rowNeed[c.i] > 0 && colNeed[c.j] > 0 {
			used[c.i][c.j] = true
			rowNeed[c.i]--
			colNeed[c.j]--
		}
	}
	edge := func(i, j int) bool { return fracs[i][j] > 1e-9 }
	for i := range sizes {
		for rowNeed[i] > 0 {
			if !augment(i, edge, used, &colNeed) && !augment(i, func(i, j int) bool { return ratios[j] > 0 }, used, &colNeed) {
				break // unreachable: the rounding exists; leave the row short rather than loop
			}
			rowNeed[i]--
		}
	}
	for i := range sizes {
		for j := range 3 {
			if used[i][j] {
				cells[i][j]++
			}
		}
	}
	return cells
}

// augment finds an alternating path from row start through unused edges
// (row→column) and used ones (column→row) to a column that still needs a
// case, and flips it, giving start one more case without changing any other
// row's total.
func augment(start int, edge func(i, j int) bool, used [][3]bool, colNeed *[3]int) bool {
	type step struct{ row, col, prev int }
	visitedRow := map[int]bool{start: true}
	var visitedCol [3]bool
	queue := []step{{row: start, col: -1, prev: -1}}
	for qi := 0; qi < len(queue); qi++ {
		i := queue[qi].row
		for j := range 3 {
			if visitedCol[j] || used[i][j] || !edge(i, j) {
				continue
			}
			visitedCol[j] = true
			if colNeed[j] > 0 {
				used[i][j] = true
				// Walk back: each row on the path gives up the used edge it
				// was reached by and its parent row takes that column.
				for at := qi; at > 0; at = queue[at].prev {
					s := queue[at]
					used[s.row][s.col] = false
					used[queue[s.prev].row][s.col] = true
				}
				colNeed[j]--
				return true
			}
			for r := range used {
				if used[r][j] && !visitedRow[r] {
					visitedRow[r] = true
					queue = append(queue, step{row: r, col: j, prev: qi})
				}
			}
		}
	}
	return false
}

// largestRemainder rounds n×ratios to integers summing to n.
func largestRemainder(n int, ratios [3]float64) [3]int {
	var out [3]int
	var frac [3]float64
	left := n
	for j, r := range ratios {
		q := float64(n) * r
		out[j] = int(math.Floor(q + 1e-9))
		frac[j] = q - float64(out[j])
		left -= out[j]
	}
	order := []int{0, 1, 2}
	sort.SliceStable(order, func(a, b int) bool { return frac[order[a]] > frac[order[b]] })
	for k := 0; left > 0; k = (k + 1) % 3 {
		if ratios[order[k]] > 0 {
			out[order[k]]++
			left--
		}
	}
	return out
}

// mix64 is the splitmix64 finalizer: a cheap, well-spread 64-bit mix.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
