package scoring

import (
	"context"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/dataset/datasettest"

	"github.com/fapo-dev/fapo/engine/dataset"
)

func ifevalCase(id string, kw map[string]any) dataset.Case {
	if kw == nil {
		kw = map[string]any{}
	}
	return dataset.Case{CaseID: "c", Expected: map[string]any{"instruction_id_list": []any{id}, "kwargs": []any{kw}}}
}

// TestIFEvalInstructions gives every instruction type a response that
// follows it and one that does not.
func TestIFEvalInstructions(t *testing.T) {
	n := func(v float64) float64 { return v }
	for _, tc := range []struct {
		id         string
		kw         map[string]any
		pass, fail string
	}{
		{"punctuation:no_comma", nil, "No commas here.", "One, two."},
		{"length_constraints:number_words", map[string]any{"relation": "at least", "num_words": n(3)}, "one two three", "one two"},
		{"length_constraints:number_words", map[string]any{"relation": "less than", "num_words": n(3)}, "one two", "one two three"},
		{"length_constraints:number_sentences", map[string]any{"relation": "less than", "num_sentences": n(3)}, "One. Two!", "One. Two! Three?"},
		{"length_constraints:number_sentences", map[string]any{"relation": "at least", "num_sentences": n(2)}, "It is 3.5 m. Yes!", "Just one sentence here"},
		{"length_constraints:number_paragraphs", map[string]any{"num_paragraphs": n(2)}, "First.\n***\nSecond.", "First.\n***\n\n***\nSecond."},
		{"length_constraints:nth_paragraph_first_word", map[string]any{"num_paragraphs": n(2), "nth_paragraph": n(2), "first_word": "Summary"}, "Intro.\n\n\"summary, then.", "Intro.\n\nOverview."},
		{"keywords:forbidden_words", map[string]any{"forbidden_words": []any{"bad", "evil"}}, "A badge is good.", "That was Bad."},
		{"keywords:existence", map[string]any{"keywords": []any{"Go", "fast"}}, "go is FAST", "go is quick"},
		{"keywords:frequency", map[string]any{"keyword": "cat", "relation": "at least", "frequency": n(2)}, "Cat and cat.", "One cat."},
		{"keywords:frequency", map[string]any{"keyword": "cat", "relation": "less than", "frequency": n(2)}, "One cat.", "Cat and cat."},
		{"keywords:letter_frequency", map[string]any{"letter": "z", "let_relation": "at least", "let_frequency": n(2)}, "Zig zag", "zero"},
		{"change_case:english_lowercase", nil, "all lower case, 42.", "Not lower"},
		{"change_case:english_capital", nil, "ALL CAPS, 42.", "ALL CAPS but one"},
		{"change_case:capital_word_frequency", map[string]any{"capital_relation": "less than", "capital_frequency": n(2)}, "Only ONE shout.", "TWO LOUD words."},
		{"change_case:capital_word_frequency", map[string]any{"capital_relation": "at least", "capital_frequency": n(2)}, "TWO LOUD words.", "Only ONE shout."},
		{"detectable_format:number_highlighted_sections", map[string]any{"num_highlights": n(2)}, "*first* and **second**", "*only one* and ** **"},
		{"detectable_format:number_bullet_lists", map[string]any{"num_bullets": n(2)}, "List:\n* a\n- b", "List:\n* a\n- b\n- c"},
		{"detectable_format:title", nil, "<<My Title>>\nText", "<< >>\nText"},
		{"detectable_format:json_format", nil, "```json\n{\"a\": 1}\n```", "{a: 1}"},
		{"detectable_format:multiple_sections", map[string]any{"section_spliter": "SECTION", "num_sections": n(2)}, "SECTION 1\nA\nSECTION 2\nB", "SECTION 1\nA only"},
		{"detectable_format:constrained_response", nil, "Well. My answer is maybe.", "My answer is perhaps."},
		{"detectable_content:postscript", map[string]any{"postscript_marker": "P.S."}, "Body.\n\nP.S. one more thing", "Body.\n\nPS no dots"},
		{"detectable_content:postscript", map[string]any{"postscript_marker": "P.P.S"}, "Body.\nP.P.S later", "Body.\nP.S. only"},
		{"detectable_content:number_placeholders", map[string]any{"num_placeholders": n(2)}, "Dear [name] at [address]", "Dear [name]"},
		{"combination:repeat_prompt", map[string]any{"prompt_to_repeat": "Write a poem."}, "write a poem. Roses...", "Roses... Write a poem."},
		{"combination:two_responses", nil, "First answer.\n******\nSecond answer.", "Same.\n******\nSame."},
		{"startend:quotation", nil, "  \"Quoted whole.\"  ", "\"Quoted\" partly"},
		{"startend:end_checker", map[string]any{"end_phrase": "Any other questions?"}, "Done. any other questions?\"", "Any other questions? Bye."},
		{"language:response_language", map[string]any{"language": "sw"}, "Habari yako? Hii ni jibu kwa Kiswahili na ni nzuri.", "This is an answer in English and it is fine."},
		{"language:response_language", map[string]any{"language": "mr"}, "हे माझे उत्तर आहे आणि ते मराठी मध्ये आहे.", "यह मेरा उत्तर है और यह हिंदी में है।"},
		{"language:response_language", map[string]any{"language": "fa"}, "این پاسخ من به زبان فارسی است.", "هذا جوابي باللغة العربية."},
	} {
		s := &ifevalScorer{}
		c := ifevalCase(tc.id, tc.kw)
		require.NoError(t, s.Validate(c), tc.id)
		r, err := s.Score(context.Background(), c, Output{Final: tc.pass})
		require.NoError(t, err)
		require.Equal(t, 100.0, r.Composite, "%s should pass on %q", tc.id, tc.pass)
		r, err = s.Score(context.Background(), c, Output{Final: tc.fail})
		require.NoError(t, err)
		require.Equal(t, 0.0, r.Composite, "%s should fail on %q", tc.id, tc.fail)
		require.Equal(t, "not followed: "+tc.id, r.Reason)
	}
}

