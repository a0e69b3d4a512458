package provider

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fapo-dev/fapo/engine/provider/fakellm"
)

func ptr[T any](v T) *T { return &v }

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func userReq(text string) Request {
	return Request{Messages: []Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: text}}}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name string
		spec Spec
		want []string
	}{
		{"missing openai key names the variable", Spec{Provider: "openai", Name: "gpt-4o-mini"},
			[]string{"OPENAI_API_KEY", "is empty", "export it"}},
		{"missing custom key", Spec{Provider: "openai_compatible", Name: "llama", BaseURL: "http://x/v1", APIKeyEnv: "BASETEN_KEY"},
			[]string{"BASETEN_KEY"}},
		{"compatible without base_url", Spec{Provider: "openai_compatible", Name: "llama"},
			[]string{"base_url is empty"}},
		{"openai without name", Spec{Provider: "openai"}, []string{"name is empty"}},
		{"typo in provider", Spec{Provider: "openia", Name: "m"}, []string{`unknown provider "openia"`, `did you mean "openai"`}},
		{"empty provider", Spec{Name: "m"}, []string{"provider is empty"}},
		{"sagemaker without endpoint", Spec{Provider: "sagemaker", Name: "m", Region: "us-east-1"}, []string{"endpoint is empty"}},
		{"sagemaker without region", Spec{Provider: "sagemaker", Name: "m", Endpoint: "ep"}, []string{"region is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.spec, Options{Getenv: env()})
			require.Error(t, err)
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestOpenAIRequestAndResponse(t *testing.T) {
	fake := fakellm.New(fakellm.WithRule(fakellm.LastUserContains("capital"), fakellm.Reply{
		Content: "Paris", PromptTokens: 12, CompletionTokens: 2}))
	defer fake.Close()
	c, err := New(Spec{Provider: "openai", Name: "gpt-4o-mini", BaseURL: fake.URL()},
		Options{Getenv: env("OPENAI_API_KEY", "sk-test")})
	require.NoError(t, err)

	req := userReq("capital of France?")
	req.Params = Params{Temperature: ptr(0.0), TopP: ptr(0.5), MaxTokens: ptr(64), Seed: ptr(7), Stop: []string{"\n\n"}}
	req.JSONSchema = json.RawMessage(`{"type":"object","properties":{"answer":{"type":"string"}}}`)
	req.Tools = []ToolDef{{Name: "lookup", Description: "find a page", Parameters: json.RawMessage(`{"type":"object"}`)}}
	resp, err := c.Complete(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, "Paris", resp.Content)
	require.Equal(t, "stop", resp.FinishReason)
	require.Equal(t, Usage{PromptTokens: 12, CompletionTokens: 2}, resp.Usage)
	require.Positive(t, resp.Latency)
	require.False(t, resp.CacheHit)

	recs := fake.Requests()
	require.Len(t, recs, 1)
	got := recs[0]
	require.Equal(t, "Bearer sk-test", got.Header.Get("Authorization"))
	require.Equal(t, "gpt-4o-mini", got.Chat.Model)
	require.Equal(t, "system", got.Chat.Messages[0].Role)
	require.NotNil(t, got.Chat.Temperature, "temperature 0 must reach the server, not be dropped by omitempty")
	require.Less(t, *got.Chat.Temperature, 1e-6)
	require.InDelta(t, 0.5, *got.Chat.TopP, 1e-6)
	require.Equal(t, 64, *got.Chat.MaxTokens)
	require.Nil(t, got.Chat.MaxCompletionTokens)
	require.Equal(t, 7, *got.Chat.Seed)
	require.Equal(t, []string{"\n\n"}, got.Chat.Stop)
	require.JSONEq(t, `{"type":"json_schema","json_schema":{"name":"output","strict":true,
		"schema":{"type":"object","properties":{"answer":{"type":"string"}}}}}`, string(got.Chat.ResponseFormat))
	require.JSONEq(t, `[{"type":"function","function":{"name":"lookup","description":"find a page","parameters":{"type":"object"}}}]`,
		string(got.Chat.Tools))
}

func TestOpenAICompatibleWithoutKey(t *testing.T) {
	fake := fakellm.New()
	defer fake.Close()
	c, err := New(Spec{Provider: "openai_compatible", Name: "llama-3.1-8b", BaseURL: fake.URL() + "/"}, Options{Getenv: env()})
	require.NoError(t, err)
	resp, err := c.Complete(context.Background(), userReq("hello"))
	require.NoError(t, err)
	require.Equal(t, "echo: hello", resp.Content)
	rec := fake.Requests()[0]
	require.Equal(t, "/v1/chat/completions", rec.Path)
	require.Empty(t, rec.Header.Get("Authorization"))
	require.Nil(t, rec.Chat.Temperature, "unset parameters stay unset")
}

func TestReasoningRequestShape(t *testing.T) {
	tests := []struct {
		name      string
		model     string
		reasoning *bool
		want      bool
	}{
		{"o3 detected by name", "o3-mini", nil, true},
		{"o1 detected by name", "o1", nil, true},
		{"gpt-5 detected by name", "gpt-5-mini", nil, true},
		{"openrouter prefix", "openai/o4-mini", nil, true},
		{"forced by spec", "qwen3-32b", ptr(true), true},
		{"ordinary model", "gpt-4o-mini", nil, false},
		{"omni is not o-series", "omni-moderation", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := fakellm.New()
			defer fake.Close()
			c, err := New(Spec{Provider: "openai_compatible", Name: tt.model, BaseURL: fake.URL(), Reasoning: tt.reasoning}, Options{})
			require.NoError(t, err)
			req := userReq("think")
			req.Params = Params{Temperature: ptr(0.2), TopP: ptr(0.9), MaxTokens: ptr(256)}
			_, err = c.Complete(context.Background(), req)
			require.NoError(t, err)
			got := fake.Requests()[0].Chat
			if tt.want {
				require.Equal(t, "developer", got.Messages[0].Role)
				require.Equal(t, 256, *got.MaxCompletionTokens)
				require.Nil(t, got.MaxTokens)
				require.Nil(t, got.Temperature)
				require.Nil(t, got.TopP)
			} else {
				require.Equal(t, "system", got.Messages[0].Role)
				require.Equal(t, 256, *got.MaxTokens)
				require.Nil(t, got.MaxCompletionTokens)
				require.NotNil(t, got.Temperature)
			}
		})
	}
}

func TestToolCallsAndTruncation(t *testing.T) {
	fake := fakellm.New(
		fakellm.WithRule(fakellm.LastUserMatches(`^weather`), fakellm.Reply{
			ToolCalls: []fakellm.ToolCall{{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Oslo"}`}}}),
		fakellm.WithRule(fakellm.AnyMessageContains("essay"), fakellm.Reply{Content: "a very long essay text", Truncate: 6}),
		fakellm.WithRuleFunc(fakellm.AnyMessageMatches(`count \d+`), func(r fakellm.Request) fakellm.Reply {
			return fakellm.Reply{Content: strings.Repeat("x", 100)}
		}),
	)
	defer fake.Close()
	c, err := New(Spec{Provider: "openai_compatible", Name: "m", BaseURL: fake.URL()}, Options{})
	require.NoError(t, err)

	resp, err := c.Complete(context.Background(), userReq("weather in Oslo"))
	require.NoError(t, err)
	require.Equal(t, "tool_calls", resp.FinishReason)
	require.Equal(t, []ToolCall{{ID: "call_1", Name: "get_weather", Arguments: `{"city":"Oslo"}`}}, resp.ToolCalls)

	resp, err = c.Complete(context.Background(), userReq("write an essay"))
	require.NoError(t, err)
	require.Equal(t, "length", resp.FinishReason)
	require.Equal(t, "a very", resp.Content)

	req := userReq("count 100")
	req.Params.MaxTokens = ptr(5)
	resp, err = c.Complete(context.Background(), req)
	require.NoError(t, err)
	require.Equal(t, "length", resp.FinishReason, "the double truncates to max_tokens*4 characters")
	require.Len(t, resp.Content, 20)
}

func sagemakerClientFor(t *testing.T, fake *fakellm.Server) Client {
	t.Helper()
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	c, err := New(Spec{Provider: "sagemaker", Name: "llama-3-8b", Region: "us-east-1", Endpoint: "my-endpoint"},
		Options{AWS: AWSOptions{EndpointURL: fake.BaseURL(), AccessKeyID: "AKIDTEST", SecretAccessKey: "secret"}})
	require.NoError(t, err)
	return c
}

func TestSageMaker(t *testing.T) {
	tests := []struct {
		name string
		opts []fakellm.Option
	}{
		{"chat completion shape", nil},
		{"TGI generated_text shape", []fakellm.Option{fakellm.WithSageMakerTGI()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := fakellm.New(append(tt.opts, fakellm.WithRule(fakellm.LastUserContains("2+2"), fakellm.Reply{Content: "4"}))...)
			defer fake.Close()
			c := sagemakerClientFor(t, fake)
			req := userReq("2+2?")
			req.Params = Params{Temperature: ptr(0.0), MaxTokens: ptr(16)}
			resp, err := c.Complete(context.Background(), req)
			require.NoError(t, err)
			require.Equal(t, "4", resp.Content)
			require.Equal(t, "stop", resp.FinishReason)
			rec := fake.Requests()[0]
			require.Equal(t, "my-endpoint", rec.Endpoint)
			require.True(t, strings.HasPrefix(rec.Header.Get("Authorization"), "AWS4-HMAC-SHA256"), "requests are SigV4-signed")
			require.Equal(t, "llama-3-8b", rec.Chat.Model)
			require.Equal(t, "2+2?", rec.Chat.LastUser())
			require.Equal(t, 0.0, *rec.Chat.Temperature)
			require.Equal(t, 16, *rec.Chat.MaxTokens)
		})
	}
}

func TestSageMakerErrors(t *testing.T) {
	tests := []struct {
		name       string
		fault      fakellm.Fault
		status     int
		retryAfter time.Duration
		malformed  bool
	}{
		{"429 with Retry-After", fakellm.RateLimited("3"), 429, 3 * time.Second, false},
		{"400", fakellm.Status(400), 400, 0, false},
		{"500", fakellm.ServerError(), 500, 0, false},
		{"malformed", fakellm.Malformed(), 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := fakellm.New(fakellm.FailFirst(1, tt.fault))
			defer fake.Close()
			_, err := sagemakerClientFor(t, fake).Complete(context.Background(), userReq("hi"))
			require.Error(t, err)
			if tt.malformed {
				require.ErrorIs(t, err, ErrMalformedResponse)
				return
			}
			var api *APIError
			require.ErrorAs(t, err, &api)
			require.Equal(t, tt.status, api.Status)
			require.Equal(t, tt.retryAfter, api.RetryAfter)
			require.Contains(t, err.Error(), "sagemaker llama-3-8b")
		})
	}
}

func TestParseSageMaker(t *testing.T) {
	tests := []struct {
		body    string
		content string
		errs    string
	}{
		{`{"generated_text":"hi"}`, "hi", ""},
		{`[{"generated_text":"yo"}]`, "yo", ""},
		{`{"choices":[{"message":{"content":"c"},"finish_reason":"eos_token"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}`, "c", ""},
		{``, "", "empty body"},
		{`[]`, "", "generated_text"},
		{`{"foo":1}`, "", "expected a chat completion"},
		{`[1,2]`, "", "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			r, err := parseSageMaker([]byte(tt.body))
			if tt.errs != "" {
				require.ErrorContains(t, err, tt.errs)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.content, r.Content)
			require.Equal(t, "stop", r.FinishReason)
		})
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		h    http.Header
		want time.Duration
	}{
		{"none", http.Header{}, 0},
		{"seconds", http.Header{"Retry-After": {"2"}}, 2 * time.Second},
		{"fraction", http.Header{"Retry-After": {"0.5"}}, 500 * time.Millisecond},
		{"http date", http.Header{"Retry-After": {now.Add(90 * time.Second).Format(http.TimeFormat)}}, 90 * time.Second},
		{"date in the past", http.Header{"Retry-After": {now.Add(-time.Minute).Format(http.TimeFormat)}}, 0},
		{"garbage", http.Header{"Retry-After": {"soon"}}, 0},
		{"negative", http.Header{"Retry-After": {"-4"}}, 0},
		{"milliseconds header", http.Header{"Retry-After-Ms": {"250"}}, 250 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, parseRetryAfter(tt.h, now))
		})
	}
}

// fastRetry keeps backoff waits in the millisecond range.
var fastRetry = RetryPolicy{BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond}

func stackFor(t *testing.T, fake *fakellm.Server, mutate func(*Spec, *StackOptions)) Client {
	t.Helper()
	spec := Spec{Provider: "openai", Name: "gpt-4o-mini", BaseURL: fake.URL(), MaxRetries: 2, TimeoutSeconds: 5}
	opts := StackOptions{Options: Options{Getenv: env("OPENAI_API_KEY", "sk-test")}, Retry: fastRetry}
	if mutate != nil {
		mutate(&spec, &opts)
	}
	c, err := Stack(spec, opts)
	require.NoError(t, err)
	return c
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name      string
		opts      []fakellm.Option
		spec      func(*Spec, *StackOptions)
		wantCalls int
		check     func(t *testing.T, resp Response, err error)
	}{
		{
			name: "429 then success honoring Retry-After", opts: []fakellm.Option{fakellm.FailFirst(2, fakellm.RateLimited("0.02"))},
			wantCalls: 3,
			check: func(t *testing.T, resp Response, err error) {
				require.NoError(t, err)
				require.Equal(t, "echo: hi", resp.Content)
			},
		},
		{
			name: "500 retried then success", opts: []fakellm.Option{fakellm.FailFirst(1, fakellm.ServerError())},
			wantCalls: 2,
			check:     func(t *testing.T, _ Response, err error) { require.NoError(t, err) },
		},
		{
			name: "500 until retries run out", opts: []fakellm.Option{fakellm.FailFirst(100, fakellm.ServerError())},
			wantCalls: 3,
			check: func(t *testing.T, _ Response, err error) {
				var api *APIError
				require.ErrorAs(t, err, &api)
				require.Equal(t, 500, api.Status)
				require.Contains(t, err.Error(), "gave up after 3 attempts")
			},
		},
		{
			name: "400 not retried", opts: []fakellm.Option{fakellm.FailFirst(100, fakellm.Status(400))},
			wantCalls: 1,
			check: func(t *testing.T, _ Response, err error) {
				var api *APIError
				require.ErrorAs(t, err, &api)
				require.Equal(t, 400, api.Status)
				require.Contains(t, api.Body, "injected 400")
			},
		},
		{
			name: "401 says which key to check", opts: []fakellm.Option{fakellm.FailFirst(100, fakellm.Status(401))},
			wantCalls: 1,
			check: func(t *testing.T, _ Response, err error) {
				require.ErrorContains(t, err, "openai gpt-4o-mini: 401 Unauthorized")
				require.ErrorContains(t, err, "check OPENAI_API_KEY")
			},
		},
		{
			name:      "Retry-After beyond the cap fails instead of stalling",
			opts:      []fakellm.Option{fakellm.FailFirst(100, fakellm.RateLimited("3600"))},
			spec:      func(_ *Spec, o *StackOptions) { o.Retry.MaxRetryAfter = time.Second },
			wantCalls: 1,
			check:     func(t *testing.T, _ Response, err error) { require.ErrorContains(t, err, "asked to wait 1h0m0s") },
		},
		{
			name: "hang until timeout, retried, then fails", opts: []fakellm.Option{fakellm.FailFirst(100, fakellm.Hang())},
			spec:      func(s *Spec, _ *StackOptions) { s.TimeoutSeconds, s.MaxRetries = 0.05, 1 },
			wantCalls: 2,
			check: func(t *testing.T, _ Response, err error) {
				require.ErrorIs(t, err, ErrTimeout)
				require.ErrorIs(t, err, context.DeadlineExceeded)
				require.ErrorContains(t, err, "raise timeout_seconds")
			},
		},
		{
			name: "hang once, then success", opts: []fakellm.Option{fakellm.FailFirst(1, fakellm.Hang())},
			spec:      func(s *Spec, _ *StackOptions) { s.TimeoutSeconds = 0.05 },
			wantCalls: 2,
			check:     func(t *testing.T, _ Response, err error) { require.NoError(t, err) },
		},
		{
			name: "connection refused is retried",
			spec: func(s *Spec, _ *StackOptions) { s.BaseURL = "http://127.0.0.1:1/v1" },
			check: func(t *testing.T, _ Response, err error) {
				require.ErrorContains(t, err, "gave up after 3 attempts")
				require.ErrorContains(t, err, "connection refused")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := fakellm.New(tt.opts...)
			defer fake.Close()
			c := stackFor(t, fake, tt.spec)
			resp, err := c.Complete(context.Background(), Request{Messages: []Message{{Role: "user", Content: "hi"}}})
			tt.check(t, resp, err)
			require.Equal(t, tt.wantCalls, fake.Count())
		})
	}
}

func TestCancellationPassesThrough(t *testing.T) {
	fake := fakellm.New(fakellm.FailFirst(100, fakellm.Hang()))
	defer fake.Close()
	c := stackFor(t, fake, func(s *Spec, _ *StackOptions) { s.MaxRetries = 5 })
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for fake.Count() == 0 {
			time.Sleep(time.Millisecond)
		}
		cancel()
	}()
	_, err := c.Complete(ctx, userReq("hi"))
	require.ErrorIs(t, err, context.Canceled)
	require.NotErrorIs(t, err, ErrTimeout)
	require.Equal(t, 1, fake.Count(), "a cancelled call is never retried")
}

