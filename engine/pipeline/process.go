package pipeline

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/fapo-dev/fapo/engine/provider"
)

// maxLine bounds one answer, so a runaway program cannot make fapo hold
// unbounded output.
const maxLine = 64 << 20

// stderrTail is how much of a failing program's stderr its error carries.
const stderrTail = 2 << 10

// Restart backoff: a program that keeps failing is started again no faster
// than this, doubling up to the cap, and back to none after a success.
const (
	backoffStart = 100 * time.Millisecond
	backoffMax   = 5 * time.Second
)

// fault is a case the program failed: cause is the fixed-vocabulary class
// ("timeout", "exited", …), msg the detail for train runs.
type fault struct {
	cause string
	msg   string
}

func (f *fault) Error() string { return f.msg }

// transport sends one encoded request and returns its answer, which check
// accepted: an answer check refuses is a fault of the program like a crash
// (a process that answered out of protocol is restarted).
type transport interface {
	do(ctx context.Context, line []byte, check func([]byte) error) *fault
	close() error
}

// processPool keeps up to n processes of the program alive, each serving
// one case at a time, so a hang or a crash costs one case and one restart.
type processPool struct {
	argv    []string
	dir     string
	env     []string
	timeout time.Duration
	idle    chan *worker
}

type worker struct {
	p *proc // nil until started, and after a fault
	// failures counts consecutive faults, for the restart backoff.
	failures int
}

type proc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan []byte
	stderr *tailBuffer
	exited chan struct{}
	err    error // Wait's result, after exited closes
	// heldOut is set once the process has served a request that is not a
	// train run's: it never serves a train case after that, so neither its
	// stderr nor anything it keeps in memory carries held-out content into
	// what the agent reads.
	heldOut bool
}

func newProcessPool(argv []string, dir string, env []string, n int, timeout time.Duration) *processPool {
	p := &processPool{argv: argv, dir: dir, env: env, timeout: timeout, idle: make(chan *worker, n)}
	for range n {
		p.idle <- &worker{}
	}
	return p
}

func (pp *processPool) do(ctx context.Context, line []byte, check func([]byte) error) *fault {
	var w *worker
	select {
	case w = <-pp.idle:
	case <-ctx.Done():
		return &fault{cause: "cancelled", msg: ctx.Err().Error()}
	}
	defer func() { pp.idle <- w }()
	heldOut := provider.ScopeOf(ctx) != provider.ScopeTrain // unknown: the safe side
	if w.p != nil && w.p.heldOut && !heldOut {
		w.p.kill()
		w.p = nil
	}
	if w.p == nil {
		if w.failures > 0 {
			d := min(backoffStart<<(w.failures-1), backoffMax)
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return &fault{cause: "cancelled", msg: ctx.Err().Error()}
			}
		}
		p, err := pp.start()
		if err != nil {
			w.failures++
			return &fault{cause: "not started", msg: fmt.Sprintf("the program %s could not start: %v; check [pipeline] command", strings.Join(pp.argv, " "), err)}
		}
		w.p = p
	}
	w.p.heldOut = w.p.heldOut || heldOut
	out, f := w.p.exchange(ctx, line, pp.timeout)
	if f == nil {
		if err := check(out); err != nil {
			f = &fault{cause: "malformed answer", msg: "the program's answer was not used and the program was restarted: " + err.Error()}
		}
	}
	if f != nil {
		w.p.kill()
		w.p = nil
		w.failures++
		return f
	}
	w.failures = 0
	return nil
}

