package sip

import (
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	sipmsg "github.com/emiago/sipgo/sip"

	"callcontrold/directory"
)

// RegistrarConfig sets the registrar's expiry bounds and hooks. Zero
// fields take the defaults named beside them.
type RegistrarConfig struct {
	// MinExpires (60s) is the shortest registration accepted; a shorter
	// one is refused with 423 Interval Too Brief and Min-Expires.
	MinExpires time.Duration
	// MaxExpires (1h) caps a registration's lifetime: a longer request
	// is granted MaxExpires.
	MaxExpires time.Duration
	// DefaultExpires (1h) applies when a REGISTER names no expiry.
	DefaultExpires time.Duration
	// SweepInterval (1s) is how often expired bindings are removed and
	// reported down.
	SweepInterval time.Duration
	// Auth bounds the digest authenticator.
	Auth AuthConfig
	// Now is the clock (time.Now); tests pass a fake one.
	Now func() time.Time
	// Logger receives a line per registration change; slog.Default when
	// nil. Credentials never reach it.
	Logger *slog.Logger
	// OnChange, when set, is told every time a device goes up (its first
	// binding) or down (its last binding removed or expired), in order,
	// from one goroutine. It must not block for long.
	OnChange func(DeviceEvent)
	// OnBindings, when set, is told a device's bindings after every
	// REGISTER that changed them (added, refreshed, removed: none left
	// is an empty list), in order, from the goroutine that calls
	// OnChange. Bindings that merely expire are not reported: their
	// expiry says so. A replica's leader keeps them there for the next
	// leader (BindingStore).
	OnBindings func(device string, bindings []Binding)
}

// Binding is one registered contact of a device.
type Binding struct {
	// Contact is the URI the phone registered: the Request-URI of
	// requests sent to it. Its user part is the phone's business
	// (baresip puts "201-0x…" there); route by device, not by it.
	Contact sipmsg.Uri
	// Source is where the REGISTER came from, and where requests to the
	// phone are sent (req.SetDestination): it is right behind NAT and
	// for TCP, where the phone's Contact port is not listening.
	Source netip.AddrPort
	// Transport is the REGISTER's transport, "UDP" or "TCP".
	Transport string
	CallID    string
	CSeq      uint32
	UserAgent string
	// Expires is when the binding lapses unless refreshed.
	Expires time.Time
}

// Destination is Source as sipgo's SetDestination wants it.
func (b Binding) Destination() string { return b.Source.String() }

// DeviceEvent says a device went up or down.
type DeviceEvent struct {
	Device string // device name, "SIP/201"
	Up     bool
	// Reason is why: "registered", "unregistered", "expired".
	Reason string
	// Bindings are the device's bindings after the change (none when
	// down).
	Bindings []Binding
}

// Registrar is the location service of the sip driver: it authenticates
// REGISTERs against the directory's SIP accounts, keeps each device's
// bindings until they expire or are removed, and tells the engine when a
// device goes up or down. Its Authenticate also serves the B2BUA for
// requests other than REGISTER. It is safe for concurrent use.
type Registrar struct {
	cfg  RegistrarConfig
	dir  *directory.Directory
	log  *slog.Logger
	auth *authenticator

	mu       sync.Mutex
	bindings map[string][]Binding // device name -> bindings, oldest first
	events   []DeviceEvent        // waiting for the notifier
	saves    []DeviceEvent        // bindings waiting for OnBindings (Device, Bindings)
	wake     chan struct{}        // the notifier has events to deliver
	closed   bool

	stop chan struct{}
	done sync.WaitGroup
}

// NewRegistrar starts a registrar over dir's SIP accounts. Close stops
// it.
func NewRegistrar(dir *directory.Directory, cfg RegistrarConfig) *Registrar {
	if cfg.MinExpires <= 0 {
		cfg.MinExpires = time.Minute
	}
	if cfg.MaxExpires <= 0 {
		cfg.MaxExpires = time.Hour
	}
	cfg.MaxExpires = max(cfg.MaxExpires, cfg.MinExpires)
	if cfg.DefaultExpires <= 0 {
		cfg.DefaultExpires = time.Hour
	}
	cfg.DefaultExpires = min(max(cfg.DefaultExpires, cfg.MinExpires), cfg.MaxExpires)
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	r := &Registrar{
		cfg: cfg, dir: dir, log: log,
		auth:     newAuthenticator(dir, cfg.Auth, cfg.Now),
		bindings: map[string][]Binding{},
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	r.done.Add(2)
	go r.sweepLoop()
	go r.notifyLoop()
	return r
}

// Attach makes the registrar answer the endpoint's REGISTER requests.
// Call it before the endpoint's Start.
func (r *Registrar) Attach(ep *Endpoint) {
	ep.Handle(sipmsg.REGISTER, r.serveRegister)
}

// Close stops expiring bindings and delivering events. Events not yet
// delivered are dropped.
func (r *Registrar) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.mu.Unlock()
	close(r.stop)
	r.done.Wait()
}