func TestRetryWaitHonorsCancel(t *testing.T) {
	fake := fakellm.New(fakellm.FailFirst(100, fakellm.RateLimited("60")))
	defer fake.Close()
	c := stackFor(t, fake, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := c.Complete(ctx, userReq("hi"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "while waiting to retry")
	require.Equal(t, 1, fake.Count())
}

func TestBackoffFullJitter(t *testing.T) {
	p := RetryPolicy{BaseDelay: 10 * time.Millisecond, MaxDelay: 80 * time.Millisecond}.withDefaults()
	for attempt := range 40 {
		ceil := min(p.MaxDelay, p.BaseDelay<<min(attempt, 20))
		for range 20 {
			d := p.backoff(attempt)
			require.GreaterOrEqual(t, d, time.Duration(0))
			require.LessOrEqual(t, d, ceil)
		}
	}
}

func TestRetryable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{&APIError{Status: 429}, true},
		{&APIError{Status: 503}, true},
		{&APIError{Status: 404}, false},
		{&APIError{Status: 400}, false},
		{ErrTimeout, true},
		{context.Canceled, false},
		{ErrCacheMiss, false},
		{ErrMalformedResponse, true},
		{ErrEmptyCompletion, true},
		{fmt.Errorf("x: %w", io.ErrUnexpectedEOF), true},
		{errors.New("something else"), false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, retryable(tt.err), "%v", tt.err)
	}
}

