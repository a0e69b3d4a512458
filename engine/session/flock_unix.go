//go:build unix

package session

import (
	"os"
	"syscall"
)

// lockFile takes an advisory lock on f across processes: exclusive for
// writers, shared for readers. flock locks the open file description, so the
// in-process mutex is still needed between goroutines sharing one *os.File.
func lockFile(f *os.File, exclusive bool) (unlock func(), err error) {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }, nil
}
