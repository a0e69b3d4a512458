// Package pipeline runs a tenant's own pipeline — a program in any language,
// or an HTTP endpoint — in place of a chain fapo executes. It speaks the
// versioned JSON protocol of protocol.schema.json: per case, the case's
// inputs under an opaque token, the variant's prompt texts and parameters;
// back, the output and the steps the program ran. A program is started once
// and kept alive (JSON lines over stdin/stdout, one process per concurrent
// case); a crash, hang or malformed answer errors that case and restarts
// the process with backoff. For the run it serves an OpenAI-compatible
// endpoint on loopback, so that the program's model calls get fapo's cache,
// retries, limits and cost ledger and land in the trace.
package pipeline

import (
	"fmt"
	"net/url"
	"time"
)

// Protocol is the version of the protocol this package speaks.
const Protocol = 1

// Spec is tenant.toml [pipeline]. Exactly one of Command and URL is set.
type Spec struct {
	// Command is the program and its arguments, run in the directory of the
	// tenant's verified frozen files; files it names, and everything under
	// pipeline/, are pinned like the scorer's.
	Command []string `toml:"command"`
	// URL is an HTTP endpoint that answers one request per POST.
	URL string `toml:"url"`
	// TimeoutSeconds bounds one case (default 120).
	TimeoutSeconds float64 `toml:"timeout_seconds"`
	// Concurrency is how many cases run at once: processes of Command, or
	// requests in flight to URL (default 4).
	Concurrency int `toml:"concurrency"`
	// Switches are the structural switches the program reads from
	// chain.toml [switches]: the only structural change a variant may make.
	Switches []string `toml:"switches"`
	// StepOverrides is set when the program honours "override" (oracle
	// replay: use this value for the step instead of running it).
	StepOverrides bool `toml:"step_overrides"`
}

// DefaultTimeout and DefaultConcurrency apply when Spec leaves them unset.
const (
	DefaultTimeout     = 120 * time.Second
	DefaultConcurrency = 4
)

func (s Spec) timeout() time.Duration {
	if s.TimeoutSeconds > 0 {
		return time.Duration(s.TimeoutSeconds * float64(time.Second))
	}
	return DefaultTimeout
}

func (s Spec) concurrency() int {
	if s.Concurrency > 0 {
		return s.Concurrency
	}
	return DefaultConcurrency
}

// Validate lists what is wrong with the block, each problem a sentence.
func (s Spec) Validate() []string {
	var out []string
	switch {
	case len(s.Command) == 0 && s.URL == "":
		out = append(out, `set command (the program, e.g. ["python3", "pipeline/main.py"]) or url (an HTTP endpoint)`)
	case len(s.Command) > 0 && s.URL != "":
		out = append(out, "set only one of command and url")
	case s.URL != "":
		u, err := url.Parse(s.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			out = append(out, fmt.Sprintf("url %q is not an http(s) URL", s.URL))
		}
	case s.Command[0] == "":
		out = append(out, "command[0] is empty: name the program to run")
	}
	if s.TimeoutSeconds < 0 {
		out = append(out, "timeout_seconds must be positive")
	}
	if s.Concurrency < 0 {
		out = append(out, "concurrency must be positive")
	}
	seen := map[string]bool{}
	for _, sw := range s.Switches {
		if sw == "" || seen[sw] {
			out = append(out, fmt.Sprintf("switches: %q is empty or repeated", sw))
		}
		seen[sw] = true
	}
	return out
}
