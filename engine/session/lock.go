package session

import (
	"fmt"
	"strings"

	refuse "github.com/fapo-dev/fapo/engine/refusal"
)

// Journal kinds of the operator lock.
const (
	KindLocked   Kind = "session_locked"
	KindUnlocked Kind = "session_unlocked"
)

// Lock is why a session stopped for the operator.
type Lock struct {
	Reason  string `json:"reason"`
	Variant string `json:"variant,omitempty"`
	Seq     int64  `json:"seq"`
}

// LockedSessionError refuses work in a session the review gate locked.
type LockedSessionError struct {
	Session string
	Lock    Lock
	Tenant  string
}

func (e *LockedSessionError) Error() string { return e.Refusal().Error() }

// Refusal says why the session is locked; only the operator unlocks it.
func (e *LockedSessionError) Refusal() *refuse.Refusal {
	tenant := e.Tenant
	if tenant == "" {
		tenant = "NAME"
	}
	return refuse.New(refuse.Unlock, tenant, "the session is locked for the operator: "+strings.TrimSuffix(e.Lock.Reason, "."))
}

// lockedErr refuses when the session is locked.
func (st *State) lockedErr() error {
	if st.Locked == nil {
		return nil
	}
	return &LockedSessionError{Session: st.Scope.ID, Lock: *st.Locked, Tenant: st.Scope.Tenant}
}

// LockForOperator journals that the session stops until the operator
// unlocks it: no proposal, validation or compare is admitted meanwhile.
func (s *Session) LockForOperator(v string, reason string) error {
	return s.transact(func(st *State) ([]Entry, error) {
		if st.Locked != nil {
			return nil, nil
		}
		return []Entry{{Kind: KindLocked, Variant: v, Data: toData(Lock{Reason: reason, Variant: v})}}, nil
	})
}

// Unlock journals the operator's decision to let a locked session go on.
func (s *Session) Unlock(reason string) error {
	if strings.TrimSpace(reason) == "" {
		return fmt.Errorf("unlocking a session needs a reason for the journal: say what you checked")
	}
	return s.transact(func(st *State) ([]Entry, error) {
		if st.Locked == nil {
			return nil, fmt.Errorf("session %s is not locked: nothing to unlock", st.Scope.ID)
		}
		return []Entry{{Kind: KindUnlocked, Data: map[string]any{"reason": reason, "lock_seq": st.Locked.Seq}}}, nil
	})
}

func (st *State) applyLock(e Entry) error {
	switch e.Kind {
	case KindLocked:
		var l Lock
		if err := fromData(e, &l); err != nil {
			return err
		}
		l.Seq = e.Seq
		st.Locked = &l
	case KindUnlocked:
		st.Locked = nil
	}
	return nil
}
