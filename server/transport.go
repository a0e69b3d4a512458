package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/fapo-dev/fapo/engine/httpauth"
)

// ServeStdio serves s on the process's stdin and stdout until stdin closes or
// ctx ends. Logs go to stderr: stdout belongs to the protocol.
func ServeStdio(ctx context.Context, s *mcpserver.MCPServer, stdin io.Reader, stdout io.Writer) error {
	stdio := mcpserver.NewStdioServer(s)
	stdio.SetErrorLogger(slog.NewLogLogger(slog.Default().Handler(), slog.LevelError))
	err := stdio.Listen(ctx, stdin, stdout)
	if errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

// HTTPOptions configure the streamable HTTP transport.
type HTTPOptions struct {
	// Addr is host:port; a bare ":port" binds loopback, never all interfaces.
	Addr string
	// Token is the bearer token every request must carry. When empty on a
	// loopback address a random one is generated and reported through
	// OnToken; a non-loopback address refuses to start without one.
	Token string
	// OnToken receives the token in use (for printing to stderr).
	OnToken func(token string)
	// OnListen receives the bound address (useful with port 0).
	OnListen func(addr net.Addr)
}

// ServeHTTP serves s as streamable HTTP at /mcp behind bearer-token auth
// until ctx ends.
func ServeHTTP(ctx context.Context, s *mcpserver.MCPServer, opts HTTPOptions) error {
	addr, err := normalizeAddr(opts.Addr)
	if err != nil {
		return err
	}
	token := opts.Token
	if token == "" {
		if !httpauth.LoopbackAddr(addr) {
			return fmt.Errorf("refusing to serve on non-loopback address %s without a token: pass --token-file with a secret the clients share", addr)
		}
		token, err = NewToken()
		if err != nil {
			return err
		}
	}
	if opts.OnToken != nil {
		opts.OnToken(token)
	}

	mcpHandler := mcpserver.NewStreamableHTTPServer(s, mcpserver.WithEndpointPath("/mcp"))
	mux := http.NewServeMux()
	mux.Handle("/mcp", RequireBearer(token, mcpHandler))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok\n") })

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	if opts.OnListen != nil {
		opts.OnListen(ln.Addr())
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	slog.Info("fapo MCP server listening", "url", "http://"+ln.Addr().String()+"/mcp")
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	}
}

// RequireBearer wraps h so that only requests with "Authorization: Bearer
// <token>" reach it; the comparison is constant-time.
func RequireBearer(token string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !httpauth.HasBearer(r, token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="fapo"`)
			http.Error(w, "missing or wrong bearer token: send the header Authorization: Bearer <token> printed by fapo serve (or in --token-file)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// NewToken returns a random 256-bit token in hex.
func NewToken() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// ReadTokenFile reads a token from a file, refusing files others can read.
func ReadTokenFile(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("token file %s is readable by other users (mode %v): chmod 600 it", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 {
		return "", fmt.Errorf("token file %s holds %d characters; use at least 16 random characters", path, len(tok))
	}
	return tok, nil
}

// normalizeAddr turns ":8080" into "127.0.0.1:8080": binding every interface
// must be asked for explicitly ("0.0.0.0:8080").
func normalizeAddr(addr string) (string, error) {
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--http %q: want host:port such as 127.0.0.1:8765: %w", addr, err)
	}
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port), nil
}
