package pbx

import (
	"testing"
	"unsafe"
)

// TestLegSize guards the heap per live call: the engine keeps a leg per
// live call and a remote per call to or from outside. Each is at the top
// of its size class (96 and 64 bytes): one more field moves it to the
// next class (112 and 80 bytes).
func TestLegSize(t *testing.T) {
	if got := unsafe.Sizeof(leg{}); got > 96 {
		t.Errorf("leg is %d bytes, want at most 96: keep what only an operation needs in its tx", got)
	}
	if got := unsafe.Sizeof(remote{}); got > 64 {
		t.Errorf("remote is %d bytes, want at most 64: keep its small fields together at the end", got)
	}
}
