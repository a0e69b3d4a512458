package provider

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// billedError is a failure the server still charged for: an answer that
// said nothing still cost its prompt.
type billedError struct {
	err   error
	usage Usage
}

func (e *billedError) Error() string { return e.err.Error() }
func (e *billedError) Unwrap() error { return e.err }

// BilledUsage is what the failed attempts behind err were charged (zero
// when none was): a call that never answered can still have cost money.
func BilledUsage(err error) Usage {
	var b *billedError
	if errors.As(err, &b) {
		return b.usage
	}
	return Usage{}
}

// withBilled attaches the billed usage u to err, when there is any.
func withBilled(err error, u Usage) error {
	if err == nil || u == (Usage{}) {
		return err
	}
	return &billedError{err: err, usage: u}
}

// APIError is a non-2xx answer from a model server. Provider and Model name
// the call; Hint says what to do about it.
type APIError struct {
	Provider   string
	Model      string
	Status     int
	RetryAfter time.Duration // 0 when the server sent none
	Body       string        // the server's error message, or the raw body
	Hint       string
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: %d %s", e.Provider, e.Model, e.Status, http.StatusText(e.Status))
	if e.Body != "" {
		b.WriteString(": ")
		b.WriteString(e.Body)
	}
	if e.Hint != "" {
		b.WriteString(": ")
		b.WriteString(e.Hint)
	}
	return b.String()
}

// Retryable reports whether the status is worth another attempt: rate
// limits and server errors are, every other 4xx means the request itself is
// wrong and would fail again.
func (e *APIError) Retryable() bool {
	return e.Status == http.StatusTooManyRequests || e.Status >= 500
}

var (
	// ErrTimeout marks a call that exceeded its per-call timeout. Such errors
	// also match context.DeadlineExceeded.
	ErrTimeout = errors.New("provider call timed out")
	// ErrMalformedResponse marks a 2xx answer that could not be decoded: a
	// body cut mid-stream, not JSON, or JSON without choices. A proxy or a
	// loaded server produces these now and then, so they are retried.
	ErrMalformedResponse = errors.New("malformed response from model server")
	// ErrEmptyCompletion marks a 2xx answer with neither text nor tool calls
	// and finish reason "stop": the model claims to be done and said
	// nothing, which loaded servers do transiently. It is retried, and never
	// passed on as an answer.
	ErrEmptyCompletion = errors.New("empty completion from model server")
	// ErrCacheMiss marks an offline run asking for a response not in the cache.
	ErrCacheMiss = errors.New("response cache miss")
)

// hintFor says what a user can do about a status.
func hintFor(status int, keyEnv string) string {
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		if keyEnv == "" {
			return "check the credentials of this server"
		}
		return "check " + keyEnv
	case status == http.StatusNotFound:
		return "check the model name and base_url"
	case status == http.StatusTooManyRequests:
		return "rate limited; lower requests_per_minute or concurrency in the model block"
	case status >= 500:
		return "server error; retried up to max_retries"
	}
	return ""
}

// parseRetryAfter reads Retry-After as delta-seconds or an HTTP date, and the
// retry-after-ms header some OpenAI-compatible servers send.
func parseRetryAfter(h http.Header, now time.Time) time.Duration {
	if ms := h.Get("Retry-After-Ms"); ms != "" {
		if v, err := strconv.ParseFloat(ms, 64); err == nil && v > 0 {
			return time.Duration(v * float64(time.Millisecond))
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// retryable decides whether err is worth another attempt: 429, 5xx,
// per-call timeouts, transport failures (connection refused or reset, a
// body cut short), malformed 2xx bodies and empty completions. Everything
// else, including other 4xx and cache misses, would fail the same way
// again.
func retryable(err error) bool {
	var api *APIError
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, ErrCacheMiss):
		return false
	case errors.Is(err, ErrMalformedResponse), errors.Is(err, ErrEmptyCompletion):
		return true
	case errors.As(err, &api):
		return api.Retryable()
	case errors.Is(err, ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return true
	}
	var ue *url.Error
	var ne net.Error
	return errors.As(err, &ue) || errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// retryAfter is the server's requested wait carried by err, or 0.
func retryAfter(err error) time.Duration {
	var api *APIError
	if errors.As(err, &api) {
		return api.RetryAfter
	}
	return 0
}
