package agenttest_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/loop/agenttest"
)

func twoSteps() agenttest.Script {
	return agenttest.Script{Steps: []agenttest.Step{
		func(prev string) agenttest.Call {
			return agenttest.Call{Tool: "evaluate", Args: map[string]any{"split": "train"}}
		},
		func(prev string) agenttest.Call {
			return agenttest.Call{Tool: "inspect_cases", Args: map[string]any{"run": agenttest.Field(prev, "run")}}
		},
	}, Final: "done"}
}

// sse posts body and returns the events' data objects in order.
func sse(t *testing.T, url, body string) []map[string]any {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	var out []map[string]any
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var m map[string]any
			require.NoError(t, json.Unmarshal([]byte(data), &m))
			out = append(out, m)
		}
	}
	return out
}

func types(events []map[string]any) []string {
	var out []string
	for _, e := range events {
		out = append(out, e["type"].(string))
	}
	return out
}

const anthropicTools = `"tools":[{"name":"mcp__fapo__evaluate"},{"name":"mcp__fapo__inspect_cases"}]`

func TestAnthropicScript(t *testing.T) {
	s := agenttest.New(twoSteps())
	defer s.Close()
	url := s.URL() + "/v1/messages?beta=true"

	tests := []struct {
		name      string
		body      string
		wantStop  string
		wantDelta map[string]any
	}{
		{"first step", `{"stream":true,` + anthropicTools + `,"messages":[{"role":"user","content":"go"}]}`,
			"tool_use", map[string]any{"type": "input_json_delta", "partial_json": `{"split":"train"}`}},
		{"second step reads the run id from the result", `{"stream":true,` + anthropicTools + `,"messages":[{"role":"user","content":"go"},` +
			`{"role":"assistant","content":[{"type":"tool_use","id":"call_00","name":"mcp__fapo__evaluate","input":{}}]},` +
			`{"role":"user","content":[{"type":"tool_result","tool_use_id":"call_00","content":[{"type":"text","text":"{\"run\":\"r-42\"}"}]}]}]}`,
			"tool_use", map[string]any{"type": "input_json_delta", "partial_json": `{"run":"r-42"}`}},
		{"final text after the last result", `{"stream":true,` + anthropicTools + `,"messages":[` +
			`{"role":"user","content":[{"type":"tool_result","tool_use_id":"call_00","content":"{\"run\":\"r-42\"}"},{"type":"tool_result","tool_use_id":"call_01","content":"refused","is_error":true}]}]}`,
			"end_turn", map[string]any{"type": "text_delta", "text": "done"}},
		{"a side request without fapo tools gets a short text", `{"stream":true,"messages":[{"role":"user","content":"title?"}]}`,
			"end_turn", map[string]any{"type": "text_delta", "text": "ok"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ev := sse(t, url, tc.body)
			require.Equal(t, []string{"message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop"}, types(ev))
			require.Equal(t, tc.wantDelta, ev[2]["delta"])
			require.Equal(t, tc.wantStop, ev[4]["delta"].(map[string]any)["stop_reason"])
		})
	}
	res := s.Results()
	require.Len(t, res, 2)
	require.Equal(t, `{"run":"r-42"}`, res[0].Text)
	require.False(t, res[0].IsError)
	require.True(t, res[1].IsError)
	require.Len(t, s.Requests(), len(tests))
	require.Contains(t, s.Bodies(), "title?")
	require.Empty(t, s.Errors())
}

func TestAnthropicNonStreaming(t *testing.T) {
	s := agenttest.New(twoSteps())
	defer s.Close()
	resp, err := http.Post(s.URL()+"/v1/messages", "application/json", strings.NewReader(`{"stream":false,`+anthropicTools+`,"messages":[]}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	var msg struct {
		StopReason string `json:"stop_reason"`
		Content    []struct {
			Type  string         `json:"type"`
			Name  string         `json:"name"`
			Input map[string]any `json:"input"`
		} `json:"content"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&msg))
	require.Equal(t, "tool_use", msg.StopReason)
	require.Equal(t, "mcp__fapo__evaluate", msg.Content[0].Name)
	require.Equal(t, map[string]any{"split": "train"}, msg.Content[0].Input)
}

