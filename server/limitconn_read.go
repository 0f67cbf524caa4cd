package server

import (
	"io"
	"net"
	"syscall"

	"google.golang.org/grpc/mem"
)

// A connection's read buffer. grpc-go's transport reads a connection
// through a bufio.Reader of its own (ReadBufferSize, 32 KiB), kept for the
// connection's life, unless the connection offers ReadOnReady (grpc's
// optional interface for connections, matched by its method set): then it
// waits until the socket is readable, and only then takes a buffer from
// its pool, which goes back once the bytes are used. *net.TCPConn gets
// that from grpc itself; limitConn hides it, so limitConn offers it too.
// Without it each connection kept 32 KiB of heap that its waiting reads
// pinned, which raised the collector's goal (GOGC) by that much per
// connection as well.

// ReadOnReady reads what is there once the connection is readable, into a
// buffer of bufSize taken from pool at that moment; the caller puts it
// back. It returns io.EOF (and no buffer) once the peer has closed. Bytes
// read mark the connection as having spoken, as Read does.
func (c *limitConn) ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	var (
		buf *[]byte
		n   int
		err error
	)
	if r := c.ready; r != nil {
		buf, n, err = r.read(bufSize, pool)
	} else {
		// Not a socket of the kinds grpc reads this way: a read that holds
		// its buffer while it waits, as bufio would.
		buf = pool.Get(bufSize)
		n, err = c.Conn.Read(*buf)
		if n == 0 {
			pool.Put(buf)
			buf = nil
		}
	}
	if n > 0 {
		c.spoke()
	}
	return buf, n, err
}

// readyReader reads a socket once it is readable, through its raw
// descriptor; its fields carry one read's arguments and results so that
// a read allocates nothing.
type readyReader struct {
	raw    syscall.RawConn
	doRead func(fd uintptr) bool

	size int
	pool mem.BufferPool
	buf  *[]byte
	n    int
	err  error
}

// newReadyReader returns a readyReader for c, or nil for a connection
// that is not a plain socket. (A wrapper that offers the descriptor of a
// connection it encrypts must not be read beneath: the types are the
// ones grpc reads this way itself.)
func newReadyReader(c net.Conn) *readyReader {
	switch c.(type) {
	case *net.TCPConn, *net.UnixConn:
	default:
		return nil
	}
	if !rawReadSupported {
		return nil
	}
	raw, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil
	}
	r := &readyReader{raw: raw}
	r.doRead = r.tryRead
	return r
}

// tryRead is one attempt, on the readable (or not yet) descriptor: false
// when the read would block, and the poller is to wait.
func (r *readyReader) tryRead(fd uintptr) bool {
	r.buf = r.pool.Get(r.size)
	r.n, r.err = sysRead(fd, *r.buf)
	if r.err != nil || r.n <= 0 {
		r.pool.Put(r.buf)
		r.buf, r.n = nil, 0
	}
	return !wouldBlock(r.err)
}

func (r *readyReader) read(size int, pool mem.BufferPool) (*[]byte, int, error) {
	r.size, r.pool = size, pool
	err := r.raw.Read(r.doRead)
	buf, n, readErr := r.buf, r.n, r.err
	r.pool, r.buf, r.n, r.err = nil, nil, 0, nil
	switch {
	case err != nil: // the poller's: closed, or past the deadline
		if buf != nil {
			pool.Put(buf)
		}
		return nil, 0, err
	case readErr != nil:
		return nil, 0, readErr
	case n == 0: // a read of nothing without an error: the peer closed
		return nil, 0, io.EOF
	}
	return buf, n, nil
}
