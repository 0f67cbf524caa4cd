//go:build !linux

package main

import "os/exec"

// setChildAttrs: no parent-death signal here; the child still exits when
// its stdin closes.
func setChildAttrs(*exec.Cmd) {}
