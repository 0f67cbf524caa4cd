package sip

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	sipmsg "github.com/emiago/sipgo/sip"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/pbx"
)

// Config configures the SIP switch.
type Config struct {
	// Addr is the SIP listen address (UDP and TCP), host:port.
	Addr string
	// Engine configures the call engine (ring timeouts, clock, limits).
	Engine pbx.Options
	// Registrar configures registration expiry and authentication limits;
	// its OnChange is the switch's own.
	Registrar RegistrarConfig
	// Trunk, when set, carries external numbers out and calls from
	// outside in; without it external numbers are refused (cause 3).
	Trunk  *TrunkConfig
	Logger *slog.Logger // nil: slog.Default()
	// OnAnswer, when set, is told each time the B2BUA receives a phone's
	// 2xx to one of its own INVITEs (a callee answered), with the leg and
	// the moment, before the engine hears of it. The SIP benchmark
	// (cmd/sipbench) times "200 OK → WatchCalls event" from there. It
	// must not block.
	OnAnswer func(uid int64, at time.Time)
	// SessionProbe is how often the B2BUA asks each phone of an
	// established call, inside the call's dialog, whether it still has
	// it (an OPTIONS: see sessiontimer.go); 0: 90s, negative: never.
	// ProbeTimeout bounds one probe; 0: 32s.
	SessionProbe, ProbeTimeout time.Duration
	// MaxDialogsPerSource bounds the calls phones at one IP address have
	// started and not ended; 0: 128. A device's own bound is its
	// directory entry's sip.max_dialogs (limits.go).
	MaxDialogsPerSource int
	// Bindings, when set, keeps the registrations: the switch loads them
	// as it starts and saves every change (a replica's leader: see
	// LeaderSwitch).
	Bindings BindingStore
}

// Switch is the call engine with real SIP phones behind it: an
// endpoint, the registrar, and the back-to-back user agent that is the
// engine's channel driver. It implements pbx.Switch through the engine;
// it has no pbx.Simulator (there is no simulated far end).
type Switch struct {
	*pbx.Engine
	Endpoint  *Endpoint
	Registrar *Registrar
	b         *b2bua
}

var _ pbx.Switch = (*Switch)(nil)

// NewSwitch starts a SIP switch over the directory, committing to store:
// it listens at cfg.Addr at once. Close stops it.
func NewSwitch(dir *directory.Directory, store *callstore.Store, cfg Config) (*Switch, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	var tr *trunk
	if cfg.Trunk != nil {
		var err error
		if tr, err = newTrunk(context.Background(), *cfg.Trunk); err != nil {
			return nil, err
		}
	}
	ep, err := NewEndpoint(EndpointConfig{Addr: cfg.Addr, Logger: log})
	if err != nil {
		return nil, err
	}
	b := newB2BUA(dir, ep, log)
	b.onAnswer = cfg.OnAnswer
	b.probe = newProbeConfig(cfg.SessionProbe, cfg.ProbeTimeout)
	b.trunk = tr
	b.limits = newDialogLimits(cfg.MaxDialogsPerSource)
	rc := cfg.Registrar
	if rc.Logger == nil {
		rc.Logger = log
	}
	rc.OnChange = b.deviceChanged
	if cfg.Bindings != nil {
		rc.OnBindings = cfg.Bindings.Save
	}
	reg := NewRegistrar(dir, rc)
	reg.Attach(ep)
	b.reg = reg
	if cfg.Engine.Logger == nil {
		cfg.Engine.Logger = log
	}
	b.e = pbx.NewEngine(dir, store, b, cfg.Engine)
	b.attach(ep)
	if cfg.Bindings != nil {
		restoreBindings(cfg.Bindings, reg, log) // once the engine hears of devices going up
	}
	if err := ep.Start(); err != nil {
		b.e.Close()
		reg.Close()
		return nil, errors.Join(err, ep.Close())
	}
	if tr != nil {
		log.Info("sip trunk", "uri", tr.String(), "sources", tr.addrs, "digest_user", tr.auth.Username)
	}
	return &Switch{Engine: b.e, Endpoint: ep, Registrar: reg, b: b}, nil
}

// Close stops the engine, ends the unanswered dialogs (CANCEL to the
// phones the B2BUA rings, 503 to the phones whose own call is not yet
// answered, waiting up to closeWait for them: see shutdown), leaves the
// established calls to the phones, and closes the listeners.
func (s *Switch) Close() error {
	s.Engine.Close()
	s.b.shutdown(closeWait)
	s.Registrar.Close()
	err := s.Endpoint.Close() // ends every transaction the driver still waits on
	s.b.drain(s.Endpoint)
	return err
}

