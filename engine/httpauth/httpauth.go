// Package httpauth holds the access checks every HTTP listener of fapo makes
// (the MCP streamable HTTP server, the Explorer, the pipeline gateway, the
// profiling endpoint): a token compared in constant time, and what counts as
// this machine. One copy, so hardening one hardens all; it lives in engine/
// (knowing nothing of MCP) because server/, cmd/ and engine/pipeline all use
// it, and engine/ may not import server/.
package httpauth

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// TokenEqual compares a presented token with the expected one in time that
// depends on neither: both are hashed first, so not even the length leaks.
// An empty expected token matches nothing.
func TokenEqual(got, want string) bool {
	if want == "" {
		return false
	}
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(want))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// Bearer is the token of an "Authorization: Bearer <token>" header.
func Bearer(r *http.Request) (string, bool) {
	return strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
}

// HasBearer reports whether r carries want as its bearer token.
func HasBearer(r *http.Request, want string) bool {
	got, ok := Bearer(r)
	return ok && TokenEqual(got, want)
}

// LoopbackHost reports whether host, with or without a port (a Host header,
// say), names this machine: localhost or a loopback IP.
func LoopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// LoopbackAddr reports whether addr (host:port) binds only the loopback
// interface; a bare ":port" binds every interface and is not loopback.
func LoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	return err == nil && host != "" && LoopbackHost(host)
}