func TestRateLimiter(t *testing.T) {
	calls := 0
	base := ClientFunc(func(ctx context.Context, req Request) (Response, error) {
		calls++
		return Response{Content: "ok"}, nil
	})
	t.Run("requests and tokens complete", func(t *testing.T) {
		c := WithRateLimit(base, 60*200, 60*100_000) // 200 rps, a tiny window
		for range 5 {
			req := userReq(strings.Repeat("a", 400))
			req.Params.MaxTokens = ptr(50)
			_, err := c.Complete(context.Background(), req)
			require.NoError(t, err)
		}
	})
	t.Run("a call larger than the token budget still runs", func(t *testing.T) {
		c := WithRateLimit(base, 0, 60*1000)
		_, err := c.Complete(context.Background(), userReq(strings.Repeat("a", 1_000_000)))
		require.NoError(t, err)
	})
	t.Run("waiting past the deadline fails with what to raise", func(t *testing.T) {
		c := WithRateLimit(base, 1, 0)
		_, err := c.Complete(context.Background(), userReq("first"))
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		_, err = c.Complete(ctx, userReq("second"))
		require.ErrorContains(t, err, "raise requests_per_minute")
	})
	t.Run("cancel while waiting", func(t *testing.T) {
		c := WithRateLimit(base, 0, 60)
		_, err := c.Complete(context.Background(), userReq(strings.Repeat("a", 240)))
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err = c.Complete(ctx, userReq("more"))
		require.ErrorIs(t, err, context.Canceled)
		require.ErrorContains(t, err, "tokens_per_minute")
	})
	t.Run("unlimited returns the client unchanged", func(t *testing.T) {
		c := WithRateLimit(base, 0, 0)
		_, err := c.Complete(context.Background(), userReq("x"))
		require.NoError(t, err)
	})
}

