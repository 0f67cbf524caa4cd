package server

import (
	"net"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/mem"
)

// Coalescing a busy connection's writes.
//
// grpc's writer (one goroutine per connection) writes to the socket
// whenever its queue runs empty, after yielding once. In a watch fan-out
// each watch's sender hands it that watch's frames, the senders of one
// revision run on both processors while the store commits the next, and
// the writer found its queue empty 1.3–1.6 times per connection per
// revision: a write system call each, for a few hundred bytes. A write on
// loopback costs ≈ 5 µs of the server's CPU (the kernel's send and receive
// path, and the reader's wake-up), and each one the client reads makes it
// answer with window updates the server reads in turn; the writes were the
// largest share of the fan-out's CPU per delivered event. grpc-go has no
// setting that delays its flush (WriteBufferSize only bounds a write).
//
// So, with Config.WriteCoalesceWindow set (the window; off by default,
// see docs/DESIGN.md for why), the server's connections hold back a write
// of stream messages (only DATA frames of streams that go on) that comes
// less than the window after the connection's last write, and write it
// with whatever the writer hands over after it, in one system call: with
// the first write
// at or after the window's end, or with the first write of anything else
// (response headers and trailers, pings, window updates, settings: what
// a unary call or the peer waits for goes out at once, and takes what is
// held back with it), or by a timer set for the window's end if none
// comes. A connection that writes now and then writes at once, as
// before; a busy stream's frames wait for the window or the timer. The
// runtime's timers fire on time while the process is busy, and up to
// ≈ 1 ms late when every processor is idle (the runtime then waits for
// them in epoll, whose timeout is in milliseconds): a held-back frame
// waits at most about that, and that is what the fan-out's latency tail
// pays for the CPU it saves. The connection follows the HTTP/2 frames it
// writes to tell stream messages from the rest (frameScan); with TLS it
// sits below the encryption, through coalescingCreds.
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
	window time.Duration // Config.WriteCoalesceWindow
}

func (l coalescingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newCoalescingConn(c, l.window), nil
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

// coalescingConn is a connection whose writes close together go out in
// one system call. Write is called by one goroutine at a time (grpc's
// writer); the timer's flush and Close may run beside it. wmu keeps the
// system calls in the order their bytes were accepted.
type coalescingConn struct {
	net.Conn
	ready  readOnReadyConn // Conn's ReadOnReady, if it has one
	window time.Duration   // the shortest gap between a busy connection's writes
	wmu    sync.Mutex      // held around every write to Conn, from taking pending on

	frames frameScan // of the bytes written so far; Write's alone

	mu      sync.Mutex
	pending *[]byte     // held back, not written yet; nil: none
	last    int64       // monoNow at the end of the last write to Conn; 0: none yet
	timer   *time.Timer // writes pending at the window's end; made on first use
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
	if wait := c.last + int64(c.window) - monoNow(); streamData && c.last != 0 && wait > 0 && !c.closed {
		if c.pending == nil && len(b) < coalesceSmall {
			c.pending = coalesceBufs.Get().(*[]byte)
			*c.pending = append((*c.pending)[:0], b...)
			if c.timer == nil {
				c.timer = time.AfterFunc(time.Duration(wait), c.flush)
			} else {
				c.timer.Reset(time.Duration(wait))
			}
			c.mu.Unlock()
			return len(b), nil
		}
		if c.pending != nil && len(b) < coalesceSmall && len(*c.pending)+len(b) <= coalesceMax {
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
	c.mu.Lock()
	c.last = monoNow()
	if err != nil && c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
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
	window time.Duration // Config.WriteCoalesceWindow
}

func (c coalescingCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := c.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		return conn, info, err
	}
	return newCoalescingConn(conn, c.window), info, nil
}

func (c coalescingCreds) Clone() credentials.TransportCredentials {
	return coalescingCreds{c.TransportCredentials.Clone(), c.window}
}
