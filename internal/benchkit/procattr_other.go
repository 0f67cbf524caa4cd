//go:build !linux

package benchkit

import "os/exec"

// DieWithParent: no parent-death signal here; the load tools' children
// still exit when their stdin closes, and callers stop the others.
func DieWithParent(*exec.Cmd) {}
