package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"syscall"

	"github.com/fapo-dev/fapo/engine/provider"
)

// A case is errored when its pipeline got no answer because of the
// infrastructure (a model server down, a network that drops, a scorer's
// model that times out) after the provider's own retries: its 0 says
// nothing about the variant, so it is kept out of every mean, and a
// held-out run with an errored case is not a result. A case the variant
// itself broke (a template that fails, a request the server rejects as
// malformed, output the parser cannot read) is scored, 0, and counts as
// failed.
//
// A cause names one kind of infrastructure failure in a fixed vocabulary
// ("provider: HTTP 500", "provider: no such host", "scorer: timeout"), so
// that reports about held-out runs can count causes without ever carrying
// text that varies with a case.

// Cause sources: who was being called when the infrastructure failed.
const (
	sourceProvider = "provider"
	sourceScorer   = "scorer"
	// SourcePipeline is a tenant's own program (tenant.toml [pipeline]).
	SourcePipeline = "pipeline"
)

// pipelineHint says what the operator does about a failing program.
func pipelineHint(class string) string {
	switch class {
	case "timeout":
		return "the program took longer than [pipeline] timeout_seconds: make it faster or raise the timeout"
	case "exited":
		return "the program exited: run it by hand on one request to see why (its stderr is in the train run's errors)"
	case "malformed answer":
		return "the program answered outside the protocol: fix it against engine/pipeline/protocol.schema.json"
	case "not started":
		return "the program could not start: check [pipeline] command"
	case "unreachable":
		return "check that the endpoint at [pipeline] url is running"
	}
	return "the program reported an infrastructure error: retry when what it depends on is back"
}

// causeOf classifies an error returned by a model call of the pipeline. Any
// failure to get an answer is infrastructure except a 4xx that says the
// request itself was wrong (the variant built it) and a cancelled run
// (which records nothing).
func causeOf(err error) (string, bool) {
	if err == nil || errors.Is(err, context.Canceled) {
		return "", false
	}
	if c, ok := knownCause(err); ok {
		return sourceProvider + ": " + c, true
	}
	var api *provider.APIError
	if errors.As(err, &api) {
		return "", false // a request the server refused as wrong: the variant's failure
	}
	return sourceProvider + ": error", true
}

// scorerCauseOf classifies a scoring error. Only failures that are
// recognizably the infrastructure (the judge model's server, the network,
// a timeout) count: a scorer that rejects an output is scoring it.
func scorerCauseOf(err error) (string, bool) {
	if err == nil || errors.Is(err, context.Canceled) {
		return "", false
	}
	if c, ok := knownCause(err); ok {
		return sourceScorer + ": " + c, true
	}
	return "", false
}

