package server

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/peer"
)

// Coalescing the writes of the watches a commit woke.
//
// grpc's writer (one goroutine per connection) writes to the socket
// whenever its queue runs empty, after yielding once. In a watch fan-out
// a commit wakes several watches of a connection, and each one's sender
// hands the writer that watch's frames: the first sender's frame wakes
// the writer, which runs next on that processor, ahead of the other
// senders, and the writer found its queue empty 1.3–1.6 times per
// connection per revision: a write system call each, for a few hundred
// bytes. A write on loopback costs ≈ 5 µs of the server's CPU (the
// kernel's send and receive path, and the reader's wake-up), and each one
// the client reads makes it answer with window updates the server reads
// in turn; the writes were the largest share of the fan-out's CPU per
// delivered event. grpc-go has no setting that delays its flush
// (WriteBufferSize only bounds a write).
//
// So the server's connections count the watches a commit woke on them
// that have not handed their frames to grpc yet: the store tells every
// watch of a commit before it wakes any (callstore.WatchRequest.Notify:
// senderWoken), and a watch is done once its frames are handed over, or
// it found nothing to send (settle: senderDone). While the count is above
// zero a write made only of stream messages (DATA frames of streams that
// go on) is held back; the last watch done writes what is held back, its
// own frames with it: it yields first, so that the writer, which its
// frames woke, takes them into the same write. Anything else (response
// headers and trailers, pings, window updates, settings: what a unary
// call or the peer waits for) goes out at once and takes what is held
// back with it, and a connection with no woken watch writes at once, as
// before. Nothing waits on a clock: the frames of a commit go out when its
// last watch of the connection has sent, a few microseconds after the
// first.
//
// A woken watch that cannot hand its frames over (its client does not
// read: it waits for flow control) would hold the others back for good:
// a timer writes what is held back after the window
// (Config.WriteCoalesceWindow, a backstop: 1 ms), and from then on nothing
// is held back until the connection's woken watches are all done. The
// connection follows the HTTP/2 frames it writes to tell stream messages
// from the rest (frameScan); with TLS it sits below the encryption,
// through coalescingCreds. A watch finds its connection through
// coalescedConns, by the addresses grpc tells its handler.
//
// What is held back is bounded (coalesceMax): past it the writer writes
// everything itself, so it still blocks when the client does not read,
// and HTTP/2 flow control and the stall sweeper see what they saw before.
// The first error of a held-back write is returned by the next write.

const (
	// coalesceSmall: only writes smaller than this are held back. A
	// writer that hands over this much at once is streaming as fast as
	// flow control lets it, and what it writes is what the client's
	// window updates wait for.
	coalesceSmall = 4 << 10
	// coalesceMax bounds the bytes a connection holds back.
	coalesceMax = 16 << 10
	// closeFlushWait bounds how long Close tries to write what is held
	// back when the client does not read.
	closeFlushWait = 100 * time.Millisecond
)

// coalescingListener wraps the connections it accepts in coalescingConn.
type coalescingListener struct {
	net.Listener
	window time.Duration   // Config.WriteCoalesceWindow
	conns  *coalescedConns // where its connections are registered
}

func (l coalescingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	cc := newCoalescingConn(c, l.window)
	l.conns.add(cc)
	return cc, nil
}

func newCoalescingConn(c net.Conn, window time.Duration) *coalescingConn {
	cc := &coalescingConn{Conn: c, window: window}
	cc.ready, _ = c.(readOnReadyConn)
	return cc
}

// readOnReadyConn is grpc's optional interface for connections it can
// read without holding a buffer while it waits (limitconn_read.go),
// matched by its method set.
type readOnReadyConn interface {
	ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error)
}

// coalescingConn is a connection that writes the frames of the watches a
// commit woke on it in one system call. Write is called by one goroutine
// at a time (grpc's writer); the last woken watch's flush, the timer's
// and Close may run beside it. wmu keeps the system calls in the order
// their bytes were accepted.
type coalescingConn struct {
	net.Conn
	ready  readOnReadyConn // Conn's ReadOnReady, if it has one
	window time.Duration   // the longest anything is held back (a backstop: see expire)
	wmu    sync.Mutex      // held around every write to Conn, from taking pending on

	frames frameScan // of the bytes written so far; Write's alone

	reg   *coalescedConns // where the connection is registered while open; nil: nowhere
	addrs connAddrs       // its key there

	// senders counts the connection's watches woken with events whose
	// frames are not handed to grpc yet (senderWoken, senderDone).
	senders atomic.Int32

	mu      sync.Mutex
	pending *[]byte     // held back, not written yet; nil: none
	timer   *time.Timer // writes what is held back after the window; made on first use
	overdue bool        // the timer found counted watches still busy: hold nothing back until they are done
	err     error       // the first failed write's
	closed  bool
}

