package sip

import (
	"errors"
	"net"
	"os"
	"testing"
)

// TestOnlyClosed: Endpoint.Close drops sipgo's complaint about closing a
// socket it had closed already, and nothing else.
func TestOnlyClosed(t *testing.T) {
	closed := &net.OpError{Op: "close", Net: "udp", Err: net.ErrClosed}
	other := &net.OpError{Op: "close", Net: "udp", Err: os.ErrDeadlineExceeded}
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"closed", closed, true},
		{"closed twice, joined", errors.Join(closed, closed), true},
		{"closed, joined with another error", errors.Join(closed, other), false},
		{"another error", other, false},
		{"nested joins of closed", errors.Join(errors.Join(closed), closed), true},
	} {
		if got := onlyClosed(c.err); got != c.want {
			t.Errorf("%s: onlyClosed(%v) = %v, want %v", c.name, c.err, got, c.want)
		}
	}
}
