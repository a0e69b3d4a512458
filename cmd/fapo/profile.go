package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	rpprof "runtime/pprof"
	"time"

	"github.com/fapo-dev/fapo/engine/httpauth"
)

// startCPUProfile writes a CPU profile of this process to path until the
// returned stop is called (go tool pprof reads it). A profile holds stack
// traces and sample counts, never the data the run handled. The file is
// created 0600; a link or anything but a regular file at path is refused
// rather than followed.
func startCPUProfile(path string) (stop func() error, err error) {
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return nil, usagef("--cpuprofile %s: it exists and is not a regular file (a link, a directory): name a new file", path)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("--cpuprofile %s: %w", path, err)
	}
	root, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile %s: %w: name a file in an existing directory", path, err)
	}
	defer root.Close()
	f, err := root.OpenFile(filepath.Base(path), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile %s: %w", path, err)
	}
	if err := rpprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("--cpuprofile %s: %w", path, err)
	}
	return func() error {
		rpprof.StopCPUProfile()
		return f.Close()
	}, nil
}

// loopbackAddr refuses a pprof address that is not on loopback: the
// endpoints describe the process (stacks, heap, command line) and have no
// authentication, so they never listen where another machine could reach.
func loopbackAddr(addr string) error {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return usagef("--pprof %q: %v: use HOST:PORT on loopback, e.g. 127.0.0.1:6060", addr, err)
	}
	if httpauth.LoopbackAddr(addr) {
		return nil
	}
	return usagef("--pprof %q: only a loopback address is accepted (127.0.0.1:PORT or [::1]:PORT): the profiling endpoints have no authentication", addr)
}

// PprofURLFile is where `fapo serve --pprof` writes the profiling
// endpoints' URL, in the sealed store.
const PprofURLFile = "pprof-url"

// servePprof serves net/http/pprof on addr (loopback only) until ctx ends,
// on a mux of its own so that nothing else is exposed with it, under a
// random path: anything on this machine can reach loopback, the agent's
// shell included, and a profile taken during a held-out run would time
// it. The URL goes to PprofURLFile in the sealed store (0600), where the
// operator reads it and, in strict mode, the agent cannot; the log says
// where, not what.
func servePprof(ctx context.Context, addr, home string, log io.Writer) error {
	if err := loopbackAddr(addr); err != nil {
		return err
	}
	secret := make([]byte, 16)
	_, _ = rand.Read(secret) // crypto/rand.Read never fails on supported platforms
	prefix := "/" + hex.EncodeToString(secret)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--pprof %s: %w: choose a free port", addr, err)
	}
	url := "http://" + ln.Addr().String() + prefix + "/debug/pprof/"
	if err := writePrivate(filepath.Join(home, PprofURLFile), url+"\n"); err != nil {
		_ = ln.Close()
		return fmt.Errorf("--pprof: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: http.StripPrefix(prefix, mux), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	fmt.Fprintf(log, "fapo: profiling endpoints on %s, at the URL in %s (e.g. go tool pprof \"$(cat %s)profile?seconds=30\")\n",
		ln.Addr(), filepath.Join(home, PprofURLFile), filepath.Join(home, PprofURLFile))
	go func() { _ = srv.Serve(ln) }()
	return nil
}

// writePrivate writes text to path 0600, replacing a regular file there
// and refusing anything else (a link is not followed).
func writePrivate(path, text string) error {
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("%s exists and is not a regular file: remove it", path)
	}
	root, err := os.OpenRoot(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer root.Close()
	f, err := root.OpenFile(filepath.Base(path), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(text); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}
