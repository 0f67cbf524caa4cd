//go:build !unix

package server

import "errors"

// Elsewhere limitConn reads as a plain net.Conn (ReadOnReady's fallback).
const rawReadSupported = false

func sysRead(uintptr, []byte) (int, error) { return 0, errors.ErrUnsupported }

func wouldBlock(error) bool { return false }
