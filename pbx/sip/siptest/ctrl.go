package siptest

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Event is a call or registration event baresip pushes over ctrl_tcp.
type Event struct {
	Type       string `json:"type"`       // CALL_INCOMING, CALL_RINGING, CALL_ESTABLISHED, CALL_CLOSED, TRANSFER (a REFER received), REGISTER_OK, REGISTER_FAIL, ...
	Class      string `json:"class"`      // "call", "register", "other"
	AccountAOR string `json:"accountaor"` // the account it concerns
	Direction  string `json:"direction"`  // "incoming" or "outgoing" (calls)
	PeerURI    string `json:"peeruri"`    // the other party
	ID         string `json:"id"`         // the call's id (its SIP Call-ID)
	Param      string `json:"param"`      // detail: the reason of CALL_CLOSED, the target of TRANSFER
}

// CommandTimeout bounds each ctrl_tcp command.
const CommandTimeout = 10 * time.Second

// Ctrl is a client of baresip's ctrl_tcp module: JSON messages in
// netstrings ("LEN:{...},"). Commands carry a token their response
// echoes; events arrive in between and are kept in order.
type Ctrl struct {
	conn       net.Conn
	readerDone chan struct{}

	mu      sync.Mutex
	token   int
	pending map[string]chan ctrlResponse
	events  []Event
	next    int           // events before next were consumed by WaitEvent
	changed chan struct{} // closed and replaced when events or err change
	err     error         // why the reader stopped
}

type ctrlMessage struct {
	Response bool   `json:"response"`
	Event    bool   `json:"event"`
	OK       bool   `json:"ok"`
	Data     string `json:"data"`
	Token    string `json:"token"`
}

type ctrlResponse struct {
	ok   bool
	data string
}

// dialCtrl connects to ctrl_tcp, retrying until it listens, the process
// has exited (gone), or the limit passes.
func dialCtrl(addr netip.AddrPort, limit time.Duration, gone func() bool) (*Ctrl, error) {
	deadline := time.Now().Add(limit)
	for {
		conn, err := net.DialTimeout("tcp", addr.String(), time.Second)
		if err == nil {
			c := &Ctrl{conn: conn, readerDone: make(chan struct{}), pending: map[string]chan ctrlResponse{}, changed: make(chan struct{})}
			go c.read()
			return c, nil
		}
		if gone() {
			return nil, fmt.Errorf("the process exited: %v", err)
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Close closes the connection and waits for the reader.
func (c *Ctrl) Close() {
	c.conn.Close()
	<-c.readerDone
}

// maxNetstring bounds one message.
const maxNetstring = 1 << 20

func (c *Ctrl) read() {
	defer close(c.readerDone)
	r := bufio.NewReader(c.conn)
	for {
		msg, err := readNetstring(r)
		if err != nil {
			c.stop(err)
			return
		}
		var m ctrlMessage
		if err := json.Unmarshal(msg, &m); err != nil {
			c.stop(fmt.Errorf("ctrl_tcp sent bad JSON %q: %w", msg, err))
			return
		}
		switch {
		case m.Response:
			c.mu.Lock()
			ch := c.pending[m.Token]
			delete(c.pending, m.Token)
			c.mu.Unlock()
			if ch != nil {
				ch <- ctrlResponse{ok: m.OK, data: m.Data}
			}
		case m.Event:
			var ev Event
			if err := json.Unmarshal(msg, &ev); err == nil {
				c.mu.Lock()
				c.events = append(c.events, ev)
				c.broadcast()
				c.mu.Unlock()
			}
		}
	}
}

// stop records why the reader ended; waiting callers see it.
func (c *Ctrl) stop(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		err = errors.New("ctrl_tcp connection closed")
	}
	c.err = err
	c.broadcast()
}

// broadcast wakes WaitEvent and Command callers; the caller holds c.mu.
func (c *Ctrl) broadcast() {
	close(c.changed)
	c.changed = make(chan struct{})
}

func readNetstring(r *bufio.Reader) ([]byte, error) {
	head, err := r.ReadString(':')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(head[:len(head)-1])
	if err != nil || n < 0 || n > maxNetstring {
		return nil, fmt.Errorf("ctrl_tcp: bad netstring length %q", head)
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	if buf[n] != ',' {
		return nil, errors.New("ctrl_tcp: netstring without its comma")
	}
	return buf[:n], nil
}

// Command runs a baresip command (as listed by "help") and returns its
// output; a command baresip refuses is an error.
func (c *Ctrl) Command(name, params string) (string, error) {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return "", err
	}
	c.token++
	token := strconv.Itoa(c.token)
	ch := make(chan ctrlResponse, 1)
	c.pending[token] = ch
	changed := c.changed
	c.mu.Unlock()

	msg, _ := json.Marshal(map[string]string{"command": name, "params": params, "token": token})
	frame := append([]byte(strconv.Itoa(len(msg))+":"), msg...)
	frame = append(frame, ',')
	if _, err := c.conn.Write(frame); err != nil {
		return "", err
	}
	timeout := time.NewTimer(CommandTimeout)
	defer timeout.Stop()
	for {
		select {
		case res := <-ch:
			if !res.ok {
				return res.data, fmt.Errorf("baresip %s %q: %s", name, params, res.data)
			}
			return res.data, nil
		case <-changed:
			c.mu.Lock()
			err := c.err
			changed = c.changed
			c.mu.Unlock()
			if err != nil {
				return "", err
			}
		case <-timeout.C:
			return "", fmt.Errorf("baresip %s: no response in %v", name, CommandTimeout)
		}
	}
}

// Dial calls a SIP URI (or a number, resolved in the account's domain).
func (c *Ctrl) Dial(uri string) error { _, err := c.Command("dial", uri); return err }

// Accept answers the ringing incoming call.
func (c *Ctrl) Accept() error { _, err := c.Command("accept", ""); return err }

// Hangup ends (or rejects, or cancels) the current call.
func (c *Ctrl) Hangup() error { _, err := c.Command("hangup", ""); return err }

// Hold puts the current call on hold (a re-INVITE with sendonly).
func (c *Ctrl) Hold() error { _, err := c.Command("hold", ""); return err }

// Resume takes the current call off hold.
func (c *Ctrl) Resume() error { _, err := c.Command("resume", ""); return err }

// Transfer blind-transfers the current call to uri (REFER). baresip
// hangs up as soon as the REFER is accepted (202), without waiting for
// the NOTIFY.
func (c *Ctrl) Transfer(uri string) error { _, err := c.Command("transfer", uri); return err }

// WaitEvent returns the next event of one of the types, consuming the
// events before it; it fails when none comes within limit or the
// connection ends.
func (c *Ctrl) WaitEvent(limit time.Duration, types ...string) (Event, error) {
	timeout := time.NewTimer(limit)
	defer timeout.Stop()
	for {
		c.mu.Lock()
		for c.next < len(c.events) {
			ev := c.events[c.next]
			c.next++
			if slices.Contains(types, ev.Type) {
				c.mu.Unlock()
				return ev, nil
			}
		}
		err, changed := c.err, c.changed
		c.mu.Unlock()
		if err != nil {
			return Event{}, fmt.Errorf("waiting for %v: %w", types, err)
		}
		select {
		case <-changed:
		case <-timeout.C:
			return Event{}, fmt.Errorf("no %v event in %v (seen: %v)", types, limit, c.Events())
		}
	}
}

// Events returns every event received so far.
func (c *Ctrl) Events() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}
