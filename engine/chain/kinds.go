package chain

import (
	"context"
	"maps"
	"slices"
)

// kindSpec is everything the loader and the executor need to know about one
// step kind. New kinds (reflect, react, vote, branch) register here and touch
// neither the loader nor the executor loop.
type kindSpec struct {
	// keys are the step keys the kind accepts besides id and kind.
	keys []string
	// roots are extra top-level names the kind's own templates may read
	// (.draft of a reflect step, .samples of a vote judge), besides
	// rootFields.
	roots []string
	// compile parses the kind's templates and checks its keys, reporting
	// problems on l; it runs in chain order.
	compile func(l *loader, s *step)
	// views are the values later steps may read as .steps.ID.<view>.
	views func(s *step) []string
	// run executes the step for one case, filling st. A returned error marks
	// the step (and so the case) failed.
	run func(ctx context.Context, x *execution, s *step, st *StepTrace) error
	// placeholder fills st with stand-in values for a dry run, after the
	// step's templates were rendered by render.
	placeholder func(x *execution, s *step, st *StepTrace) error
	// callsModel is set for kinds whose output comes from a model; the
	// review refuses a chain whose final output depends on none.
	callsModel bool
}

var kinds = map[string]*kindSpec{}

func registerKind(name string, k *kindSpec) {
	if _, dup := kinds[name]; dup {
		panic("chain: step kind " + name + " registered twice")
	}
	kinds[name] = k
}

func kindNames() []string { return slices.Sorted(maps.Keys(kinds)) }

// viewNames are every value a step can expose; a reference outside this set
// is a typo rather than a kind mismatch.
var viewNames = []string{"output", "parsed", "retrieved"}
