package main

import (
	"os/exec"
	"syscall"
)

// setChildAttrs has the kernel kill the child when the parent dies, even
// by SIGKILL. (Pdeathsig follows the thread that started the child; the Go
// runtime keeps its threads unless a goroutine exits while locked to one,
// which callbench never does.)
func setChildAttrs(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
