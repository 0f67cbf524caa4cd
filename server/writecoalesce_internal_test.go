package server

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"
)

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
	firstWrite(t, c, far, "first")
	mustWrite(t, c, "b") // within the window: held back, returns at once
	mustWrite(t, c, "cd")
	if got := heldBack(c); got != "bcd" {
		t.Fatalf("held back %q, want %q", got, "bcd")
	}
	go c.flush() // what the timer does at the window's end
	if got := readN(t, far, 3); got != "bcd" {
		t.Fatalf("flushed %q, want %q in one piece", got, "bcd")
	}
}

func TestCoalescingConnTimerWritesWhatIsHeldBack(t *testing.T) {
	c, far := pipeConn(t, 20*time.Millisecond)
	firstWrite(t, c, far, "a")
	mustWrite(t, c, "bc") // held back unless the window passed already; either way it arrives
	if got := readN(t, far, 2); got != "bc" {
		t.Fatalf("read %q, want %q", got, "bc")
	}
}

func TestCoalescingConnWritesOnceTheWindowIsOver(t *testing.T) {
	c, far := pipeConn(t, time.Hour)
	firstWrite(t, c, far, "a")
	mustWrite(t, c, "b")
	c.mu.Lock()
	c.last = monoNow() - int64(2*time.Hour) // the window is over
	c.mu.Unlock()
	done := writeAsync(t, c, "c")
	if got := readN(t, far, 2); got != "bc" {
		t.Fatalf("read %q, want what was held back, then the new write", got)
	}
	<-done
	if got := heldBack(c); got != "" {
		t.Fatalf("still held back: %q", got)
	}
}

func TestCoalescingConnBoundsWhatItHoldsBack(t *testing.T) {
	c, far := pipeConn(t, time.Hour)
	firstWrite(t, c, far, "a")
	mustWrite(t, c, "b")
	big := strings.Repeat("x", coalesceMax)
	done := writeAsync(t, c, big) // too much to hold: the writer writes it all
	if got := readN(t, far, 1+len(big)); got != "b"+big {
		t.Fatal("the held-back bytes and the large write did not arrive in order")
	}
	<-done
}

func TestCoalescingConnCloseWritesWhatIsHeldBack(t *testing.T) {
	c, far := pipeConn(t, time.Hour)
	firstWrite(t, c, far, "a")
	mustWrite(t, c, "bc")
	got := written(far)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "bc" {
		t.Fatalf("after Close the client read %q, want %q", s, "bc")
	}
	if _, err := c.Write([]byte("d")); err == nil {
		t.Fatal("a write after Close succeeded")
	}
}

func TestCoalescingConnCloseDoesNotWaitForAClientThatDoesNotRead(t *testing.T) {
	c, far := pipeConn(t, time.Hour)
	firstWrite(t, c, far, "a")
	mustWrite(t, c, "b") // held back; nobody reads it
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
	firstWrite(t, c, far, "a")
	mustWrite(t, c, "b")
	far.Close()
	c.flush() // fails: the other end is gone
	if _, err := c.Write([]byte("c")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("next write: %v, want the held-back write's error", err)
	}
}

func TestCoalescingListenerWrapsConnections(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := coalescingListener{lis}
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
	if !ok || cc.window != coalesceWindow {
		t.Fatalf("accepted %T, want a coalescingConn with the default window", c)
	}
	// Many writes in a row all arrive, in order, whether held back or not.
	var want bytes.Buffer
	for i := range 100 {
		s := strings.Repeat(string(rune('a'+i%26)), 1+i)
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
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := coalescingListener{newLimitListener(inner, 4, &limitHit{
		count: func(string) {}, log: slog.New(slog.DiscardHandler), every: time.Hour,
		last: map[string]time.Time{}, left: map[string]int{},
	})}
	t.Cleanup(func() { _ = l.Close() })
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	c, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
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
