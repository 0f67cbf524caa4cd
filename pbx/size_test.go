package pbx

import (
	"testing"
	"unsafe"
)

// TestLegSize guards the heap per live call: the engine keeps a leg per
// live call and a remote per call to or from outside. Each is at the top
// of its size class (80 and 64 bytes): one more field moves it to the
// next class (96 and 80 bytes).
func TestLegSize(t *testing.T) {
	if got := unsafe.Sizeof(leg{}); got > 80 {
		t.Errorf("leg is %d bytes, want at most 80: keep what only an operation needs in its tx, what few legs have in the engine", got)
	}
	if got := unsafe.Sizeof(remote{}); got > 64 {
		t.Errorf("remote is %d bytes, want at most 64: keep its small fields together at the end", got)
	}
}
