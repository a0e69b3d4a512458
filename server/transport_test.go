package server

import (
	"context"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/fapo-dev/fapo/engine/httpauth"
)

func TestRequireBearer(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	h := RequireBearer("s3cret-token-value", ok)
	for _, tc := range []struct {
		header string
		want   int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong", http.StatusUnauthorized},
		{"s3cret-token-value", http.StatusUnauthorized},
		{"Bearer s3cret-token-value", http.StatusTeapot},
	} {
		rec := &recorder{header: http.Header{}}
		req, _ := http.NewRequest(http.MethodPost, "/mcp", nil)
		if tc.header != "" {
			req.Header.Set("Authorization", tc.header)
		}
		h.ServeHTTP(rec, req)
		require.Equal(t, tc.want, rec.code, tc.header)
	}
}

type recorder struct {
	header http.Header
	code   int
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *recorder) WriteHeader(code int)        { r.code = code }

func TestServeHTTPRefusesNonLoopbackWithoutToken(t *testing.T) {
	s := mcpserver.NewMCPServer("fapo", "test")
	err := ServeHTTP(context.Background(), s, HTTPOptions{Addr: "0.0.0.0:0"})
	require.ErrorContains(t, err, "without a token")
}

func TestServeHTTPGeneratesTokenAndRequiresIt(t *testing.T) {
	s := mcpserver.NewMCPServer("fapo", "test")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tokens := make(chan string, 1)
	addrs := make(chan net.Addr, 1)
	done := make(chan error, 1)
	go func() {
		done <- ServeHTTP(ctx, s, HTTPOptions{Addr: ":0", OnToken: func(t string) { tokens <- t }, OnListen: func(a net.Addr) { addrs <- a }})
	}()
	token := <-tokens
	addr := <-addrs
	require.Len(t, token, 64)
	require.True(t, httpauth.LoopbackAddr(addr.String()), "a bare :port binds loopback, got %s", addr)

	resp, err := http.Post("http://"+addr.String()+"/mcp", "application/json", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("server did not stop on cancel")
	}
}

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(p, []byte("0123456789abcdef0123\n"), 0o600))
	tok, err := ReadTokenFile(p)
	require.NoError(t, err)
	require.Equal(t, "0123456789abcdef0123", tok)

	require.NoError(t, os.Chmod(p, 0o644))
	_, err = ReadTokenFile(p)
	require.ErrorContains(t, err, "chmod 600")

	short := filepath.Join(dir, "short")
	require.NoError(t, os.WriteFile(short, []byte("abc"), 0o600))
	_, err = ReadTokenFile(short)
	require.ErrorContains(t, err, "at least 16")
}
