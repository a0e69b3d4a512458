package fakellm

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func post(t *testing.T, url, body string) (int, http.Header, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, b
}

func chatBody(msgs ...string) string {
	type m struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	var ms []m
	for i := 0; i+1 < len(msgs); i += 2 {
		ms = append(ms, m{msgs[i], msgs[i+1]})
	}
	b, _ := json.Marshal(map[string]any{"model": "test-model", "messages": ms})
	return string(b)
}

func decode(t *testing.T, b []byte) wireCompletion {
	t.Helper()
	var c wireCompletion
	require.NoError(t, json.Unmarshal(b, &c))
	return c
}

func TestRulesAndLabels(t *testing.T) {
	s := New(
		WithRule(LastUserContains("alpha"), Reply{Content: "A"}),
		WithRule(LastUserMatches(`^b\w+`), Reply{Content: "B"}),
		WithRule(AnyMessageContains("SYSTEM-X"), Reply{Content: "X"}),
		WithRuleFunc(AnyMessageMatches(`n=(\d+)`), func(r Request) Reply { return Reply{Content: "n:" + r.LastUser()} }),
		WithDefault(func(r Request) Reply { return Reply{Content: "default", PromptTokens: 7, CompletionTokens: 3} }),
	)
	defer s.Close()
	tests := []struct {
		body string
		want string
	}{
		{chatBody("user", "say alpha"), "A"},
		{chatBody("user", "bravo"), "B"},
		{chatBody("system", "SYSTEM-X", "user", "anything"), "X"},
		{chatBody("user", "alpha", "assistant", "ok", "user", "n=3"), "n:n=3"},
		{chatBody("user", "zzz"), "default"},
	}
	for _, tt := range tests {
		code, _, b := post(t, s.URL()+"/chat/completions", tt.body)
		require.Equal(t, http.StatusOK, code)
		c := decode(t, b)
		require.Equal(t, tt.want, c.Choices[0].Message.Content)
		require.Equal(t, Fingerprint, c.SystemFingerprint)
		require.Equal(t, Fingerprint+"/test-model", c.Model)
	}
	c := decode(t, func() []byte { _, _, b := post(t, s.URL()+"/chat/completions", chatBody("user", "zzz")); return b }())
	require.Equal(t, 7, c.Usage.PromptTokens)
	require.Equal(t, 10, c.Usage.TotalTokens)
	require.Equal(t, 6, s.Count())
	require.Equal(t, "/v1/chat/completions", s.Requests()[0].Path)
	require.Equal(t, "say alpha", s.Requests()[0].Chat.LastUser())
}

func TestEchoDefaultAndUsageEstimate(t *testing.T) {
	s := New()
	defer s.Close()
	_, _, b := post(t, s.BaseURL()+"/chat/completions", chatBody("user", strings.Repeat("a", 40)))
	c := decode(t, b)
	require.Equal(t, "echo: "+strings.Repeat("a", 40), c.Choices[0].Message.Content)
	require.Equal(t, 10, c.Usage.PromptTokens)
	require.Equal(t, "stop", c.Choices[0].FinishReason)
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name       string
		fault      Fault
		status     int
		retryAfter string
		malformed  bool
	}{
		{"429", RateLimited("2"), 429, "2", false},
		{"500", ServerError(), 500, "", false},
		{"418", Status(418), 418, "", false},
		{"malformed", Malformed(), 200, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(FailFirst(1, tt.fault))
			defer s.Close()
			code, h, b := post(t, s.URL()+"/chat/completions", chatBody("user", "x"))
			require.Equal(t, tt.status, code)
			require.Equal(t, tt.retryAfter, h.Get("Retry-After"))
			require.Equal(t, tt.malformed, !json.Valid(b))
			code, _, _ = post(t, s.URL()+"/chat/completions", chatBody("user", "x"))
			require.Equal(t, http.StatusOK, code, "only the first call fails")
		})
	}
}