func TestEstimateTokens(t *testing.T) {
	req := userReq(strings.Repeat("a", 392)) // + "be brief" = 400 chars
	require.Equal(t, 100, EstimateTokens(req))
	req.Params.MaxTokens = ptr(20)
	require.Equal(t, 120, EstimateTokens(req))
	require.Equal(t, 1, EstimateTokens(Request{}))
}

func TestWireFloat(t *testing.T) {
	require.Equal(t, float32(0), wireFloat(nil))
	require.Equal(t, float32(math.SmallestNonzeroFloat32), wireFloat(ptr(0.0)))
	require.Equal(t, float32(0.7), wireFloat(ptr(0.7)))
}

func TestToolLoopMessagesReachTheServer(t *testing.T) {
	fake := fakellm.New()
	defer fake.Close()
	c, err := New(Spec{Provider: "openai_compatible", Name: "m", BaseURL: fake.URL()}, Options{})
	require.NoError(t, err)
	req := Request{Messages: []Message{
		{Role: "user", Content: "weather?"},
		{Role: "assistant", ToolCalls: []ToolCall{{ID: "call_9", Name: "get_weather", Arguments: `{"city":"Oslo"}`}}},
		{Role: "tool", ToolCallID: "call_9", Content: "rain"},
	}}
	_, err = c.Complete(context.Background(), req)
	require.NoError(t, err)
	got := fake.Requests()[0].Chat.Messages
	require.Len(t, got, 3)
	require.Equal(t, "get_weather", got[1].ToolCalls[0].Function.Name)
	require.Equal(t, "call_9", got[2].ToolCallID)
}

