// Package freeport finds free ports on 127.0.0.1 for the processes that
// tests and benchmarks start (SIPp), which must be told a port rather
// than bind port 0 themselves.
package freeport

import (
	"errors"
	"net"
)

// MediaPort returns a port p at 127.0.0.1 where SIPp's media sockets can
// bind: SIPp binds its audio RTP socket at p and its video RTP socket at
// p+2 (UDP), and exits when either is taken. Another process may still
// take them before SIPp starts; the ports the kernel hands out are spread
// wide enough for that to be rare.
func MediaPort() (int, error) {
	for range 50 {
		audio, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return 0, err
		}
		p := audio.LocalAddr().(*net.UDPAddr).Port
		video, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p + 2})
		audio.Close()
		if err == nil {
			video.Close()
			if p+2 <= 65535 {
				return p, nil
			}
		}
	}
	return 0, errors.New("no free loopback media port pair (p and p+2)")
}