// coalesceBufs holds the held-back bytes' buffers between windows: an
// idle connection keeps none.
var coalesceBufs = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

func (c *coalescingConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if err := c.err; err != nil {
		c.mu.Unlock()
		return 0, err
	}
	streamData := c.frames.scan(b)
	if streamData && len(b) < coalesceSmall && !c.closed && !c.overdue && c.senders.Load() > 0 {
		if c.pending == nil {
			c.pending = coalesceBufs.Get().(*[]byte)
			*c.pending = append((*c.pending)[:0], b...)
			if c.timer == nil {
				c.timer = time.AfterFunc(c.window, c.expire)
			} else {
				c.timer.Reset(c.window)
			}
			c.mu.Unlock()
			return len(b), nil
		}
		if len(*c.pending)+len(b) <= coalesceMax {
			*c.pending = append(*c.pending, b...)
			c.mu.Unlock()
			return len(b), nil
		}
	}
	c.mu.Unlock()
	if err := c.writeOut(b); err != nil {
		return 0, err
	}
	return len(b), nil
}

// senderWoken counts a watch of this connection woken with events to
// send (the store's fan-out calls it for each, before it wakes any).
func (c *coalescingConn) senderWoken() { c.senders.Add(1) }

// senderDone is called once a watch counted by senderWoken has handed its
// frames to grpc (or has nothing to send). The last one writes what is
// held back: its own frames are in the writer's queue, which it just
// woke, or held back already. It yields first, so that the writer, which
// runs next on this processor, takes them into the same write; if the
// writer did not get to them, they go out in a write of their own.
func (c *coalescingConn) senderDone() {
	if c.senders.Add(-1) != 0 {
		return
	}
	runtime.Gosched()
	c.mu.Lock()
	c.overdue = false
	held := c.pending != nil
	c.mu.Unlock()
	if held {
		c.flush()
	}
}

// expire is the timer's: a counted watch has not handed over its frames
// within the window (its client does not read, say: it waits for flow
// control). What is held back goes out, and nothing more is held back
// until every counted watch is done: a stuck watch must not delay its
// connection's others by a window each time.
func (c *coalescingConn) expire() {
	c.mu.Lock()
	if c.pending != nil && c.senders.Load() > 0 {
		c.overdue = true
	}
	c.mu.Unlock()
	c.flush()
}

// writeOut writes what is held back, then b, in one system call.
func (c *coalescingConn) writeOut(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	p := c.pending
	if p != nil {
		c.pending = nil
		c.timer.Stop() // if it fired already, its flush finds nothing
	}
	c.mu.Unlock()
	out := b
	if p != nil {
		*p = append(*p, b...)
		out = *p
	}
	var err error
	if len(out) > 0 {
		_, err = c.Conn.Write(out)
	}
	if p != nil {
		coalesceBufs.Put(p)
	}
	if err != nil {
		c.mu.Lock()
		if c.err == nil {
			c.err = err
		}
		c.mu.Unlock()
	}
	return err
}

// flush writes what is held back: the timer's, at the window's end.
func (c *coalescingConn) flush() { _ = c.writeOut(nil) }

// ReadOnReady passes grpc's read on ready through to the connection
// underneath (the gRPC listener's limitConn offers it), so that wrapping
// it does not give each connection a read buffer for its life again. For
// one without it, the read holds its buffer while it waits, as grpc's own
// reader would.
func (c *coalescingConn) ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	if c.ready != nil {
		return c.ready.ReadOnReady(bufSize, pool)
	}
	buf := pool.Get(bufSize)
	n, err := c.Conn.Read(*buf)
	if n == 0 {
		pool.Put(buf)
		buf = nil
	}
	return buf, n, err
}

