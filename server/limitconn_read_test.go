package server

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/mem"
)

// The method set grpc-go's transport looks for on a connection to read it
// without a buffer of the connection's own (see limitconn_read.go).
type readsOnReady interface {
	ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error)
}

var _ readsOnReady = (*limitConn)(nil)

// countingPool counts the buffers taken and given back.
type countingPool struct {
	gets, puts atomic.Int64
}

func (p *countingPool) Get(size int) *[]byte {
	p.gets.Add(1)
	b := make([]byte, size)
	return &b
}

func (p *countingPool) Put(*[]byte) { p.puts.Add(1) }

func (p *countingPool) held() int64 { return p.gets.Load() - p.puts.Load() }

// acceptLimited returns both ends of a loopback TCP connection, the
// server's through a limitListener.
func acceptLimited(t *testing.T) (*limitListener, *limitConn, net.Conn) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newLimitListener(inner, 4, &limitHit{
		count: func(string) {}, log: slog.New(slog.DiscardHandler), every: time.Hour,
		last: map[string]time.Time{}, left: map[string]int{},
	}).(*limitListener)
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
	return l, c.(*limitConn), client
}

// A socket is read once it is readable, into a buffer taken then: the
// one buffer returned holds the bytes, none is kept while nothing is
// there, the connection has spoken, and the peer's close is io.EOF.
func TestLimitConnReadsOnReady(t *testing.T) {
	l, c, client := acceptLimited(t)
	if c.ready == nil {
		t.Fatal("a TCP connection has no raw reader")
	}
	if l.silent.Len() != 1 {
		t.Fatalf("silent connections = %d, want 1", l.silent.Len())
	}
	pool := &countingPool{}
	type result struct {
		buf *[]byte
		n   int
		err error
	}
	done := make(chan result)
	go func() {
		buf, n, err := c.ReadOnReady(64, pool)
		done <- result{buf, n, err}
	}()
	if _, err := client.Write([]byte("PRI * HTTP/2.0")); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || string((*r.buf)[:r.n]) != "PRI * HTTP/2.0" {
		t.Fatalf("ReadOnReady = %q, %v; want the bytes written", (*r.buf)[:r.n], r.err)
	}
	if held := pool.held(); held != 1 {
		t.Errorf("buffers held after a read = %d, want 1 (the one returned)", held)
	}
	pool.Put(r.buf)
	if !c.heard.Load() || l.silent.Len() != 0 {
		t.Errorf("after its first bytes: heard %v, silent connections %d; want true, 0", c.heard.Load(), l.silent.Len())
	}

	_ = client.Close()
	buf, n, err := c.ReadOnReady(64, pool)
	if buf != nil || n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("after the peer closed: %v, %d, %v; want nil, 0, io.EOF", buf, n, err)
	}
	if held := pool.held(); held != 0 {
		t.Errorf("buffers held after EOF = %d, want 0", held)
	}
}

// A read deadline ends the wait (grpc's handshake timeout sets one), and
// the read keeps no buffer.
func TestLimitConnReadOnReadyDeadline(t *testing.T) {
	_, c, _ := acceptLimited(t)
	pool := &countingPool{}
	if err := c.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	buf, n, err := c.ReadOnReady(64, pool)
	if buf != nil || n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("past the deadline: %v, %d, %v; want nil, 0, a deadline error", buf, n, err)
	}
	if held := pool.held(); held != 0 {
		t.Errorf("buffers held = %d, want 0", held)
	}
}

// A connection that is not a plain socket is read as a net.Conn, with
// the same results.
func TestLimitConnReadOnReadyOtherConn(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	l := &limitListener{max: 1}
	c := &limitConn{Conn: server, l: l, ready: newReadyReader(server)}
	defer c.Close()
	if c.ready != nil {
		t.Fatal("a pipe got a raw reader")
	}
	go func() { _, _ = client.Write([]byte("hi")) }()
	pool := &countingPool{}
	buf, n, err := c.ReadOnReady(64, pool)
	if err != nil || string((*buf)[:n]) != "hi" || !c.heard.Load() {
		t.Fatalf("ReadOnReady = %q, %v (heard %v); want \"hi\", nil (true)", (*buf)[:n], err, c.heard.Load())
	}
	pool.Put(buf)
	_ = client.Close()
	if buf, _, err := c.ReadOnReady(64, pool); buf != nil || !errors.Is(err, io.EOF) {
		t.Errorf("after the peer closed: %v, %v; want nil, io.EOF", buf, err)
	}
	if held := pool.held(); held != 0 {
		t.Errorf("buffers held = %d, want 0", held)
	}
}
