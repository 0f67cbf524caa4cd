package sip

import (
	"bytes"
	"fmt"
	"strings"
	"time"
)

// The B2BUA never relays media: each phone is given the other phone's
// session description, so RTP flows between them. These helpers only
// touch the direction attribute (hold is "sendonly" toward the held
// party) and build the placeholder a click-to-dial call starts with.

// directions are the SDP direction attributes (RFC 4566, 3264).
var directions = []string{"a=sendrecv", "a=sendonly", "a=recvonly", "a=inactive"}

// withDirection returns sdp with its direction attributes replaced by
// dir ("sendonly", "sendrecv", ...), added once at the end (the audio
// stream's section in the single-stream descriptions phones send).
func withDirection(sdp []byte, dir string) []byte {
	if len(sdp) == 0 {
		return nil
	}
	var out bytes.Buffer
	for _, line := range strings.Split(strings.TrimRight(string(sdp), "\r\n"), "\n") {
		line = strings.TrimRight(line, "\r")
		if isDirection(line) {
			continue
		}
		out.WriteString(line)
		out.WriteString("\r\n")
	}
	out.WriteString("a=" + dir + "\r\n")
	return out.Bytes()
}

func isDirection(line string) bool {
	for _, d := range directions {
		if line == d {
			return true
		}
	}
	return false
}

// holds reports whether a phone's description puts its call on hold:
// sendonly or inactive (RFC 3264 section 8.4), or the old c=0.0.0.0.
func holds(sdp []byte) bool {
	for _, line := range strings.Split(string(sdp), "\n") {
		switch strings.TrimSpace(line) {
		case "a=sendonly", "a=inactive", "c=IN IP4 0.0.0.0":
			return true
		}
	}
	return false
}

// blackHole is the offer a click-to-dial INVITE carries before the
// other party is known (RFC 3725 flow IV): no address, no media, so the
// phone answers with its own description, which the B2BUA offers to the
// callee; the phone gets the callee's in a re-INVITE once it answers.
func blackHole(host string) []byte {
	v := time.Now().Unix()
	return fmt.Appendf(nil, "v=0\r\no=callcontrold %d %d IN IP4 %s\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 9 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=inactive\r\n", v, v, host)
}