// Close writes what is held back first (grpc closes a connection right
// after its last frames: a GOAWAY, say); a client that does not read gets
// closeFlushWait to take them, a write already under way too.
func (c *coalescingConn) Close() error {
	c.unregister()
	c.mu.Lock()
	c.closed = true
	held := c.pending != nil
	c.mu.Unlock()
	if held {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(closeFlushWait))
		c.flush()
	}
	return c.Conn.Close()
}

// frameScan follows the HTTP/2 frames in the bytes a server writes (which
// start with its first frame: the connection preface is the client's),
// across writes that may split a frame or its header anywhere.
type frameScan struct {
	header  [9]byte
	have    int // bytes of header collected
	payload int // bytes of the current frame's payload still to come
}

// HTTP/2's frame type and flag that matter here (RFC 9113, section 6.1).
const (
	frameData     = 0x0
	flagEndStream = 0x1
)

// scan follows b and reports whether every frame whose header ends in it
// is a DATA frame without END_STREAM: a message of a stream that goes on.
// (A frame whose header is split counts with the write that completes
// it: grpc's writer splits only when its buffer is full, and a write that
// follows at once.)
func (f *frameScan) scan(b []byte) (streamData bool) {
	streamData = true
	for len(b) > 0 {
		if f.payload > 0 {
			n := min(len(b), f.payload)
			f.payload -= n
			b = b[n:]
			continue
		}
		n := copy(f.header[f.have:], b)
		f.have += n
		b = b[n:]
		if f.have < len(f.header) {
			break
		}
		f.have = 0
		f.payload = int(f.header[0])<<16 | int(f.header[1])<<8 | int(f.header[2])
		if f.header[3] != frameData || f.header[4]&flagEndStream != 0 {
			streamData = false
		}
	}
	return streamData
}

// coalescingCreds are TLS credentials whose connections coalesce their
// writes below the encryption, where the HTTP/2 frames can be seen.
type coalescingCreds struct {
	credentials.TransportCredentials
	window time.Duration   // Config.WriteCoalesceWindow
	conns  *coalescedConns // where its connections are registered
}

func (c coalescingCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return conn, info, err
	}
	cc := newCoalescingConn(conn, c.window)
	c.conns.add(cc)
	return cc, info, nil
}

func (c coalescingCreds) Clone() credentials.TransportCredentials {
	return coalescingCreds{c.TransportCredentials.Clone(), c.window, c.conns}
}

// coalescedConns finds the coalescingConn a watch's frames go out on.
// grpc tells a handler its connection's addresses (peer), not the
// connection: the server's coalescing connections are registered here
// under their addresses while they are open.
type coalescedConns struct{ m sync.Map } // connAddrs → *coalescingConn

// connAddrs: a TCP connection's two ends, unique among open connections.
type connAddrs struct{ local, remote netip.AddrPort }

func addrsOf(local, remote net.Addr) (connAddrs, bool) {
	l, ok1 := local.(*net.TCPAddr)
	r, ok2 := remote.(*net.TCPAddr)
	if !ok1 || !ok2 {
		return connAddrs{}, false
	}
	return connAddrs{l.AddrPort(), r.AddrPort()}, true
}

// add registers c, if it is a TCP connection (and r is not nil).
func (r *coalescedConns) add(c *coalescingConn) {
	if r == nil {
		return
	}
	if k, ok := addrsOf(c.LocalAddr(), c.RemoteAddr()); ok {
		c.reg, c.addrs = r, k
		r.m.Store(k, c)
	}
}

// remove forgets c (Close).
func (c *coalescingConn) unregister() {
	if c.reg != nil {
		c.reg.m.CompareAndDelete(c.addrs, c)
	}
}

// of returns the coalescing connection of the stream ctx belongs to, or
// nil (no coalescing, or not over TCP).
func (r *coalescedConns) of(ctx context.Context) *coalescingConn {
	if r == nil {
		return nil
	}
	p, ok := peer.FromContext(ctx)
	if !ok || p.LocalAddr == nil {
		return nil
	}
	k, ok := addrsOf(p.LocalAddr, p.Addr)
	if !ok {
		return nil
	}
	c, _ := r.m.Load(k)
	cc, _ := c.(*coalescingConn)
	return cc
}
