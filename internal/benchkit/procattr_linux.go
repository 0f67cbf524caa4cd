package benchkit

import (
	"os/exec"
	"syscall"
)

// DieWithParent has the kernel kill cmd's process when this one dies, even
// by SIGKILL, so that a benchmark stopped hard leaves no server or client
// process behind. (Pdeathsig follows the thread that started the child;
// the Go runtime keeps its threads unless a goroutine exits while locked
// to one, which the load tools never do.)
func DieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
