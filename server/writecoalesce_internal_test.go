package server

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"

	"callcontrold/internal/testcert"
)

// frame returns an HTTP/2 frame of that type and flags, on stream 1.
func frame(typ, flags byte, payload string) string {
	n := len(payload)
	return string([]byte{byte(n >> 16), byte(n >> 8), byte(n), typ, flags, 0, 0, 0, 1}) + payload
}

// data is a DATA frame of a stream that goes on: what is held back.
func data(payload string) string { return frame(frameData, 0, payload) }

// pipeConn returns a coalescingConn over one end of a synchronous pipe
// (a write returns once the other end has read it all) with the given
// window, and the other end.
func pipeConn(t *testing.T, window time.Duration) (*coalescingConn, net.Conn) {
	t.Helper()
	near, far := net.Pipe()
	t.Cleanup(func() { near.Close(); far.Close() })
	return &coalescingConn{Conn: near, window: window}, far
}

// readN reads n bytes from c, failing the test after a generous deadline
// (a liveness bound, not a timing assertion).
func readN(t *testing.T, c net.Conn, n int) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("read %d bytes: %v", n, err)
	}
	return string(b)
}

// written reads, on its own goroutine, everything that arrives at far.
func written(far net.Conn) <-chan string {
	out := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(far)
		out <- string(b)
	}()
	return out
}

// writeAsync writes s on its own goroutine (a write the pipe holds until
// it is read) and returns a channel closed once the write has returned.
func writeAsync(t *testing.T, c net.Conn, s string) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if n, err := c.Write([]byte(s)); err != nil || n != len(s) {
			t.Errorf("Write(%q) = %d, %v", s, n, err)
		}
	}()
	return done
}

// firstWrite writes s, which goes out at once (nothing was written yet),
// and reads it at far.
func firstWrite(t *testing.T, c, far net.Conn, s string) {
	t.Helper()
	done := writeAsync(t, c, s)
	if got := readN(t, far, len(s)); got != s {
		t.Fatalf("first write read as %q", got)
	}
	<-done
}

func mustWrite(t *testing.T, c net.Conn, s string) {
	t.Helper()
	if n, err := c.Write([]byte(s)); err != nil || n != len(s) {
		t.Fatalf("Write(%q) = %d, %v", s, n, err)
	}
}

func heldBack(c *coalescingConn) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending == nil {
		return ""
	}
	return string(*c.pending)
}

func TestCoalescingConnHoldsBackWritesWithinTheWindow(t *testing.T) {
	c, far := pipeConn(t, time.Hour)
	firstWrite(t, c, far, data("first"))
	b, cd := data("b"), data("cd")
	mustWrite(t, c, b) // within the window: held back, returns at once
	mustWrite(t, c, cd)
	if got := heldBack(c); got != b+cd {
		t.Fatalf("held back %q, want %q", got, b+cd)
	}
	go c.flush() // what the timer does at the window's end
	if got := readN(t, far, len(b+cd)); got != b+cd {
		t.Fatalf("flushed %q, want %q in one piece", got, b+cd)
	}
}

// Headers, trailers, pings, window updates, a stream's last DATA frame:
// what a client waits for goes out at once, with what was held back
// before it.
func TestCoalescingConnWritesOtherFramesAtOnce(t *testing.T) {
	for _, f := range []string{
		frame(0x1, 0x4, "hdr"),               // HEADERS (a unary response's, or trailers)
		frame(frameData, flagEndStream, "x"), // a stream's last DATA frame
		frame(0x6, 0x1, "12345678"),          // PING ack
		frame(0x8, 0, "\x00\x00\x01\x00"),    // WINDOW_UPDATE
		data("y") + frame(0x1, 0x5, "trl"),   // a message and the trailers after it
	} {
		c, far := pipeConn(t, time.Hour)
		firstWrite(t, c, far, data("a"))
		held := data("b")
		mustWrite(t, c, held)
		done := writeAsync(t, c, f)
		if got := readN(t, far, len(held+f)); got != held+f {
			t.Fatalf("read %q, want what was held back, then %q", got, f)
		}
		<-done
	}
}

func TestCoalescingConnTimerWritesWhatIsHeldBack(t *testing.T) {
	c, far := pipeConn(t, 20*time.Millisecond)
	firstWrite(t, c, far, data("a"))
	bc := data("bc")
	mustWrite(t, c, bc) // held back unless the window passed already; either way it arrives
	if got := readN(t, far, len(bc)); got != bc {
		t.Fatalf("read %q, want %q", got, bc)
	}
}

