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
