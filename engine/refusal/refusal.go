// Package refusal is how the engine says no without naming a front end.
// The engine serves two audiences: an agent over MCP, which calls tools
// and cannot run fapo's commands, and an operator at a shell, who runs
// them and never calls a tool. An engine error that tells either what to
// do next carries the step as a neutral Action; tools/ renders it as the
// tool call and cmd/fapo as the command line, so neither audience is told
// to use something it does not have.
package refusal

import (
	"errors"
	"strings"
)

// Action is the next step a refusal points to, named for what it does,
// not for the tool or command that does it.
type Action int

const (
	// None: the message says all there is.
	None Action = iota
	// StartSession: the tenant needs a session first; Subject is the tenant.
	StartSession
	// ListTenants: the tenant named does not exist.
	ListTenants
	// Review: the variant (Subject) must pass review first.
	Review
	// EvaluateTrain: a train run id is needed; evaluate on train for one.
	EvaluateTrain
	// NewRun: a run cannot be continued with these settings; start afresh
	// (or continue it with the settings it started with).
	NewRun
	// Pin: the tenant's (Subject) frozen files changed or were never
	// pinned; only the operator accepts them.
	Pin
	// PinEndpoint: the tenant's (Subject) model endpoint changed since it
	// was pinned; only the operator accepts it.
	PinEndpoint
	// Unlock: the tenant's (Subject) session is locked for the operator,
	// who unlocks it or starts a new one.
	Unlock
	// CreateTenant: the directory (Subject) is not a tenant; the operator
	// creates one there.
	CreateTenant
	// Seal: the tenant (Subject) must be sealed (again) by the operator.
	Seal
	// Reseal: sealing the tenant (Subject) again would change its splits
	// under recorded runs; the operator may force it.
	Reseal
	// RunFinal: the test split is the final evaluation's, which the
	// operator runs (again, to continue one that did not finish).
	RunFinal
	// RerunFinal: the tenant's (Subject) test split was already
	// evaluated; the operator may force a second look (journaled).
	RerunFinal
	// GoOnline: an offline run missed the response cache; run online.
	GoOnline
	// SetHome: no sealed store directory is configured.
	SetHome
	// SetWorkspace: the workspace (Subject) is not a directory.
	SetWorkspace
	// Compare: validation is answered only by comparing a reviewed
	// candidate with the incumbent.
	Compare
	// Attribute: train attribution is needed first.
	Attribute

	last // keep last: Actions stops here
)

// Actions is every next step a refusal can name, for front ends' tests
// that each is rendered for their audience.
func Actions() []Action {
	out := make([]Action, 0, int(last)-1)
	for a := None + 1; a < last; a++ {
		out = append(out, a)
	}
	return out
}

// Refusal is an engine error that says what happened (Msg) and, as Next,
// what to do about it. Error gives a neutral sentence, for logs and for
// callers that render nothing; Render gives the audience's own.
type Refusal struct {
	Msg     string
	Next    Action
	Subject string // the tenant, variant or run the next step is about
	// Err is the cause, if any: its text follows the hint (unless Msg
	// already says it, as a sentence built around a sentinel does), and
	// errors.Is and errors.As see through the refusal to it.
	Err error
}

// New returns a refusal.
func New(next Action, subject, msg string) *Refusal {
	return &Refusal{Msg: msg, Next: next, Subject: subject}
}

// Wrap returns a refusal caused by err.
func Wrap(next Action, subject, msg string, err error) *Refusal {
	return &Refusal{Msg: msg, Next: next, Subject: subject, Err: err}
}

func (r *Refusal) Error() string { return r.with(neutral(r)) }

// Unwrap is the cause.
func (r *Refusal) Unwrap() error { return r.Err }

func (r *Refusal) with(hint string) string {
	text := r.Msg
	if hint != "" {
		text += ": " + hint
	}
	if r.Err != nil && !strings.Contains(r.Msg, r.Err.Error()) {
		text += ": " + r.Err.Error()
	}
	return text
}

// Carrier is implemented by typed engine errors that keep fields of their
// own (a pin mismatch's changes, a lock's reason) and refuse through a
// Refusal; their Error is that refusal's.
type Carrier interface {
	error
	Refusal() *Refusal
}

// Hint renders a next step for one audience; "" leaves the message bare.
type Hint func(*Refusal) string

// Render is err's text with every refusal in its chain given the
// audience's hint in place of the neutral one; wrapping context is kept.
func Render(err error, hint Hint) string {
	if err == nil {
		return ""
	}
	text := err.Error()
	for e := err; e != nil; {
		r, next := find(e)
		if r == nil {
			break
		}
		text = strings.Replace(text, r.Error(), r.with(hint(r)), 1)
		e = next
	}
	return text
}

// Of returns the first refusal in err's chain.
func Of(err error) (*Refusal, bool) {
	r, _ := find(err)
	return r, r != nil
}

// find returns the first refusal in err's chain and the rest of the chain
// after it.
func find(err error) (*Refusal, error) {
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch x := e.(type) {
		case *Refusal:
			return x, x.Err
		case Carrier:
			return x.Refusal(), errors.Unwrap(e)
		}
	}
	return nil, nil
}

// neutral is the hint for a reader who is neither agent nor operator.
func neutral(r *Refusal) string {
	switch r.Next {
	case StartSession:
		return "start a session for the tenant first"
	case ListTenants:
		return "list the tenants for the names"
	case Review:
		return "variant " + r.Subject + " must pass review first"
	case EvaluateTrain:
		return "evaluate on train for a run id"
	case NewRun:
		return "start a new run, or continue this one with the settings it started with"
	case Pin:
		return "the operator checks the change, then pins tenant " + r.Subject + " again (or restores the files)"
	case PinEndpoint:
		return "the operator checks the endpoint, then pins tenant " + r.Subject + " again in the environment the server runs in"
	case Unlock:
		return "the operator reviews the journal, then unlocks the session of " + r.Subject + " or starts a new one"
	case CreateTenant:
		return "the operator creates a tenant in " + r.Subject
	case Seal:
		return "the operator seals tenant " + r.Subject + " (again)"
	case Reseal:
		return "the operator may force the re-seal of tenant " + r.Subject + ": the runs stay on disk but can no longer be compared with new ones"
	case RunFinal:
		return "the operator runs the final evaluation of tenant " + r.Subject
	case RerunFinal:
		return "the operator may force the final evaluation of tenant " + r.Subject + " again (this is journaled)"
	case GoOnline:
		return "run once online to fill the response cache"
	case SetHome:
		return "set FAPO_HOME or configure the sealed store directory"
	case SetWorkspace:
		return "give the directory that holds tenants/ as the workspace"
	case Compare:
		return "compare a reviewed candidate with the incumbent"
	case Attribute:
		return "evaluate on train (its result carries the attribution) or run attribution"
	}
	return ""
}
