//go:build unix

package server

import "syscall"

const rawReadSupported = true

func sysRead(fd uintptr, p []byte) (int, error) { return syscall.Read(int(fd), p) }

func wouldBlock(err error) bool { return err == syscall.EAGAIN || err == syscall.EWOULDBLOCK }
