// Package freeport finds free ports on 127.0.0.1 for the processes that
// tests and benchmarks start (SIPp, baresip, a server under test), which
// must be told a port rather than bind port 0 themselves.
//
// A port is drawn at random from below Linux's default ephemeral range,
// not asked of the kernel with port 0. A port the kernel handed out and
// the caller released goes back into the pool every process on the
// machine draws its outgoing connections' ports from, so on a busy
// machine (go test runs packages in parallel, each starting programs)
// another process could take it before the program told to use it binds
// it. Below that range only explicit binds compete, and a port this
// process has handed out is never handed out again.
package freeport

import (
	"errors"
	"math/rand/v2"
	"net"
	"sync"
)

var loopback = net.IPv4(127, 0, 0, 1)

// Ports are drawn from [low, high): above the well-known and registered
// services most machines run, below the ephemeral range Linux starts at
// 32768 by default (where it starts elsewhere, the bind checks still
// hold; the race is merely less rare).
const low, high = 10000, 32768

// MediaPort returns a port p at 127.0.0.1 where SIPp's media sockets can
// bind: SIPp binds its audio RTP socket at p and its video RTP socket at
// p+2 (UDP), and exits when either is taken.
func MediaPort() (int, error) {
	p, err := pick(4, func(p int) bool { return udpFree(p) && udpFree(p+2) })
	if err != nil {
		return 0, errors.New("no free loopback media port pair (p and p+2)")
	}
	return p, nil
}

// Port returns a port p at 127.0.0.1 free for UDP and TCP alike at the
// time of asking, whose next port is free for TCP too (baresip listens
// for SIP over TLS there), for a program that must be told where to
// listen. Another process taking it meanwhile shows as that program's
// bind error.
func Port() (int, error) {
	p, err := pick(2, func(p int) bool { return udpFree(p) && tcpFree(p) && tcpFree(p+1) })
	if err != nil {
		return 0, errors.New("no free loopback port")
	}
	return p, nil
}

// pick draws up to 200 ports p at random, claims p to p+span-1 unless
// this process handed any of them out before, and returns the first p
// that free accepts.
func pick(span int, free func(p int) bool) (int, error) {
	for range 200 {
		p := low + rand.IntN(high-low-span)
		if claim(p, span) && free(p) {
			return p, nil
		}
	}
	return 0, errors.New("none free")
}

// handedOut holds every port pick has claimed in this process: a caller
// that has not started its program yet must not see its port handed to
// another.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

// claim records p to p+span-1 as handed out, unless one of them was.
func claim(p, span int) bool {
	handedOut.Lock()
	defer handedOut.Unlock()
	for i := range span {
		if handedOut.ports[p+i] {
			return false
		}
	}
	if handedOut.ports == nil {
		handedOut.ports = make(map[int]bool)
	}
	for i := range span {
		handedOut.ports[p+i] = true
	}
	return true
}

func udpFree(p int) bool {
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: loopback, Port: p})
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func tcpFree(p int) bool {
	l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: loopback, Port: p})
	if err != nil {
		return false
	}
	l.Close()
	return true
}