func TestCoalescingConnWritesOnceTheWindowIsOver(t *testing.T) {
	c, far := pipeConn(t, time.Hour)
	firstWrite(t, c, far, data("a"))
	b, cc := data("b"), data("c")
	mustWrite(t, c, b)
	c.mu.Lock()
	c.last = monoNow() - int64(2*time.Hour) // the window is over
	c.mu.Unlock()
	done := writeAsync(t, c, cc)
	if got := readN(t, far, len(b+cc)); got != b+cc {
		t.Fatalf("read %q, want what was held back, then the new write", got)
	}
	<-done
	if got := heldBack(c); got != "" {
		t.Fatalf("still held back: %q", got)
	}
}

func TestCoalescingConnBoundsWhatItHoldsBack(t *testing.T) {
	c, far := pipeConn(t, time.Hour)
	firstWrite(t, c, far, data("a"))
	one := data(strings.Repeat("x", coalesceSmall/2))
	held := ""
	for len(held)+len(one) <= coalesceMax {
		mustWrite(t, c, one) // held back: it fits
		held += one
	}
	if got := heldBack(c); got != held {
		t.Fatalf("holds back %d bytes, want %d", len(got), len(held))
	}
	done := writeAsync(t, c, one) // one more would not fit: all of it goes out
	if got := readN(t, far, len(held+one)); got != held+one {
		t.Fatal("what was held back and the write past the bound did not arrive in order")
	}
	<-done
	mustWrite(t, c, data("b")) // held back again
	big := data(strings.Repeat("y", coalesceSmall))
	done = writeAsync(t, c, big) // a large write is not held back
	if got := readN(t, far, len(data("b")+big)); got != data("b")+big {
		t.Fatal("a large write did not go out at once, after what was held back")
	}
	<-done
}

func TestCoalescingConnCloseWritesWhatIsHeldBack(t *testing.T) {
	c, far := pipeConn(t, time.Hour)
	firstWrite(t, c, far, data("a"))
	bc := data("bc")
	mustWrite(t, c, bc)
	got := written(far)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != bc {
		t.Fatalf("after Close the client read %q, want %q", s, bc)
	}
	if _, err := c.Write([]byte(data("d"))); err == nil {
		t.Fatal("a write after Close succeeded")
	}
}

func TestCoalescingConnCloseDoesNotWaitForAClientThatDoesNotRead(t *testing.T) {
	c, far := pipeConn(t, time.Hour)
	firstWrite(t, c, far, data("a"))
	mustWrite(t, c, data("b")) // held back; nobody reads it
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close blocked on a client that does not read")
	}
}

func TestCoalescingConnReportsAHeldBackWritesError(t *testing.T) {
	c, far := pipeConn(t, time.Hour)
	firstWrite(t, c, far, data("a"))
	mustWrite(t, c, data("b"))
	far.Close()
	c.flush() // fails: the other end is gone
	if _, err := c.Write([]byte(data("c"))); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("next write: %v, want the held-back write's error", err)
	}
}

// The frames are followed across writes that split them anywhere.
func TestFrameScanAcrossWrites(t *testing.T) {
	stream := data("hello") + data("") + frame(0x1, 0x4, "h") + data("tail")
	kinds := []bool{true, true, false, true} // each frame: a message of a stream that goes on
	starts := []int{0}
	for _, f := range []string{data("hello"), data(""), frame(0x1, 0x4, "h")} {
		starts = append(starts, starts[len(starts)-1]+len(f))
	}
	for cut1 := 0; cut1 <= len(stream); cut1++ {
		for cut2 := cut1; cut2 <= len(stream); cut2++ {
			var f frameScan
			parts := []string{stream[:cut1], stream[cut1:cut2], stream[cut2:]}
			offset := 0
			for _, p := range parts {
				want := true
				for i, at := range starts {
					if end := at + 9; end > offset && end <= offset+len(p) && !kinds[i] { // its header ends in p
						want = false
					}
				}
				if got := f.scan([]byte(p)); got != want {
					t.Fatalf("cuts %d, %d: part %q scanned %v, want %v", cut1, cut2, p, got, want)
				}
				offset += len(p)
			}
			if f.have != 0 || f.payload != 0 {
				t.Fatalf("cuts %d, %d: ended inside a frame", cut1, cut2)
			}
		}
	}
}