func TestIFEvalShareAndBreakdown(t *testing.T) {
	c := dataset.Case{CaseID: "c", Expected: map[string]any{
		"instruction_id_list": []any{"punctuation:no_comma", "keywords:existence", "keywords:existence"},
		"kwargs":              []any{map[string]any{}, map[string]any{"keywords": []any{"go"}}, map[string]any{"keywords": []any{"rust"}}},
	}}
	r, err := (&ifevalScorer{}).Score(context.Background(), c, Output{Final: "go is nice"})
	require.NoError(t, err)
	require.InDelta(t, 200.0/3, r.Composite, 1e-9)
	require.Equal(t, map[string]float64{"punctuation:no_comma": 100, "keywords:existence": 100, "keywords:existence#2": 0}, r.Breakdown)
}

func TestIFEvalCaseErrors(t *testing.T) {
	s := &ifevalScorer{}
	for _, tc := range []struct {
		expected map[string]any
		want     string
	}{
		{map[string]any{}, "expected.instruction_id_list is missing or empty"},
		{map[string]any{"instruction_id_list": []any{"punctuation:no_comma"}}, "expected.kwargs has 0 entries for 1 instructions"},
		{map[string]any{"instruction_id_list": []any{"punctuation:no_coma"}, "kwargs": []any{map[string]any{}}}, "is not an instruction the ifeval scorer checks"},
		{map[string]any{"instruction_id_list": []any{"keywords:frequency"}, "kwargs": []any{map[string]any{"keyword": "a", "relation": "about", "frequency": 2.0}}}, `kwargs.relation = "about"`},
		{map[string]any{"instruction_id_list": []any{"length_constraints:number_words"}, "kwargs": []any{map[string]any{"relation": "at least", "num_words": 2.5}}}, "kwargs.num_words must be an integer"},
		{map[string]any{"instruction_id_list": []any{"keywords:letter_frequency"}, "kwargs": []any{map[string]any{"letter": "ab", "let_relation": "at least", "let_frequency": 1.0}}}, "kwargs.letter must be one letter"},
		{map[string]any{"instruction_id_list": []any{"keywords:existence"}, "kwargs": []any{"x"}}, "expected.kwargs[0] is a string"},
		{map[string]any{"instruction_id_list": []any{"keywords:existence"}, "kwargs": []any{map[string]any{"keywords": "go"}}}, "kwargs.keywords must be a list"},
	} {
		c := dataset.Case{CaseID: "c", Expected: tc.expected}
		require.ErrorContains(t, s.Validate(c), tc.want)
		_, err := s.Score(context.Background(), c, Output{Final: "x"})
		require.ErrorContains(t, err, tc.want)
	}
}

// TestIFEvalSharedSubset checks that every case of the shared IFEval subset
// validates: each instruction type in it is known and its kwargs read.
func TestIFEvalSharedSubset(t *testing.T) {
	p := datasettest.SharedFile(t, "ifeval.jsonl")
	cases, err := dataset.ReadAll(p)
	require.NoError(t, err)
	s := &ifevalScorer{}
	seen := map[string]bool{}
	for _, c := range cases {
		require.NoError(t, s.Validate(c))
		for _, id := range c.Expected["instruction_id_list"].([]any) {
			seen[id.(string)] = true
		}
	}
	for id := range seen {
		require.True(t, slices.Contains(IFEvalInstructions(), id), id)
	}
	require.Len(t, seen, 25)
}

func TestNewIFEvalAndTrajectorySpecs(t *testing.T) {
	_, err := New(Spec{Kind: "ifeval"}, Env{})
	require.NoError(t, err)
	_, err = New(Spec{Kind: "ifeval", Field: "x"}, Env{})
	require.ErrorContains(t, err, "scorer.field: does not apply to kind \"ifeval\"")
	_, err = New(Spec{Kind: "trajectory", Order: "in_order", RedundancyPenalty: 10}, Env{})
	require.NoError(t, err)
	_, err = New(Spec{Kind: "trajectory", Order: "sorted", RedundancyPenalty: -1}, Env{})
	require.ErrorContains(t, err, `scorer.order: unknown "sorted"`)
	require.ErrorContains(t, err, "scorer.redundancy_penalty: must be between 0 and 100")
	_, err = New(Spec{Kind: "exact_match", Order: "any"}, Env{})
	require.ErrorContains(t, err, `scorer.order: does not apply to kind "exact_match"`)
}
