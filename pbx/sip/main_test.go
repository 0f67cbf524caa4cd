package sip

import (
	"io"
	"log/slog"
	"testing"

	sipmsg "github.com/emiago/sipgo/sip"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// sipgo logs through its default logger where no logger is passed
	// (test phones, connection bookkeeping): keep it out of test output.
	sipmsg.SetDefaultLogger(slog.New(slog.NewTextHandler(io.Discard, nil)))
	goleak.VerifyTestMain(m,
		// sipgo's transport layer, while its user agent closes, still
		// opens a UDP socket (and its reader) for a message a racing
		// transaction sends; nothing closes it. Only a closing user agent
		// does this, which in a process is its end; in these tests dozens
		// of switches and phones close.
		goleak.IgnoreAnyFunction("github.com/emiago/sipgo/sip.(*TransportUDP).readUDPConnection"))
}