func TestCoalescingListenerWrapsConnections(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := coalescingListener{lis, 100 * time.Microsecond}
	defer cl.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := cl.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	c, ok := <-accepted
	if !ok {
		t.Fatal("Accept failed")
	}
	defer c.Close()
	cc, ok := c.(*coalescingConn)
	if !ok || cc.window != 100*time.Microsecond {
		t.Fatalf("accepted %T, want a coalescingConn with the listener's window", c)
	}
	// Many writes in a row all arrive, in order, whether held back or not.
	var want bytes.Buffer
	for i := range 100 {
		s := data(strings.Repeat(string(rune('a'+i%26)), 1+i))
		want.WriteString(s)
		mustWrite(t, c, s)
	}
	if got := readN(t, client, want.Len()); got != want.String() {
		t.Fatal("the writes arrived out of order or altered")
	}
}

// grpc reads the gRPC listener's connections on ready (limitconn_read.go):
// the coalescing wrapper must pass that through, or each connection keeps
// a read buffer of its own again.
func TestCoalescingConnPassesReadOnReadyThrough(t *testing.T) {
	c, client := acceptOne(t, coalescingListener{Listener: newTestLimitListener(t), window: time.Hour})
	cc := c.(*coalescingConn)
	if _, ok := cc.ready.(*limitConn); !ok {
		t.Fatalf("reads on ready through %T, want the limitConn underneath", cc.ready)
	}
	if _, err := client.Write([]byte("PRI")); err != nil {
		t.Fatal(err)
	}
	pool := &countingPool{}
	buf, n, err := cc.ReadOnReady(64, pool)
	if err != nil || string((*buf)[:n]) != "PRI" {
		t.Fatalf("ReadOnReady = %d bytes, %v; want the bytes written", n, err)
	}
	if pool.held() != 1 {
		t.Fatalf("buffers held = %d, want the one returned", pool.held())
	}
}

// A connection without ReadOnReady is read with a buffer taken for the
// read, given back when nothing came.
func TestCoalescingConnReadOnReadyOtherConn(t *testing.T) {
	c, far := pipeConn(t, time.Hour)
	pool := &countingPool{}
	go func() { _, _ = far.Write([]byte("x")); far.Close() }()
	buf, n, err := c.ReadOnReady(8, pool)
	if err != nil || n != 1 || (*buf)[0] != 'x' {
		t.Fatalf("ReadOnReady = %d, %v; want the byte written", n, err)
	}
	pool.Put(buf)
	if buf, n, err := c.ReadOnReady(8, pool); buf != nil || n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("after close: %v, %d, %v; want nil, 0, io.EOF", buf, n, err)
	}
	if pool.held() != 0 {
		t.Fatalf("buffers held = %d, want 0", pool.held())
	}
}

var _ readOnReadyConn = (*coalescingConn)(nil)

// With TLS the connection coalesces below the encryption, where it sees
// the frames: coalescingCreds wraps what the handshake returns.
func TestCoalescingCredsWrapTheTLSConnection(t *testing.T) {
	cert, pool := testcert.SelfSigned(t)
	creds := credentials.TransportCredentials(coalescingCreds{credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"h2"},
	}), time.Hour}).Clone()
	if _, ok := creds.(coalescingCreds); !ok {
		t.Fatalf("Clone returned %T", creds)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	type handshake struct {
		conn net.Conn
		err  error
	}
	done := make(chan handshake, 1)
	go func() {
		raw, err := lis.Accept()
		if err != nil {
			done <- handshake{err: err}
			return
		}
		conn, _, err := creds.ServerHandshake(raw)
		done <- handshake{conn, err}
	}()
	client, err := tls.Dial("tcp", lis.Addr().String(), &tls.Config{RootCAs: pool, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	h := <-done
	if h.err != nil {
		t.Fatal(h.err)
	}
	defer h.conn.Close()
	cc, ok := h.conn.(*coalescingConn)
	if !ok {
		t.Fatalf("the handshake returned %T, want a coalescingConn", h.conn)
	}
	want := data("a") + data("b") + frame(0x1, 0x5, "trailers")
	mustWrite(t, cc, data("a"))
	mustWrite(t, cc, data("b"))
	if got := heldBack(cc); got != data("b") { // the frame itself: above the encryption
		t.Fatalf("held back %q, want %q", got, data("b"))
	}
	mustWrite(t, cc, frame(0x1, 0x5, "trailers"))
	if got := readN(t, client, len(want)); got != want {
		t.Fatalf("the client read %q, want %q", got, want)
	}
}