const responsesTools = `"tools":[{"type":"namespace","name":"mcp__fapo","tools":[{"type":"function","name":"evaluate"}]}]`

func TestResponsesScript(t *testing.T) {
	s := agenttest.New(twoSteps())
	defer s.Close()
	url := s.URL() + "/v1/responses"

	ev := sse(t, url, `{"stream":true,`+responsesTools+`,"input":[{"type":"message","role":"user","content":[{"type":"input_text","text":"go"}]}]}`)
	require.Equal(t, []string{"response.created", "response.output_item.added", "response.output_item.done", "response.completed"}, types(ev))
	item := ev[2]["item"].(map[string]any)
	require.Equal(t, "function_call", item["type"])
	require.Equal(t, "evaluate", item["name"])
	require.Equal(t, "mcp__fapo", item["namespace"], "Codex needs the namespace; a flat name fails")
	require.Equal(t, `{"split":"train"}`, item["arguments"])
	require.Equal(t, "call_00", item["call_id"])
	require.NotNil(t, ev[3]["response"].(map[string]any)["usage"])

	ev = sse(t, url, `{"stream":true,`+responsesTools+`,"input":[{"type":"function_call_output","call_id":"call_00","output":"Wall time: 0.1 seconds\nOutput:\n{\"run\":\"r-7\"}"}]}`)
	item = ev[2]["item"].(map[string]any)
	require.Equal(t, `{"run":"r-7"}`, item["arguments"])

	ev = sse(t, url, `{"stream":true,`+responsesTools+`,"input":[{"type":"function_call_output","call_id":"call_00","output":"{}"},{"type":"function_call_output","call_id":"call_01","output":[{"type":"input_text","text":"x"}]}]}`)
	item = ev[2]["item"].(map[string]any)
	require.Equal(t, "message", item["type"])
	require.Equal(t, "done", item["content"].([]any)[0].(map[string]any)["text"])
	require.Len(t, s.Results(), 2)
	require.Equal(t, "x", s.Results()[1].Text)
}

func TestNativeCall(t *testing.T) {
	s := agenttest.New(agenttest.Script{Steps: []agenttest.Step{func(string) agenttest.Call {
		return agenttest.Call{Tool: "read_mcp_resource", Native: true, Args: map[string]any{"server": "fapo", "uri": "fapo://x"}}
	}}})
	defer s.Close()
	ev := sse(t, s.URL()+"/v1/responses", `{"stream":true,`+responsesTools+`,"input":[]}`)
	item := ev[2]["item"].(map[string]any)
	require.Equal(t, "read_mcp_resource", item["name"])
	require.Nil(t, item["namespace"])
}

func TestErrors(t *testing.T) {
	s := agenttest.New(twoSteps())
	defer s.Close()
	tests := []struct{ method, path, body string }{
		{http.MethodPost, "/v1/messages", "not json"},
		{http.MethodPost, "/v1/responses", "{"},
		{http.MethodPost, "/v1/chat/completions", "{}"},
	}
	for _, tc := range tests {
		req, err := http.NewRequest(tc.method, s.URL()+tc.path, strings.NewReader(tc.body))
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, tc.path)
	}
	require.Len(t, s.Errors(), len(tests))
	require.Contains(t, s.Errors()[2], "no such endpoint POST /v1/chat/completions")
}

func TestField(t *testing.T) {
	tests := []struct{ text, key, want string }{
		{`{"run":"r1"}`, "run", "r1"},
		{`{"n":3}`, "n", "3"},
		{"Wall time: 1s\nOutput:\n{\"variant\":\"v0002\"} trailing", "variant", "v0002"},
		{`{"run":"r1"}`, "missing", ""},
		{"no json here", "run", ""},
		{"{broken", "run", ""},
	}
	for _, tc := range tests {
		require.Equal(t, tc.want, agenttest.Field(tc.text, tc.key), tc.text)
	}
}
