//go:build unix

package pipeline

import (
	"os/exec"
	"syscall"
)

// setProcessGroup starts the program in its own process group, so that a
// kill reaches what a wrapper script started too.
func setProcessGroup(cmd *exec.Cmd) { cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} }

func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