// TestCompletionShapedFaults: the 200 faults that a client must treat as
// transient, each as it looks on the wire.
func TestCompletionShapedFaults(t *testing.T) {
	t.Run("cut body", func(t *testing.T) {
		s := New(FailFirst(1, CutBody()))
		defer s.Close()
		resp, err := http.Post(s.URL()+"/chat/completions", "application/json", strings.NewReader(chatBody("user", "x")))
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Positive(t, resp.ContentLength)
		b, err := io.ReadAll(resp.Body)
		require.ErrorIs(t, err, io.ErrUnexpectedEOF, "the connection drops before Content-Length bytes")
		require.Less(t, int64(len(b)), resp.ContentLength)
		require.NotEmpty(t, b)
	})
	t.Run("no choices", func(t *testing.T) {
		s := New(FailFirst(1, NoChoices()))
		defer s.Close()
		code, _, b := post(t, s.URL()+"/chat/completions", chatBody("user", "x"))
		require.Equal(t, http.StatusOK, code)
		c := decode(t, b)
		require.Empty(t, c.Choices)
		require.Equal(t, Fingerprint, c.SystemFingerprint)
	})
	t.Run("empty", func(t *testing.T) {
		s := New(FailFirst(1, Empty()))
		defer s.Close()
		code, _, b := post(t, s.URL()+"/chat/completions", chatBody("user", "x"))
		require.Equal(t, http.StatusOK, code)
		c := decode(t, b)
		require.Len(t, c.Choices, 1)
		require.Empty(t, c.Choices[0].Message.Content)
		require.Equal(t, "stop", c.Choices[0].FinishReason)
		code, _, b = post(t, s.URL()+"/chat/completions", chatBody("user", "x"))
		require.Equal(t, http.StatusOK, code)
		require.Equal(t, "echo: x", decode(t, b).Choices[0].Message.Content, "only the first call fails")
	})
}

func TestHangReleasedByClientAndClose(t *testing.T) {
	s := New(WithRule(LastUserContains("hang"), Reply{Fault: Hang()}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/chat/completions", strings.NewReader(chatBody("user", "hang")))
	require.NoError(t, err)
	_, err = http.DefaultClient.Do(req)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	go func() {
		_, _ = http.Post(s.URL()+"/chat/completions", "application/json", strings.NewReader(chatBody("user", "hang")))
	}()
	for s.Count() < 2 {
		time.Sleep(time.Millisecond)
	}
	s.Close() // returns only if the hanging handler was released
}

func TestLatencyAndTruncation(t *testing.T) {
	s := New(WithLatency(5*time.Millisecond),
		WithRule(LastUserContains("slow"), Reply{Content: "s", Latency: 10 * time.Millisecond}),
		WithRule(LastUserContains("long"), Reply{Content: "0123456789", Truncate: 4}))
	defer s.Close()
	start := time.Now()
	_, _, b := post(t, s.URL()+"/chat/completions", chatBody("user", "slow"))
	require.GreaterOrEqual(t, time.Since(start), 10*time.Millisecond)
	require.Equal(t, "s", decode(t, b).Choices[0].Message.Content)

	_, _, b = post(t, s.URL()+"/chat/completions", chatBody("user", "long"))
	c := decode(t, b)
	require.Equal(t, "0123", c.Choices[0].Message.Content)
	require.Equal(t, "length", c.Choices[0].FinishReason)
}

func TestToolCalls(t *testing.T) {
	s := New(WithDefault(func(Request) Reply {
		return Reply{ToolCalls: []ToolCall{{Name: "f", Arguments: `{}`}}}
	}))
	defer s.Close()
	_, _, b := post(t, s.URL()+"/chat/completions", chatBody("user", "x"))
	c := decode(t, b)
	require.Equal(t, "tool_calls", c.Choices[0].FinishReason)
	require.Equal(t, "call_0", c.Choices[0].Message.ToolCalls[0].ID)
	require.Equal(t, "function", c.Choices[0].Message.ToolCalls[0].Type)
}

func TestBadRequestBody(t *testing.T) {
	s := New()
	defer s.Close()
	code, _, b := post(t, s.URL()+"/chat/completions", "{not json")
	require.Equal(t, http.StatusBadRequest, code)
	require.Contains(t, string(b), "not a chat completion")
	code, _, _ = post(t, s.BaseURL()+"/endpoints/ep/invocations", "{not json")
	require.Equal(t, http.StatusBadRequest, code)
	require.Equal(t, 2, s.Count(), "bad requests are recorded too")
}

func TestSageMakerShapes(t *testing.T) {
	s := New(WithSageMakerTGI())
	defer s.Close()
	_, _, b := post(t, s.BaseURL()+"/endpoints/my-ep/invocations", chatBody("user", "hi"))
	require.JSONEq(t, `[{"generated_text":"echo: hi"}]`, string(bytes.TrimSpace(b)))
	require.Equal(t, "my-ep", s.Requests()[0].Endpoint)
}

func TestConcurrentRecording(t *testing.T) {
	s := New()
	defer s.Close()
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			resp, err := http.Post(s.URL()+"/chat/completions", "application/json", strings.NewReader(chatBody("user", "x")))
			if err == nil {
				_ = resp.Body.Close()
			}
		})
	}
	wg.Wait()
	require.Equal(t, 16, s.Count())
	require.Len(t, s.Requests(), 16)
}
