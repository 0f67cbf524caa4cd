package sip

import (
	"sync"

	sipmsg "github.com/emiago/sipgo/sip"
)

// acks holds the server dialogs whose 2xx waits for its ACK, by
// Call-ID. The engine may end a call (and the dialog be forgotten) while
// the ACK of its answer is still on its way, typically when the API
// hangs up right after the answer; that ACK must still confirm the
// dialog, or its BYE, which waits for the confirmation (RFC 3261 section
// 15), would not leave before the INVITE transaction times out.
type acks struct {
	mu      sync.Mutex
	waiting map[string]*dialog
}

// await files d until done is called, once its 2xx is acknowledged or
// given up.
func (a *acks) await(d *dialog) (done func()) {
	d.mu.Lock()
	id := d.callID
	d.mu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.waiting == nil {
		a.waiting = map[string]*dialog{}
	}
	a.waiting[id] = d
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.waiting[id] == d {
			delete(a.waiting, id)
		}
	}
}

// dialog returns the dialog an ACK confirms, ended or not.
func (a *acks) dialog(req *sipmsg.Request) *dialog {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.waiting[req.CallID().Value()]
}
