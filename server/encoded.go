package server

// Encoded returns a message that the server's codec sends as it is: b
// must hold the encoding of the method's response message, and must not
// change afterwards. The watch fan-out sends its shared frames this way
// (codec.go); a service registered on the server beside ours can send
// pre-built messages the same way (the benchmarks' no-op stream sends
// WatchCalls frames so, to compare like with like). The result may be
// sent any number of times, on any number of streams at once.
func Encoded(b []byte) any { return newRawFrame(b) }
