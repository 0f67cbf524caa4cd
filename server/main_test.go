package server_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test starts real servers and clients; none may leave a goroutine
// behind (a watch send loop, a grpc transport, a pbx timer).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
