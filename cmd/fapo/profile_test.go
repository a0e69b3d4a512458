package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEvalCPUProfile: --cpuprofile writes a pprof profile of the run
// (gzip-compressed protobuf), private to the operator, and refuses to
// follow a link planted at the path.
func TestEvalCPUProfile(t *testing.T) {
	f := newOpFixture(t, nil)
	prof := filepath.Join(t.TempDir(), "eval.prof")
	code, _, errOut := f.run(t, "eval", "--tenant", "capitals", "--split", "train", "--cpuprofile", prof)
	require.Equal(t, 0, code, errOut)
	b, err := os.ReadFile(prof)
	require.NoError(t, err)
	require.Greater(t, len(b), 2)
	require.Equal(t, []byte{0x1f, 0x8b}, b[:2], "a pprof profile is gzip-compressed")
	fi, err := os.Stat(prof)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	target := filepath.Join(t.TempDir(), "precious")
	require.NoError(t, os.WriteFile(target, []byte("keep me"), 0o600))
	link := filepath.Join(t.TempDir(), "link.prof")
	require.NoError(t, os.Symlink(target, link))
	code, _, errOut = f.run(t, "eval", "--tenant", "capitals", "--split", "train", "--cpuprofile", link)
	require.Equal(t, 2, code, errOut)
	require.Contains(t, errOut, "not a regular file")
	kept, err := os.ReadFile(target)
	require.NoError(t, err)
	require.Equal(t, "keep me", string(kept), "the link's target is untouched")
}

// TestServePprofLoopbackOnly: the profiling endpoints listen on loopback
// or not at all.
func TestServePprofLoopbackOnly(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:6060": true, "[::1]:6060": true, "localhost:6060": true, "127.0.0.2:1": true,
		"0.0.0.0:6060": false, ":6060": false, "[::]:6060": false, "192.168.1.10:6060": false,
		"example.invalid:6060": false, "127.0.0.1": false,
	} {
		err := loopbackAddr(addr)
		if ok {
			require.NoError(t, err, addr)
		} else {
			require.Error(t, err, addr)
		}
	}
	code, _, errOut := cliRun(t, nil, "serve", "--workspace", t.TempDir(), "--pprof", "0.0.0.0:6060")
	require.Equal(t, 2, code, errOut)
	require.Contains(t, errOut, "only a loopback address")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	home := t.TempDir()
	var log strings.Builder
	require.NoError(t, servePprof(ctx, "127.0.0.1:0", home, &log))
	b, err := os.ReadFile(filepath.Join(home, PprofURLFile))
	require.NoError(t, err)
	fi, err := os.Stat(filepath.Join(home, PprofURLFile))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	url := strings.TrimSpace(string(b))
	require.Regexp(t, `^http://127\.0\.0\.1:\d+/[0-9a-f]{32}/debug/pprof/$`, url)
	require.Contains(t, log.String(), filepath.Join(home, PprofURLFile))
	require.NotContains(t, log.String(), url, "the log says where the URL is, not what it is")

	get := func(u string) int {
		resp, err := http.Get(u)
		require.NoError(t, err)
		defer resp.Body.Close()
		return resp.StatusCode
	}
	require.Equal(t, http.StatusOK, get(url+"cmdline"))
	base := url[:strings.Index(url[len("http://"):], "/")+len("http://")]
	require.Equal(t, http.StatusNotFound, get(base+"/debug/pprof/cmdline"), "without the secret path: nothing")
}
