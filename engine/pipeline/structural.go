package pipeline

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/BurntSushi/toml"
)

// CheckStructural decides a structural change to an external pipeline's
// chain: fapo cannot add, remove or rewire the steps of a program it does
// not execute, so the only structural change it accepts is to the values
// of the switches the program declares (chain.toml [switches]). parent and
// candidate are the variants' complete file sets.
func CheckStructural(parent, candidate map[string][]byte, spec Spec) error {
	refuse := func(what string) error {
		declared := "it declares no structural switches, so structural variants are refused: change prompts or parameters instead"
		if len(spec.Switches) > 0 {
			declared = "a structural variant may only change the switches it declares in chain.toml [switches] (" + strings.Join(spec.Switches, ", ") + ")"
		}
		return fmt.Errorf("this tenant's pipeline is its own program (tenant.toml [pipeline]), whose steps fapo cannot change (%s); %s", what, declared)
	}
	for p := range candidate {
		if _, ok := parent[p]; !ok {
			return refuse("the proposal adds " + p)
		}
	}
	for p := range parent {
		if _, ok := candidate[p]; !ok {
			return refuse("the proposal removes " + p)
		}
	}
	var a, b map[string]any
	if _, err := toml.Decode(string(parent["chain.toml"]), &a); err != nil {
		return fmt.Errorf("parent chain.toml does not parse: %w", err)
	}
	if _, err := toml.Decode(string(candidate["chain.toml"]), &b); err != nil {
		return fmt.Errorf("chain.toml does not parse: %w", err)
	}
	sa, _ := a["switches"].(map[string]any)
	sb, _ := b["switches"].(map[string]any)
	delete(a, "switches")
	delete(b, "switches")
	if !reflect.DeepEqual(a, b) {
		return refuse("the proposal changes its steps or their declaration")
	}
	for k := range sb {
		if !slices.Contains(spec.Switches, k) {
			return refuse(fmt.Sprintf("switch %q is not one the program declares", k))
		}
	}
	for k := range sa {
		if _, ok := sb[k]; !ok {
			return refuse(fmt.Sprintf("the proposal removes switch %q instead of setting its value", k))
		}
	}
	return nil
}
