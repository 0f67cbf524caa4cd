package callstore

import (
	"testing"
	"unsafe"
)

// TestCallSize guards the heap per live call: the store holds one
// committed Call per live leg, and a Call over 256 bytes takes the next
// size class (288 bytes), 32 bytes more per live call. Field order
// matters: the small fields must stay together at the end.
func TestCallSize(t *testing.T) {
	if got := unsafe.Sizeof(Call{}); got > 256 {
		t.Errorf("Call is %d bytes, want at most 256 (a 288-byte size class per live call)", got)
	}
}
