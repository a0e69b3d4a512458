package httpauth

import (
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTokenEqual(t *testing.T) {
	tests := []struct {
		got, want string
		ok        bool
	}{
		{"s3cret-token-value", "s3cret-token-value", true},
		{"s3cret-token-valuX", "s3cret-token-value", false},
		{"s3cret", "s3cret-token-value", false},
		{"s3cret-token-value-and-more", "s3cret-token-value", false},
		{"", "", false}, // no token configured admits nobody
		{"x", "", false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.ok, TokenEqual(tt.got, tt.want), "%q vs %q", tt.got, tt.want)
	}
}

func TestHasBearer(t *testing.T) {
	tests := []struct {
		header string
		ok     bool
	}{
		{"Bearer tok-1234567890abcdef", true},
		{"Bearer tok-1234567890abcdeX", false},
		{"bearer tok-1234567890abcdef", false},
		{"tok-1234567890abcdef", false},
		{"", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		if tt.header != "" {
			r.Header.Set("Authorization", tt.header)
		}
		require.Equal(t, tt.ok, HasBearer(r, "tok-1234567890abcdef"), tt.header)
	}
}

func TestLoopback(t *testing.T) {
	hosts := map[string]bool{
		"localhost": true, "LOCALHOST:8080": true, "127.0.0.1": true, "127.0.0.1:80": true, "127.8.9.1": true,
		"[::1]:8765": true, "::1": true,
		"example.test": false, "10.0.0.1:80": false, "0.0.0.0:80": false, "": false, "localhost.evil.test": false,
	}
	for h, want := range hosts {
		require.Equal(t, want, LoopbackHost(h), h)
	}
	addrs := map[string]bool{
		"127.0.0.1:8765": true, "localhost:0": true, "[::1]:1": true,
		":8765": false, "0.0.0.0:8765": false, "192.168.1.2:80": false, "127.0.0.1": false,
	}
	for a, want := range addrs {
		require.Equal(t, want, LoopbackAddr(a), a)
	}
}
