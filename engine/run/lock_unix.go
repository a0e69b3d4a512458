//go:build unix

package run

import (
	"errors"
	"os"
	"syscall"
)

// tryLock takes an exclusive advisory lock on f without waiting: a run is
// executed by one process at a time, and a second one asking is told so
// rather than made to wait for a run that may take an hour. The lock dies
// with the process, so a run killed with -9 is free to resume.
func tryLock(f *os.File) (locked bool, err error) {
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err != syscall.EINTR {
			break
		}
	}
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return false, nil
	}
	return err == nil, err
}
