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
	goleak.VerifyTestMain(m)
}