func (pp *processPool) start() (*proc, error) {
	cmd := exec.Command(pp.argv[0], pp.argv[1:]...)
	cmd.Dir = pp.dir
	cmd.Env = pp.env
	setProcessGroup(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	p := &proc{cmd: cmd, stdin: stdin, lines: make(chan []byte, 1), stderr: &tailBuffer{limit: stderrTail}, exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		defer close(p.lines)
		r := bufio.NewReaderSize(stdout, 64<<10)
		for {
			line, err := readLine(r)
			if len(line) > 0 {
				p.lines <- line
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

var errLineTooLong = errors.New("line too long")

// readLine reads one line without its newline, at most maxLine bytes.
func readLine(r *bufio.Reader) ([]byte, error) {
	var buf []byte
	for {
		chunk, err := r.ReadSlice('\n')
		buf = append(buf, chunk...)
		if len(buf) > maxLine {
			return []byte("<an answer longer than 64 MiB>"), errLineTooLong
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			return buf, err
		}
		return buf[:len(buf)-1], nil
	}
}

// exchange writes one request and waits for its answer line.
func (p *proc) exchange(ctx context.Context, line []byte, timeout time.Duration) ([]byte, *fault) {
	// A fault names what the program wrote to stderr from this request on
	// (what an earlier case's output still in flight adds is the same
	// split's: a process never serves another split after held-out cases).
	p.stderr.reset()
	// The request is written beside the wait: a program that stopped
	// reading its stdin would otherwise block the write for good, past the
	// timeout and the run's cancellation, once a request outgrows the pipe.
	// A fault kills the process, which ends a write still blocked.
	wrote := make(chan error, 1)
	go func() {
		_, err := p.stdin.Write(append(line, '\n'))
		wrote <- err
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	var answer []byte
	for {
		select {
		case err := <-wrote:
			if err != nil {
				return nil, p.exitFault("exited before reading its request")
			}
			wrote = nil
			if answer != nil {
				return answer, nil
			}
		case out, ok := <-p.lines:
			if !ok {
				return nil, p.exitFault("exited before answering")
			}
			// Blank lines between answers are tolerated: print() of "" is
			// easy to leave in a program and says nothing.
			if len(strings.TrimSpace(string(out))) == 0 {
				continue
			}
			if wrote == nil {
				return out, nil
			}
			answer = out // the rest of the request is still being written
		case <-t.C:
			return nil, &fault{cause: "timeout", msg: fmt.Sprintf("the program did not answer within %v and was restarted; make it faster or raise [pipeline] timeout_seconds%s", timeout, p.stderr.suffix())}
		case <-ctx.Done():
			return nil, &fault{cause: "cancelled", msg: ctx.Err().Error()}
		}
	}
}

func (p *proc) exitFault(what string) *fault {
	select {
	case <-p.exited:
	case <-time.After(time.Second):
	}
	status := "it closed its stdout"
	select {
	case <-p.exited:
		if p.err != nil {
			status = p.err.Error()
		} else {
			status = "exit status 0"
		}
	default:
	}
	return &fault{cause: "exited", msg: fmt.Sprintf("the program %s (%s) and was restarted%s", what, status, p.stderr.suffix())}
}

func (p *proc) kill() {
	_ = p.stdin.Close()
	killGroup(p.cmd)
	select {
	case <-p.exited:
	case <-time.After(2 * time.Second):
	}
}

func (pp *processPool) close() error {
	for range cap(pp.idle) {
		w := <-pp.idle
		if w.p != nil {
			// Closing stdin is the protocol's "no more requests": a program
			// gets a moment to exit on its own before it is killed.
			_ = w.p.stdin.Close()
			select {
			case <-w.p.exited:
			case <-time.After(time.Second):
				w.p.kill()
			}
			w.p = nil
		}
		pp.idle <- w
	}
	return nil
}

// tailBuffer keeps the last limit bytes a program wrote to stderr.
type tailBuffer struct {
	mu    sync.Mutex
	buf   []byte
	limit int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.limit; over > 0 {
		b.buf = b.buf[over:]
	}
	return len(p), nil
}

func (b *tailBuffer) reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = b.buf[:0]
}

func (b *tailBuffer) suffix() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.TrimSpace(string(b.buf))
	if s == "" {
		return ""
	}
	return "; stderr: " + s
}

// processEnv is the program's environment: the server's, so a program that
// calls its model directly finds its key, plus the protocol version.
func processEnv(getenv func() []string) []string {
	env := os.Environ()
	if getenv != nil {
		env = getenv()
	}
	// No bytecode files: they would appear among the pinned files.
	return append(env, fmt.Sprintf("FAPO_PIPELINE_PROTOCOL=%d", Protocol), "PYTHONDONTWRITEBYTECODE=1")
}
