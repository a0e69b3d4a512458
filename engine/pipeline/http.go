package pipeline

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// httpEndpoint posts each request to a user's service; concurrency is
// bounded by sem. There is no process to restart: a failing endpoint errors
// its cases until it is back.
type httpEndpoint struct {
	url     string
	client  *http.Client
	timeout time.Duration
	sem     chan struct{}
}

func newHTTPEndpoint(url string, client *http.Client, n int, timeout time.Duration) *httpEndpoint {
	if client == nil {
		client = &http.Client{}
	}
	return &httpEndpoint{url: url, client: client, timeout: timeout, sem: make(chan struct{}, n)}
}

func (h *httpEndpoint) do(ctx context.Context, line []byte, check func([]byte) error) *fault {
	select {
	case h.sem <- struct{}{}:
	case <-ctx.Done():
		return &fault{cause: "cancelled", msg: ctx.Err().Error()}
	}
	defer func() { <-h.sem }()
	cctx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodPost, h.url, bytes.NewReader(line))
	if err != nil {
		return &fault{cause: "unreachable", msg: err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := h.client.Do(req)
	switch {
	case ctx.Err() != nil:
		return &fault{cause: "cancelled", msg: ctx.Err().Error()}
	case errors.Is(cctx.Err(), context.DeadlineExceeded):
		return &fault{cause: "timeout", msg: fmt.Sprintf("the endpoint did not answer within %v; make it faster or raise [pipeline] timeout_seconds", h.timeout)}
	case err != nil:
		return &fault{cause: "unreachable", msg: fmt.Sprintf("the endpoint at [pipeline] url is unreachable: %v", err)}
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxLine+1))
	switch {
	case err != nil:
		return &fault{cause: "unreachable", msg: fmt.Sprintf("the endpoint's answer broke off: %v", err)}
	case resp.StatusCode != http.StatusOK:
		return &fault{cause: "unreachable", msg: fmt.Sprintf("the endpoint answered HTTP %d: %s", resp.StatusCode, head(string(body), 200))}
	case len(body) > maxLine:
		return &fault{cause: "malformed answer", msg: "the endpoint answered more than 64 MiB"}
	}
	if err := check(body); err != nil {
		return &fault{cause: "malformed answer", msg: "the endpoint's answer was not used: " + err.Error()}
	}
	return nil
}

func (h *httpEndpoint) close() error { return nil }
