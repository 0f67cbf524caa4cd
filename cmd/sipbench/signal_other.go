//go:build !unix

package main

import "os"

// endSignal: SIPp runs on Unix only; elsewhere there is no SIPp to ask.
var endSignal os.Signal = os.Kill