// Bindings returns a device's live bindings, the most recently
// registered last. The B2BUA rings each (forking) or the last.
func (r *Registrar) Bindings(device string) []Binding {
	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.live(device, now)
}

// Up reports whether a device has a live binding. The engine asks before
// every ring (Refuse) and for device status, so it counts rather than
// copying the bindings as Bindings does.
func (r *Registrar) Up(device string) bool {
	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.ContainsFunc(r.bindings[device], func(b Binding) bool { return b.liveAt(now) })
}

// Authenticate checks the digest credentials of a request to the B2BUA
// (INVITE, REFER, ...) from src ("ip:port", req.Source()). When they are
// good it returns the device; otherwise it has answered the request
// itself (407 challenge, 403, 400), and for an INVITE received the
// phone's ACK of that answer (or seen its transaction end), and returns
// nil.
func (r *Registrar) Authenticate(req *sipmsg.Request, tx sipmsg.ServerTransaction) *directory.Device {
	src, err := netip.ParseAddrPort(req.Source())
	var out authOutcome
	if err != nil {
		out.response = sipmsg.NewResponseFromRequest(req, sipmsg.StatusBadRequest, "Unknown source address", nil)
	} else {
		var user string
		if f := req.From(); f != nil {
			user = f.Address.User
		}
		out = r.auth.check(req, src.Addr().Unmap(), user, true)
	}
	if out.response != nil {
		if out.reason != "" && out.response.StatusCode == sipmsg.StatusForbidden {
			r.log.Warn("sip request refused", "method", req.Method.String(), "source", req.Source(), "reason", out.reason)
		}
		r.respond(tx, out.response)
		awaitRefusalAck(tx, req)
		return nil
	}
	return out.device
}

func (r *Registrar) respond(tx sipmsg.ServerTransaction, res *sipmsg.Response) {
	if err := tx.Respond(res); err != nil {
		r.log.Debug("sip response not sent", "status", res.StatusCode, "error", err)
	}
}

// serveRegister is the endpoint's REGISTER handler.
func (r *Registrar) serveRegister(req *sipmsg.Request, tx sipmsg.ServerTransaction) {
	r.respond(tx, r.Register(req))
}

// Register processes one REGISTER and returns the response to send
// (RFC 3261 section 10.3). It never panics on a malformed request.
func (r *Registrar) Register(req *sipmsg.Request) *sipmsg.Response {
	to, from, callID, cseq := req.To(), req.From(), req.CallID(), req.CSeq()
	if to == nil || from == nil || callID == nil || cseq == nil || req.Via() == nil || to.Address.User == "" {
		return sipmsg.NewResponseFromRequest(req, sipmsg.StatusBadRequest, "Missing To, From, Call-ID, CSeq or Via", nil)
	}
	if req.Method != sipmsg.REGISTER || cseq.MethodName != sipmsg.REGISTER {
		return sipmsg.NewResponseFromRequest(req, sipmsg.StatusBadRequest, "Not a REGISTER", nil)
	}
	src, err := netip.ParseAddrPort(req.Source())
	if err != nil {
		return sipmsg.NewResponseFromRequest(req, sipmsg.StatusBadRequest, "Unknown source address", nil)
	}
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	out := r.auth.check(req, src.Addr(), to.Address.User, false)
	if out.response != nil {
		if out.response.StatusCode == sipmsg.StatusForbidden {
			r.log.Warn("sip register refused", "source", src.String(), "aor", to.Address.User, "reason", out.reason)
		}
		return out.response
	}
	dev := out.device
	if to.Address.User != dev.SIP.Username {
		r.log.Warn("sip register refused", "source", src.String(), "aor", to.Address.User, "reason", "credentials of "+dev.Name)
		return sipmsg.NewResponseFromRequest(req, sipmsg.StatusForbidden, "Credentials do not match the To user", nil)
	}
	changes, res := r.parseContacts(req)
	if res != nil {
		return res
	}
	meta := Binding{Source: src, Transport: strings.ToUpper(req.Transport()), CallID: callID.Value(), CSeq: cseq.SeqNo}
	if ua := req.GetHeader("User-Agent"); ua != nil {
		meta.UserAgent = ua.Value()
	}
	now := r.cfg.Now()
	bindings, res := r.update(dev, changes, meta, now, req)
	if res != nil {
		return res
	}
	ok := sipmsg.NewResponseFromRequest(req, sipmsg.StatusOK, "OK", nil)
	for _, b := range bindings {
		secs := int(b.Expires.Sub(now).Round(time.Second) / time.Second)
		ok.AppendHeader(sipmsg.NewHeader("Contact", "<"+b.Contact.String()+">;expires="+strconv.Itoa(secs)))
	}
	ok.AppendHeader(sipmsg.NewHeader("Date", now.UTC().Format(time.RFC1123)))
	return ok
}

