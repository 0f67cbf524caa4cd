//go:build unix

package main

import (
	"os"
	"syscall"
)

// endSignal asks SIPp to end as its 'q' key does: no new call, the
// calls in progress end, and it exits writing its final screen.
var endSignal os.Signal = syscall.SIGUSR1
