package sim

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/pbx"
)

// trafficTick is the generator's step. Per-step probabilities below are
// tuned for it: a ringing phone answers after ~2s, a call lasts ~20s.
const trafficTick = 100 * time.Millisecond

// RunTraffic drives sim with about rate new calls per second of mixed,
// realistic flows until ctx ends: inbound calls to phones, groups and
// queues, internal and outbound calls; answers, holds, blind and
// attended transfers, parks, hangups from either side. Errors from races
// between its own decisions (a call ended meanwhile) are expected and
// ignored. It returns nil when ctx ends, or ErrClosed.
func RunTraffic(ctx context.Context, sim *Switch, rate float64, clock pbx.Clock) error {
	if clock == nil {
		clock = sim.Clock()
	}
	g := newTraffic(sim, rate, clock)
	tick := make(chan struct{}, 1)
	for {
		clock.AfterFunc(trafficTick, func() {
			select {
			case tick <- struct{}{}:
			default:
			}
		})
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		}
		if err := g.tick(ctx); err != nil {
			return err
		}
	}
}

func newTraffic(sim *Switch, rate float64, clock pbx.Clock) *traffic {
	g := &traffic{sim: sim, clock: clock, rate: rate, rng: rand.New(rand.NewPCG(uint64(clock.Now().UnixNano()), 0x5eed))}
	for _, d := range sim.Directory().Devices() {
		if strings.HasPrefix(d.Name, "SIP/") {
			g.phones = append(g.phones, d)
		}
	}
	for _, x := range sim.Directory().Extensions() {
		if x.Type != directory.ExtensionPark {
			g.exts = append(g.exts, x)
		}
	}
	return g
}

// tick starts the calls due and moves the live ones on.
func (g *traffic) tick(ctx context.Context) error {
	g.acc += g.rate * trafficTick.Seconds()
	for ; g.acc >= 1; g.acc-- {
		g.start(ctx)
	}
	return g.step(ctx)
}

type traffic struct {
	sim    *Switch
	clock  pbx.Clock
	rng    *rand.Rand
	phones []*directory.Device
	exts   []*directory.Extension
	seq    int
	rate   float64
	acc    float64 // calls owed: fractional rates accumulate
}

func (g *traffic) p(x float64) bool { return g.rng.Float64() < x }

func (g *traffic) start(ctx context.Context) {
	g.seq++
	switch r := g.rng.IntN(10); {
	case r < 6: // inbound: the bulk of a PBX's traffic
		x := g.exts[g.rng.IntN(len(g.exts))]
		from := fmt.Sprintf("+4420794%05d", g.rng.IntN(100000))
		_, _ = g.sim.PlaceInbound(ctx, from, fmt.Sprintf("Caller %d", g.seq), x.Number)
	case r < 8: // internal
		dev := g.phones[g.rng.IntN(len(g.phones))]
		x := g.exts[g.rng.IntN(len(g.exts))]
		_, _ = g.sim.Dial(ctx, dev.Name, x.Number, pbx.DialOptions{})
	default: // outbound; the demo's +1555 rules answer after 3s
		dev := g.phones[g.rng.IntN(len(g.phones))]
		_, _ = g.sim.Dial(ctx, dev.Name, fmt.Sprintf("+1555010%d", g.rng.IntN(10)), pbx.DialOptions{})
	}
}

// step gives every live leg its chance to move on.
func (g *traffic) step(ctx context.Context) error {
	now := g.clock.Now().UnixMilli()
	for _, c := range g.sim.liveCalls() {
		age := now - c.StampMillis
		var err error
		switch {
		case c.State == callstore.StateRing && c.NRState == callstore.NRRinging && age > 1000:
			if g.p(0.05) {
				_, _, err = g.sim.Talk(ctx, c.UID)
			}
		case c.State == callstore.StateHold:
			if g.p(0.03) {
				_, _, err = g.sim.Talk(ctx, c.UID)
			}
		case c.State == callstore.StateUp && c.Device[0] == 'S':
			switch r := g.rng.Float64(); {
			case r < 0.004:
				_, err = g.sim.Hangup(ctx, c.UID)
			case r < 0.005:
				_, err = g.sim.HangupRemote(ctx, c.UID)
			case r < 0.006:
				_, _, err = g.sim.Hold(ctx, c.UID)
			case r < 0.0065:
				x := g.exts[g.rng.IntN(len(g.exts))]
				_, _, err = g.sim.Xfer(ctx, c.UID, x.Number)
			case r < 0.0067:
				_, _, err = g.sim.Xfer(ctx, c.UID, "701")
			case r < 0.0069:
				err = g.attended(ctx, c)
			}
		case c.State == callstore.StatePark && age > 10000:
			if g.p(0.02) {
				dev := g.phones[g.rng.IntN(len(g.phones))]
				_, err = g.sim.Dial(ctx, dev.Name, c.Extension.Number, pbx.DialOptions{})
			}
		}
		if errors.Is(err, pbx.ErrClosed) {
			return err
		}
		if ctx.Err() != nil {
			return nil
		}
	}
	return nil
}

// attended finishes an attended transfer if the device has a held call
// and an up call; otherwise it puts this one on hold and dials out.
func (g *traffic) attended(ctx context.Context, c *callstore.Call) error {
	for _, o := range g.sim.Store().ByDevice(c.Device) {
		if o.UID != c.UID && o.State == callstore.StateHold {
			_, _, err := g.sim.AtXfer(ctx, o.UID, c.UID)
			return err
		}
	}
	x := g.exts[g.rng.IntN(len(g.exts))]
	_, err := g.sim.Dial(ctx, c.Device, x.Number, pbx.DialOptions{AutoHold: true})
	return err
}

// liveCalls returns the live legs, by uid.
func (s *Switch) liveCalls() []*callstore.Call {
	calls, _ := s.Store().List(nil, nil, 0, math.MaxInt)
	return calls
}
