package main

import (
	"bytes"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// terminalBuffer stands in for a terminal on stderr.
type terminalBuffer struct{ bytes.Buffer }

func (*terminalBuffer) IsTerminal() bool { return true }

// TestProgressBarOnTerminal: on a terminal every long command gets the same
// bar, with its count, unit and an ETA; piped, a command that asked for no
// lines (seal, import) prints nothing.
func TestProgressBarOnTerminal(t *testing.T) {
	var tty terminalBuffer
	p := newProgress(&tty, "seal capitals", "cases", false)
	p.set(1, 100, "", "")
	time.Sleep(150 * time.Millisecond) // past the bar's redraw throttle
	p.set(40, 100, "", "")
	p.finish()
	out := tty.String()
	require.Contains(t, out, "seal capitals")
	require.Regexp(t, `\d+/100`, out)
	require.Contains(t, out, "cases/s")
	require.Regexp(t, regexp.MustCompile(`\[\d+s:\d+s\]`), out, "elapsed:ETA")

	var piped bytes.Buffer
	p = newProgress(&piped, "seal capitals", "cases", false)
	for i := 1; i <= 100; i++ {
		p.set(i, 100, "", "")
	}
	p.finish()
	require.Empty(t, piped.String())
}
