package callstore

import (
	"testing"
	"unsafe"
)

// TestCallSize guards the heap per live call: the store holds one
// committed Call per live leg, and a Call over 192 bytes takes the next
// size class. Field order matters: the small fields must stay together at
// the end.
func TestCallSize(t *testing.T) {
	if got := unsafe.Sizeof(Call{}); got > 192 {
		t.Errorf("Call is %d bytes, want at most 192 (the next size class is 208 bytes)", got)
	}
}