// knownCause names the infrastructure failures fapo recognizes.
func knownCause(err error) (string, bool) {
	var api *provider.APIError
	if errors.As(err, &api) {
		switch s := api.Status; {
		case s == http.StatusTooManyRequests, s >= 500,
			s == http.StatusUnauthorized, s == http.StatusForbidden, s == http.StatusNotFound, s == http.StatusRequestTimeout:
			return fmt.Sprintf("HTTP %d", s), true
		}
		return "", false
	}
	var dns *net.DNSError
	switch {
	case errors.Is(err, provider.ErrCacheMiss):
		return "cache miss", true
	case errors.Is(err, provider.ErrBatchFailed):
		return "batch failed", true
	case errors.Is(err, provider.ErrMalformedResponse):
		return "malformed response", true
	case errors.Is(err, provider.ErrEmptyCompletion):
		return "empty completion", true
	case errors.Is(err, provider.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return "timeout", true
	case errors.As(err, &dns):
		return "no such host", true
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused", true
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset", true
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "connection closed mid-answer", true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout", true
	}
	var ue *url.Error
	if errors.As(err, &ue) || errors.As(err, &ne) {
		return "network error", true
	}
	return "", false
}

// CauseHint says what the operator can do about a cause.
func CauseHint(cause string) string {
	source, class, _ := strings.Cut(cause, ": ")
	if source == SourcePipeline {
		return pipelineHint(class)
	}
	switch class {
	case "HTTP 401", "HTTP 403":
		return "check the API key named by api_key_env in [model]"
	case "HTTP 404":
		return "check [model] name and base_url"
	case "HTTP 429":
		return "rate limited: retry later, or lower concurrency or requests_per_minute in [model]"
	case "no such host":
		return "check [model] base_url and your network"
	case "connection refused":
		return "check that the model server at [model] base_url is running"
	case "cache miss":
		return "the offline run asked for an answer not in the response cache: run once online to fill it"
	case "malformed response":
		return "the server's answers are not chat completions: check [model] base_url, or retry when the provider is back"
	case "timeout":
		return "retry when the provider is back, or raise timeout_seconds in [model]"
	}
	return "retry when the provider is back"
}

// CauseCount is how many cases of a run errored with one cause.
type CauseCount struct {
	Cause string `json:"cause" jsonschema:"what the infrastructure failure was (timeout, rate limit, server error...)"`
	Count int    `json:"count" jsonschema:"errored cases with this cause"`
	Hint  string `json:"hint" jsonschema:"what to do about it"`
}

// sortCauses orders causes commonest first, then by name, so reports are
// stable.
func sortCauses(m map[string]int) []CauseCount {
	out := make([]CauseCount, 0, len(m))
	for c, n := range m {
		out = append(out, CauseCount{Cause: c, Count: n, Hint: CauseHint(c)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Cause < out[j].Cause
	})
	return out
}

// FormatCauses renders causes as "provider: HTTP 500 ×12, scorer: timeout
// ×2", commonest first, at most limit of them (0: all).
func FormatCauses(causes []CauseCount, limit int) string {
	var ps []string
	for i, c := range causes {
		if limit > 0 && i == limit {
			rest := 0
			for _, r := range causes[i:] {
				rest += r.Count
			}
			ps = append(ps, fmt.Sprintf("other ×%d", rest))
			break
		}
		ps = append(ps, fmt.Sprintf("%s ×%d", c.Cause, c.Count))
	}
	return strings.Join(ps, ", ")
}

// IncompleteError says a held-out run is not a result: some of its cases
// errored. Its message carries counts and causes only, never a case.
type IncompleteError struct {
	Split   string
	Cases   int // cases of the split
	Errored int
	Causes  []CauseCount
	RunID   string
	// Consequence says what did not happen because of it ("nothing was
	// charged"); the caller knows.
	Consequence string
	// Coarse leaves the counts out of the message, for an agent's
	// validation run: a variant can steer which cases error (a prompt
	// that has the model stop at once on some inputs, a program that
	// crashes on them), and how many did would count the validation cases
	// matching its condition, for no budget, as the run is not charged.
	Coarse bool
}

func (e *IncompleteError) Error() string {
	what := "infrastructure errors"
	causes := FormatCauses(e.Causes, 4)
	allProvider := true
	for _, c := range e.Causes {
		allProvider = allProvider && strings.HasPrefix(c.Cause, sourceProvider+": ")
	}
	if allProvider {
		what = "provider errors"
		causes = strings.ReplaceAll(causes, sourceProvider+": ", "")
	}
	var hints []string
	for _, c := range e.Causes {
		if !slices.Contains(hints, c.Hint) {
			hints = append(hints, c.Hint)
		}
	}
	msg := fmt.Sprintf("%d of %d %s cases hit %s (%s): %s", e.Errored, e.Cases, e.Split, what, causes, strings.Join(hints, "; "))
	if e.Coarse {
		names := make([]string, len(e.Causes))
		for i, c := range e.Causes {
			names[i] = c.Cause
			if allProvider {
				names[i] = strings.TrimPrefix(c.Cause, sourceProvider+": ")
			}
		}
		slices.Sort(names)
		msg = fmt.Sprintf("some %s cases hit %s (%s): %s", e.Split, what, strings.Join(slices.Compact(names), ", "), strings.Join(hints, "; "))
	}
	if e.Consequence != "" {
		msg += "; " + e.Consequence
	}
	return msg
}

// Incomplete returns why a finished run is not a result (some case
// errored, or fewer cases ran than the split holds), or nil when every case
// was scored. total is the number of cases the split holds (0: unknown).
func (s *Summary) Incomplete(total int) *IncompleteError {
	if s.Errored == 0 && (total == 0 || s.Cases >= total) {
		return nil
	}
	cases := s.Cases
	if total > cases {
		cases = total
	}
	e := &IncompleteError{Split: s.Split, Cases: cases, Errored: s.Errored, Causes: s.ErrorCauses, RunID: s.RunID}
	if missing := total - s.Cases; total > 0 && missing > 0 {
		e.Errored += missing
		e.Causes = append(e.Causes, CauseCount{Cause: "not run", Count: missing, Hint: "evaluate again to run them"})
	}
	return e
}
