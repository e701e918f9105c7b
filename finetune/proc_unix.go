//go:build unix

package finetune

import (
	"os/exec"
	"syscall"
	"time"
)

// ownGroup runs cmd in its own process group and, when the context ends,
// signals the whole group: torchrun's worker processes stop with their
// launcher instead of training on as orphans.
func ownGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second // then SIGKILL
}
