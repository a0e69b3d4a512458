//go:build unix

package scoring

import (
	"os/exec"
	"syscall"
)

// killProcessGroup starts cmd in its own process group and makes
// cancellation kill the whole group, so a shell wrapper's children die with
// it instead of running on after a timeout.
func killProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
}
