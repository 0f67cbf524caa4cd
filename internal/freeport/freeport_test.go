package freeport

import (
	"net"
	"testing"
)

// TestMediaPort: both ports SIPp binds are free when MediaPort returns.
func TestMediaPort(t *testing.T) {
	for range 20 {
		p, err := MediaPort()
		if err != nil {
			t.Fatal(err)
		}
		for _, port := range []int{p, p + 2} {
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
			if err != nil {
				t.Fatalf("MediaPort gave %d, but %d is taken: %v", p, port, err)
			}
			c.Close()
		}
	}
}

// TestPort: the port is free for UDP and TCP when Port returns.
func TestPort(t *testing.T) {
	for range 20 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		u, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
		if err != nil {
			t.Fatalf("Port gave %d, taken for UDP: %v", p, err)
		}
		u.Close()
		l, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: p})
		if err != nil {
			t.Fatalf("Port gave %d, taken for TCP: %v", p, err)
		}
		l.Close()
	}
}

// TestNeverHandedOutTwice: ports a process was given stay its own: no
// later call returns one of them (or a port inside a media pair), and
// every port is drawn outside Linux's default ephemeral range.
func TestNeverHandedOutTwice(t *testing.T) {
	seen := make(map[int]string)
	for i := range 100 {
		p, err := Port()
		if err != nil {
			t.Fatal(err)
		}
		m, err := MediaPort()
		if err != nil {
			t.Fatal(err)
		}
		for port, what := range map[int]string{p: "Port", p + 1: "Port+1", m: "MediaPort", m + 2: "MediaPort+2"} {
			if port < low || port >= 32768 {
				t.Fatalf("call %d: %s %d is outside [%d, 32768)", i, what, port, low)
			}
			if before, ok := seen[port]; ok {
				t.Fatalf("call %d: %s %d was handed out before as %s", i, what, port, before)
			}
			seen[port] = what
		}
	}
}