// b2bua is the SIP channel driver: every leg on a phone is one dialog
// between the B2BUA and that phone. A phone's INVITE is a server dialog
// (the leg is the caller's); the B2BUA's INVITE to a phone is a client
// dialog. Media is not relayed: each phone gets the other's SDP.
type b2bua struct {
	e   *pbx.Engine
	dir *directory.Directory
	ep  *Endpoint
	reg *Registrar
	log *slog.Logger
	// trunk is nil without --sip-trunk: external numbers have no route.
	trunk *trunk
	infos infoQueues // DTMF INFOs waiting, per dialog
	acks  acks       // answered phones' and trunk's dialogs waiting for their ACK
	dua   sipgo.DialogUA
	// onAnswer is Config.OnAnswer (nil: none).
	onAnswer func(uid int64, at time.Time)
	probe    probeConfig
	limits   *dialogLimits
	ctx      context.Context // ends with close: every goroutine of the driver watches it
	stop     context.CancelCauseFunc

	mu       sync.Mutex
	closed   bool
	byUID    map[int64]*dialog
	byCallID map[string]*dialog
	wg       sync.WaitGroup
}

var _ pbx.Driver = (*b2bua)(nil)

func newB2BUA(dir *directory.Directory, ep *Endpoint, log *slog.Logger) *b2bua {
	b := &b2bua{dir: dir, ep: ep, log: log, byUID: map[int64]*dialog{}, byCallID: map[string]*dialog{}}
	contact := sipmsg.ContactHeader{Address: sipmsg.Uri{Scheme: "sip", Host: ep.Addr().Addr().String(), Port: int(ep.Addr().Port())}}
	b.dua = sipgo.DialogUA{Client: ep.Client(), ContactHDR: contact}
	b.ctx, b.stop = context.WithCancelCause(context.Background())
	return b
}

func (b *b2bua) attach(ep *Endpoint) {
	ep.Handle(sipmsg.INVITE, b.onInvite)
	ep.Handle(sipmsg.ACK, b.onAck)
	ep.Handle(sipmsg.BYE, b.onBye)
	ep.Handle(sipmsg.CANCEL, b.onStrayCancel)
	ep.Handle(sipmsg.REFER, b.onRefer)
	ep.Handle(sipmsg.INFO, b.onInfo)
}

// spawn runs f on its own goroutine, tracked so close can wait for it.
func (b *b2bua) spawn(f func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return false
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		f()
	}()
	return true
}

// file registers a dialog under its leg and Call-ID. The caller holds
// d.mu, or no other goroutine has d yet.
func (b *b2bua) file(d *dialog) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.byUID[d.uid] = d
	b.byCallID[d.callID] = d
}

// forget removes a dialog from both indexes. The Call-ID of a dialog
// of ours is set once its INVITE is sent, under d.mu: read it so.
func (b *b2bua) forget(d *dialog) {
	d.mu.Lock()
	callID := d.callID
	d.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.byUID[d.uid] == d {
		delete(b.byUID, d.uid)
	}
	if b.byCallID[callID] == d {
		delete(b.byCallID, callID)
	}
}

func (b *b2bua) leg(uid int64) *dialog {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.byUID[uid]
}

func (b *b2bua) byCall(callID string) *dialog {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.byCallID[callID]
}

// report logs an event the engine refused: a race between a phone and
// the engine (the call ended meanwhile) is expected.
func (b *b2bua) report(what string, err error) {
	if err != nil && !errors.Is(err, pbx.ErrClosed) {
		b.log.Debug("sip: event not applied", "event", what, "err", err)
	}
}

// Refuse: a device without a live registration cannot ring (20);
// without a trunk, external numbers have no route (3).
func (b *b2bua) Refuse(t pbx.Target) int32 {
	if t.Number != "" {
		if b.trunk == nil {
			return pbx.CauseNoRoute
		}
		return 0
	}
	if !b.reg.Up(t.Device) {
		return pbx.CauseAbsent
	}
	return b.deviceFull(t.Device)
}

// Status is the device's registration.
func (b *b2bua) Status(device string) pbx.DeviceStatus {
	if dev, ok := b.dir.Device(device); !ok || dev.SIP == nil {
		return pbx.StatusUnknown
	}
	if b.reg.Up(device) {
		return pbx.StatusUp
	}
	return pbx.StatusDown
}