// contactChange is one Contact of a REGISTER: add or refresh it for
// expires, or remove it (expires 0). all is "Contact: *".
type contactChange struct {
	uri     sipmsg.Uri
	expires time.Duration
	all     bool
}

// parseContacts reads the REGISTER's Contacts and their expiry. No
// Contact is a query (no changes).
func (r *Registrar) parseContacts(req *sipmsg.Request) ([]contactChange, *sipmsg.Response) {
	headerExpires := -1
	if h := req.GetHeader("Expires"); h != nil {
		n, ok := deltaSeconds(h.Value())
		if !ok {
			return nil, sipmsg.NewResponseFromRequest(req, sipmsg.StatusBadRequest, "Bad Expires", nil)
		}
		headerExpires = n
	}
	var changes []contactChange
	for _, h := range req.GetHeaders("Contact") {
		c, ok := h.(*sipmsg.ContactHeader)
		if !ok {
			return nil, sipmsg.NewResponseFromRequest(req, sipmsg.StatusBadRequest, "Bad Contact", nil)
		}
		if c.Address.Host == "*" {
			if headerExpires != 0 || len(req.GetHeaders("Contact")) != 1 {
				return nil, sipmsg.NewResponseFromRequest(req, sipmsg.StatusBadRequest, "Contact: * needs Expires: 0 and no other Contact", nil)
			}
			return []contactChange{{all: true}}, nil
		}
		if c.Address.Scheme != "sip" && c.Address.Scheme != "sips" || c.Address.Host == "" {
			return nil, sipmsg.NewResponseFromRequest(req, sipmsg.StatusBadRequest, "Contact is not a SIP URI", nil)
		}
		secs := headerExpires
		if v, ok := c.Params.Get("expires"); ok {
			n, ok := deltaSeconds(v)
			if !ok {
				return nil, sipmsg.NewResponseFromRequest(req, sipmsg.StatusBadRequest, "Bad Contact expires", nil)
			}
			secs = n
		}
		exp := r.cfg.DefaultExpires
		if secs >= 0 {
			exp = time.Duration(secs) * time.Second
		}
		if exp != 0 && exp < r.cfg.MinExpires {
			res := sipmsg.NewResponseFromRequest(req, 423, "Interval Too Brief", nil)
			res.AppendHeader(sipmsg.NewHeader("Min-Expires", strconv.Itoa(int(r.cfg.MinExpires/time.Second))))
			return nil, res
		}
		changes = append(changes, contactChange{uri: *c.Address.Clone(), expires: min(exp, r.cfg.MaxExpires)})
	}
	return changes, nil
}

// deltaSeconds reads an expiry in seconds (digits only). A value past
// 2^31 is 2^31: it is capped at MaxExpires anyway.
func deltaSeconds(s string) (int, bool) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 64 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 31)
	if err != nil {
		return 1 << 31, true // out of range: all digits, so just large
	}
	return int(n), true
}

// update applies a REGISTER's changes to a device's bindings and returns
// the bindings after it, or the error response.
func (r *Registrar) update(dev *directory.Device, changes []contactChange, meta Binding, now time.Time, req *sipmsg.Request) ([]Binding, *sipmsg.Response) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// Bindings that lapsed since the last sweep go first, with their
	// down event, so the engine never sees up twice in a row.
	r.expire(dev.Name, now)
	old := r.bindings[dev.Name]
	list := slices.Clone(old)
	var evicted []Binding
	for _, ch := range changes {
		if ch.all {
			list = nil
			break
		}
		i := slices.IndexFunc(list, func(b Binding) bool { return sameContact(b.Contact, ch.uri) })
		if i >= 0 && list[i].CallID == meta.CallID && list[i].CSeq >= meta.CSeq {
			// RFC 3261 10.3 step 7: an older or repeated request.
			return nil, sipmsg.NewResponseFromRequest(req, sipmsg.StatusInternalServerError, "Out of order REGISTER", nil)
		}
		if i >= 0 {
			list = slices.Delete(list, i, i+1)
		}
		if ch.expires == 0 {
			continue
		}
		b := meta
		b.Contact, b.Expires = ch.uri, now.Add(ch.expires)
		list = append(list, b)
		// The device's limit: the oldest binding makes room, so that
		// a phone that restarted with a new Call-ID is never locked out
		// by its own stale bindings.
		if n := dev.SIP.MaxRegistrations; len(list) > n {
			evicted = append(evicted, list[:len(list)-n]...)
			list = slices.Delete(list, 0, len(list)-n)
		}
	}
	r.setBindings(dev.Name, old, list, "registered", func(b Binding) string {
		if slices.ContainsFunc(evicted, func(e Binding) bool { return sameContact(e.Contact, b.Contact) }) {
			return "replaced (max_registrations)"
		}
		return "unregistered"
	})
	if r.cfg.OnBindings != nil && len(changes) > 0 {
		r.saves = append(r.saves, DeviceEvent{Device: dev.Name, Bindings: slices.Clone(list)})
		r.wakeNotifier()
	}
	return slices.Clone(list), nil
}

