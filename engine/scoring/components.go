package scoring

// Declared lists the breakdown components a scorer spec declares: names
// fixed by the scorer's kind, whatever the cases hold. A held-out summary
// shows only these; a key that varies with the data (an IFEval
// instruction id, whatever a command scorer emits) would tell which
// expected values the held-out cases carry.
func Declared(spec Spec) []string {
	switch spec.Kind {
	case "exact_match":
		return []string{"exact_match"}
	case "f1":
		return []string{"precision", "recall", "f1"}
	case "contains":
		return []string{"contains"}
	case "regex":
		return []string{"match", "answer"}
	case "numeric":
		return []string{"found", "numeric"}
	case "label":
		return []string{"correct", "valid_label"}
	case "llm_judge":
		return []string{"judge"}
	case "trajectory":
		return []string{"tool_recall", "tool_precision", "in_order", "non_redundant", "tool_success"}
	case "json_field":
		out := []string{"json_valid", "path_found"}
		if spec.Inner != nil {
			out = append(out, Declared(*spec.Inner)...)
		}
		return out
	case "composite":
		var out []string
		for _, c := range spec.Components {
			out = append(out, c.Name)
			for _, k := range Declared(c.Spec) {
				out = append(out, c.Name+"."+k)
			}
		}
		return out
	}
	return nil // command, ifeval: keys come from the data
}
