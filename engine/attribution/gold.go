package attribution

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/fapo-dev/fapo/engine/chain"
	"github.com/fapo-dev/fapo/engine/dataset"
	"github.com/fapo-dev/fapo/engine/internal/suggest"
)

// GoldEvidence says where a case carries the gold evidence of its retrieve
// steps. The zero value is the HotpotQA/HoVer layout: titles at
// expected.supporting_facts[].title, passages at context.paragraphs.
type GoldEvidence struct {
	// TitlesPath is the path of the gold titles: a list of strings, of objects
	// with a title key, or of [title, sentence] pairs.
	TitlesPath string `toml:"titles" json:"titles,omitempty"`
	// TitleKey is the key of the title in object entries (default "title").
	TitleKey string `toml:"title_key" json:"title_key,omitempty"`
	// PassagesPath is the path of the case's candidate passages, from which the
	// gold ones are picked by title for an oracle replay.
	PassagesPath string `toml:"passages" json:"passages,omitempty"`
}

func (g GoldEvidence) titlesPath() string {
	return cmp.Or(g.TitlesPath, "expected.supporting_facts")
}

func (g GoldEvidence) passagesPath() string {
	return cmp.Or(g.PassagesPath, "context.paragraphs")
}

// Titles returns the case's gold evidence titles, each once, in order; none
// when the case carries no gold evidence.
func (g GoldEvidence) Titles(c dataset.Case) []string {
	v, ok := c.Lookup(g.titlesPath())
	if !ok {
		return nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil
	}
	key := cmp.Or(g.TitleKey, "title")
	var out []string
	seen := map[string]bool{}
	for _, item := range list {
		var t string
		switch it := item.(type) {
		case string:
			t = it
		case map[string]any:
			t, _ = it[key].(string)
		case []any:
			if len(it) > 0 {
				t, _ = it[0].(string)
			}
		}
		if t = strings.TrimSpace(t); t != "" && !seen[normText(t)] {
			seen[normText(t)] = true
			out = append(out, t)
		}
	}
	return out
}

// GoldFunc returns the gold output of a step for one case, and false when
// the case carries none.
type GoldFunc func(dataset.Case) (chain.StepOverride, bool)

// BuiltinGold returns the gold a dataset carries for step: for a step mapped
// in oracle (tenant.toml [oracle], step → "expected.<field>") that field;
// for a retrieve step the case's passages whose titles are gold evidence.
// Any other step has no gold, and the error lists the steps that have.
func BuiltinGold(steps []chain.StepInfo, step string, ev GoldEvidence, oracle map[string]string) (GoldFunc, error) {
	i := slices.IndexFunc(steps, func(s chain.StepInfo) bool { return s.ID == step })
	if i < 0 {
		ids := make([]string, len(steps))
		for j, s := range steps {
			ids[j] = s.ID
		}
		return nil, fmt.Errorf("the chain has no step %q%s (steps: %s)", step, suggest.Hint(step, ids), strings.Join(ids, ", "))
	}
	if path, ok := oracle[step]; ok {
		if !strings.HasPrefix(path, "expected.") || path == "expected." {
			return nil, fmt.Errorf("oracle.%s = %q in tenant.toml: the gold output must be a field of the case's expected values, e.g. \"expected.%s\"", step, path, step)
		}
		return fieldGold(path), nil
	}
	if steps[i].Kind == "retrieve" {
		return passageGold(ev), nil
	}
	have := oracleSteps(steps, Options{Gold: ev, Oracle: oracle})
	list := "none"
	if len(have) > 0 {
		list = strings.Join(have, ", ")
	}
	return nil, fmt.Errorf("step %s (kind %s) has no gold output in the dataset, so it cannot be replayed with an oracle; steps with gold: %s. Map a field of the cases in tenant.toml, e.g. [oracle] %s = \"expected.<field>\"",
		step, steps[i].Kind, list, step)
}

// oracleSteps are the steps an oracle replay can substitute, in chain order:
// retrieve steps (gold passages, for cases that carry evidence) and the
// steps mapped in [oracle].
func oracleSteps(steps []chain.StepInfo, opts Options) []string {
	var out []string
	for _, s := range steps {
		if _, mapped := opts.Oracle[s.ID]; mapped || s.Kind == "retrieve" {
			out = append(out, s.ID)
		}
	}
	return out
}

func fieldGold(path string) GoldFunc {
	return func(c dataset.Case) (chain.StepOverride, bool) {
		v, ok := c.Lookup(path)
		if !ok || v == nil {
			return chain.StepOverride{}, false
		}
		if s, ok := v.(string); ok {
			return chain.StepOverride{Output: s}, s != ""
		}
		b, err := json.Marshal(v)
		if err != nil {
			return chain.StepOverride{}, false
		}
		return chain.StepOverride{Output: string(b), Parsed: v}, true
	}
}

// passageGold picks the gold passages among the case's candidates, in the
// order of the gold titles, formatted as the retrieve step would.
func passageGold(ev GoldEvidence) GoldFunc {
	return func(c dataset.Case) (chain.StepOverride, bool) {
		titles := ev.Titles(c)
		if len(titles) == 0 {
			return chain.StepOverride{}, false
		}
		v, ok := c.Lookup(ev.passagesPath())
		if !ok {
			return chain.StepOverride{}, false
		}
		docs, err := chain.PassagesFromValue(v)
		if err != nil {
			return chain.StepOverride{}, false
		}
		var gold []chain.RetrievedDoc
		for _, t := range titles {
			for _, d := range docs {
				if normText(d.Title) == normText(t) {
					gold = append(gold, d)
					break
				}
			}
		}
		if len(gold) == 0 {
			return chain.StepOverride{}, false
		}
		return chain.StepOverride{Retrieved: gold}, true
	}
}
