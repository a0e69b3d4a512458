package main

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/fapo-dev/fapo/engine/run"
)

// progress shows long CLI work (eval, final, seal, import) the same way in
// every command, on stderr: on a terminal, one bar with the count, the rate
// and an ETA; otherwise, when lines is set, a plain line every 5% of the
// work or 10 seconds, whichever comes first, so that logs of a long run stay
// short but show it is alive. Updates may come from several goroutines.
type progress struct {
	w     io.Writer
	label string
	unit  string
	lines bool
	now   func() time.Time

	mu       sync.Mutex
	bar      *progressbar.ProgressBar // nil when not a terminal
	lastLine time.Time
	lastPct  int
}

func newProgress(w io.Writer, label, unit string, lines bool) *progress {
	p := &progress{w: w, label: label, unit: unit, lines: lines, now: time.Now, lastPct: -1}
	p.lastLine = p.now()
	if isTerminal(w) {
		p.bar = progressbar.NewOptions(-1, progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(label),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString(unit),
			progressbar.OptionSetPredictTime(true), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionFullWidth(), progressbar.OptionClearOnFinish())
	}
	return p
}

// isTerminal reports whether a stream of the process is a terminal. A
// stream that says so itself (IsTerminal) is believed, which lets tests stand
// in for a terminal.
func isTerminal(s any) bool {
	if t, ok := s.(interface{ IsTerminal() bool }); ok {
		return t.IsTerminal()
	}
	f, ok := s.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// set reports done units of total (0 or less: not known yet); detail is
// shown after the count, and suffix only on plain lines.
func (p *progress) set(done, total int, detail, suffix string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		if total > 0 && p.bar.GetMax() != total {
			p.bar.ChangeMax(total)
		}
		desc := p.label
		if detail != "" {
			desc += " · " + detail
		}
		p.bar.Describe(desc)
		_ = p.bar.Set(done)
		return
	}
	if !p.lines {
		return
	}
	pct := -1
	if total > 0 {
		pct = done * 100 / total / 5 * 5
	}
	now := p.now()
	if (pct >= 0 && pct > p.lastPct) || now.Sub(p.lastLine) >= 10*time.Second || (total > 0 && done == total) {
		p.lastPct, p.lastLine = pct, now
		line := p.label + ": " + p.count(done, total)
		if detail != "" {
			line += ", " + detail
		}
		if suffix != "" {
			line += " " + suffix
		}
		fmt.Fprintln(p.w, line)
	}
}

func (p *progress) count(done, total int) string {
	if total <= 0 {
		return fmt.Sprintf("%d %s", done, p.unit)
	}
	return fmt.Sprintf("%d/%d %s (%d%%)", done, total, p.unit, done*100/total)
}

// finish removes the bar; plain lines stay.
func (p *progress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Exit()
	}
}

// progressReporter shows a run's progress (eval, final) through progress.
// The runner calls update from its workers, concurrently.
type progressReporter struct {
	*progress
	runMu sync.Mutex
	last  run.Progress
	// heldOut hides the running mean and failures: the engine reports only
	// counts for validation and test runs.
	heldOut bool
}

func newProgressReporter(w io.Writer, label string) *progressReporter {
	return &progressReporter{progress: newProgress(w, label, "cases", true)}
}

func (p *progressReporter) update(pr run.Progress) {
	p.runMu.Lock()
	defer p.runMu.Unlock()
	if pr.Done < p.last.Done {
		return // reports from concurrent workers may arrive out of order
	}
	p.last = pr
	detail := fmt.Sprintf("%d failed, %d errored, mean %.2f", pr.Failed, pr.Errored, pr.ScoreMean)
	if p.heldOut {
		detail = ""
	}
	if b := pr.Batch; b != nil {
		// The run waits for the provider's batch before its cases complete.
		detail = fmt.Sprintf("waiting for batch %s (%s)", b.ID, b.Status)
		if b.Total > 0 { // a train run's: held-out runs report no request counts
			detail += fmt.Sprintf(": %d/%d requests answered", b.Completed, b.Total)
		}
	}
	p.set(pr.Done, pr.Total, detail, "(run "+pr.RunID+")")
}

// runID is the id of the run as reported so far ("" before the first case).
func (p *progressReporter) runID() string {
	p.runMu.Lock()
	defer p.runMu.Unlock()
	return p.last.RunID
}