func TestInvalidSchemaIsAnError(t *testing.T) {
	fake := fakellm.New()
	defer fake.Close()
	req := userReq("x")
	req.JSONSchema = json.RawMessage(`{oops`)
	c, err := New(Spec{Provider: "openai_compatible", Name: "m", BaseURL: fake.URL()}, Options{})
	require.NoError(t, err)
	_, err = c.Complete(context.Background(), req)
	require.ErrorContains(t, err, "json_schema is not valid JSON")
	_, err = sagemakerClientFor(t, fake).Complete(context.Background(), req)
	require.ErrorContains(t, err, "json_schema is not valid JSON")
	require.Zero(t, fake.Count(), "a bad schema never leaves the process")
}

func TestSageMakerPayload(t *testing.T) {
	s := &sagemakerClient{model: "m", endpoint: "ep"}
	req := userReq("x")
	req.Model = "m"
	req.JSONSchema = json.RawMessage(`{"type":"object"}`)
	req.Tools = []ToolDef{{Name: "f", Parameters: json.RawMessage(`{"type":"object"}`)}}
	b, err := s.payload(req)
	require.NoError(t, err)
	require.JSONEq(t, `{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"x"}],
		"response_format":{"type":"json_schema","json_schema":{"name":"output","schema":{"type":"object"},"strict":true}},
		"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}]}`, string(b))
}

func TestNormalizeFinish(t *testing.T) {
	for in, want := range map[string]string{"": "stop", "eos_token": "stop", "max_tokens": "length", "length": "length",
		"function_call": "tool_calls", "content_filter": "content_filter"} {
		require.Equal(t, want, normalizeFinish(in), in)
	}
}

func TestAPIErrorMessage(t *testing.T) {
	e := &APIError{Provider: "openai", Model: "gpt-4o-mini", Status: 401, Body: "Incorrect API key", Hint: "check OPENAI_API_KEY"}
	require.Equal(t, "openai gpt-4o-mini: 401 Unauthorized: Incorrect API key: check OPENAI_API_KEY", e.Error())
	require.Equal(t, "not json at all", errorMessage([]byte("  not json at all ")))
	require.Equal(t, "m", errorMessage([]byte(`{"message":"m"}`)))
	require.Len(t, errorMessage([]byte(strings.Repeat("x", 1000))), 300+len("…"))
}