// live returns a device's unexpired bindings; the caller holds r.mu.
func (r *Registrar) live(device string, now time.Time) []Binding {
	l := r.bindings[device]
	return slices.DeleteFunc(slices.Clone(l), func(b Binding) bool { return !b.liveAt(now) })
}

// liveAt reports whether b has not lapsed at now.
func (b Binding) liveAt(now time.Time) bool { return b.Expires.After(now) }

// setBindings stores a device's bindings and queues the up or down event
// when it changed state; why gives the reason a binding was removed (the
// down event's reason is the last one's). The caller holds r.mu.
func (r *Registrar) setBindings(device string, old, list []Binding, upReason string, why func(Binding) string) {
	if len(list) == 0 {
		delete(r.bindings, device)
	} else {
		r.bindings[device] = list
	}
	for _, b := range list {
		if !slices.ContainsFunc(old, func(o Binding) bool { return sameContact(o.Contact, b.Contact) }) {
			r.log.Info("sip binding added", "device", device, "contact", b.Contact.String(), "source", b.Source.String(), "transport", b.Transport, "expires", b.Expires)
		}
	}
	downReason := ""
	for _, o := range old {
		if !slices.ContainsFunc(list, func(b Binding) bool { return sameContact(o.Contact, b.Contact) }) {
			downReason = why(o)
			r.log.Info("sip binding removed", "device", device, "contact", o.Contact.String(), "reason", downReason)
		}
	}
	switch {
	case len(old) == 0 && len(list) > 0:
		r.queue(DeviceEvent{Device: device, Up: true, Reason: upReason, Bindings: slices.Clone(list)})
	case len(old) > 0 && len(list) == 0:
		r.queue(DeviceEvent{Device: device, Up: false, Reason: downReason})
	}
}

// sameContact compares contact URIs as the registrar keys them: scheme,
// user, host, port and transport.
func sameContact(a, b sipmsg.Uri) bool {
	ta, _ := a.UriParams.Get("transport")
	tb, _ := b.UriParams.Get("transport")
	return a.Scheme == b.Scheme && a.User == b.User && strings.EqualFold(a.Host, b.Host) && a.Port == b.Port && strings.EqualFold(ta, tb)
}

func (r *Registrar) queue(ev DeviceEvent) {
	r.events = append(r.events, ev)
	r.wakeNotifier()
}

// wakeNotifier tells notifyLoop it has something to deliver.
func (r *Registrar) wakeNotifier() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// notifyLoop delivers events to OnChange in order, outside r.mu.
func (r *Registrar) notifyLoop() {
	defer r.done.Done()
	for {
		select {
		case <-r.stop:
			return
		case <-r.wake:
		}
		r.mu.Lock()
		evs, saves := r.events, r.saves
		r.events, r.saves = nil, nil
		r.mu.Unlock()
		for _, ev := range evs {
			if r.cfg.OnChange != nil {
				r.cfg.OnChange(ev)
			}
		}
		for _, sv := range saves {
			r.cfg.OnBindings(sv.Device, sv.Bindings)
		}
	}
}

func (r *Registrar) sweepLoop() {
	defer r.done.Done()
	t := time.NewTicker(r.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
			r.sweep()
		}
	}
}

// sweep removes expired bindings, reporting devices that went down.
func (r *Registrar) sweep() {
	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	devices := make([]string, 0, len(r.bindings))
	for d := range r.bindings {
		devices = append(devices, d)
	}
	slices.Sort(devices) // a deterministic event order
	for _, d := range devices {
		r.expire(d, now)
	}
}

// expire removes a device's lapsed bindings; the caller holds r.mu.
func (r *Registrar) expire(device string, now time.Time) {
	old := r.bindings[device]
	if list := r.live(device, now); len(list) != len(old) {
		r.setBindings(device, old, list, "registered", func(Binding) string { return "expired" })
	}
}
