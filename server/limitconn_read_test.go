package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
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

// countingConn counts how its reader reads the limitConn it wraps.
type countingConn struct {
	*limitConn
	reads, readsOnReady atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	c.reads.Add(1)
	return c.limitConn.Read(b)
}

func (c *countingConn) ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	c.readsOnReady.Add(1)
	return c.limitConn.ReadOnReady(bufSize, pool)
}

// recordingListener hands out the capped connections it accepts wrapped
// in a countingConn, and to accepted.
type recordingListener struct {
	net.Listener
	accepted chan *countingConn
}

func (l recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := &countingConn{limitConn: c.(*limitConn)}
	l.accepted <- cc
	return cc, nil
}

// grpc-go's transport reads a capped plaintext connection's frames
// through ReadOnReady (so not through a buffer of its own), and the cap
// sees the client speak: its connection leaves the silent list.
func TestGRPCReadsLimitConnOnReady(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newLimitListener(inner, 4, &limitHit{
		count: func(string) {}, log: slog.New(slog.DiscardHandler), every: time.Hour,
		last: map[string]time.Time{}, left: map[string]int{},
	}).(*limitListener)
	rec := recordingListener{Listener: l, accepted: make(chan *countingConn, 1)}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(rec) }()
	defer func() {
		srv.Stop()
		<-done
	}()

	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	c := <-rec.accepted
	if c.ready == nil {
		t.Fatal("the accepted TCP connection has no raw reader")
	}
	// grpc reads the client's preface straight from the connection
	// (Read), and every frame after it through its framer: on ready.
	if on := c.readsOnReady.Load(); on == 0 {
		t.Errorf("grpc read the connection %d times on ready (and %d through Read); want its frames on ready", on, c.reads.Load())
	}
	l.mu.Lock()
	silent := l.silent.Len()
	l.mu.Unlock()
	if !c.heard.Load() || silent != 0 {
		t.Errorf("after a call: heard %v, silent connections %d; want true, 0", c.heard.Load(), silent)
	}
}

// acceptLimited returns both ends of a loopback TCP connection, the
// server's through a limitListener.
func acceptLimited(t *testing.T) (*limitListener, *limitConn, net.Conn) {
	t.Helper()
	l := newTestLimitListener(t)
	c, client := acceptOne(t, l)
	return l, c.(*limitConn), client
}

// newTestLimitListener is a limitListener of 4 connections on a loopback
// port, closed when the test ends.
func newTestLimitListener(t *testing.T) *limitListener {
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
	return l
}

// acceptOne dials l and returns both ends, closed when the test ends.
func acceptOne(t *testing.T, l net.Listener) (server, client net.Conn) {
	t.Helper()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = server.Close() })
	return server, client
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
