// Package freeport finds free ports on 127.0.0.1 for the processes that
// tests and benchmarks start (SIPp), which must be told a port rather
// than bind port 0 themselves.
package freeport

import (
	"errors"
	"io"
	"net"
)

var loopback = net.IPv4(127, 0, 0, 1)

// MediaPort returns a port p at 127.0.0.1 where SIPp's media sockets can
// bind: SIPp binds its audio RTP socket at p and its video RTP socket at
// p+2 (UDP), and exits when either is taken. Another process may still
// take them before SIPp starts; the ports the kernel hands out are spread
// wide enough for that to be rare.
func MediaPort() (int, error) {
	p, err := pick(func(p int) (io.Closer, error) {
		if p+2 > 65535 {
			return nil, errors.New("p+2 out of range")
		}
		return net.ListenUDP("udp", &net.UDPAddr{IP: loopback, Port: p + 2})
	})
	if err == errNone {
		err = errors.New("no free loopback media port pair (p and p+2)")
	}
	return p, err
}

// Port returns a port at 127.0.0.1 free for UDP and TCP alike at the
// time of asking, for a program that must be told where to listen (SIPp
// cannot bind port 0 and report it). Another process taking it meanwhile
// shows as that program's bind error.
func Port() (int, error) {
	p, err := pick(func(p int) (io.Closer, error) {
		return net.ListenTCP("tcp", &net.TCPAddr{IP: loopback, Port: p})
	})
	if err == errNone {
		err = errors.New("no free loopback port")
	}
	return p, err
}

var errNone = errors.New("none free")

// pick asks the kernel for a free UDP port p, up to 50 times, and returns
// the first for which also can bind too (what it bound is closed again);
// errNone if there was none.
func pick(also func(p int) (io.Closer, error)) (int, error) {
	for range 50 {
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: loopback})
		if err != nil {
			return 0, err
		}
		p := u.LocalAddr().(*net.UDPAddr).Port
		c, err := also(p)
		u.Close()
		if err == nil {
			c.Close()
			return p, nil
		}
	}
	return 0, errNone
}
