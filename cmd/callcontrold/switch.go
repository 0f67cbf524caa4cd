package main

import (
	"fmt"
	"log/slog"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/pbx"
	"callcontrold/pbx/sim"
	"callcontrold/pbx/sip"
)

// callSwitch is what the server needs from the switch the flags chose.
type callSwitch struct {
	pbx.Switch
	devices interface {
		DeviceState(string) (pbx.DeviceState, error)
	}
	simulator pbx.Simulator // nil unless the switch is simulated
	sim       *sim.Switch   // for demo traffic
	close     func()
}

// newSwitch starts the call engine with the channel driver --switch
// names: sim (simulated phones and far ends) or sip (real phones that
// register at --sip-addr).
func newSwitch(cfg *config, dir *directory.Directory, store *callstore.Store, log *slog.Logger) (*callSwitch, error) {
	switch cfg.switchKind {
	case "sip":
		sw, err := sip.NewSwitch(dir, store, sipConfig(cfg, pbx.Options{RingTimeout: cfg.ringTimeout, Logger: log}, log))
		if err != nil {
			return nil, fmt.Errorf("sip switch: %w", err)
		}
		closeSIP := func() {
			if err := sw.Close(); err != nil {
				log.Warn("sip switch close", "error", err)
			}
		}
		return &callSwitch{Switch: sw, devices: sw, close: closeSIP}, nil
	}
	sw := sim.New(dir, store, sim.Options{RingTimeout: cfg.ringTimeout, Logger: log})
	return &callSwitch{Switch: sw, devices: sw, simulator: sw, sim: sw, close: sw.Close}, nil
}

// sipConfig is the sip switch's configuration from the flags, its engine
// configured by engine.
func sipConfig(cfg *config, engine pbx.Options, log *slog.Logger) sip.Config {
	return sip.Config{
		Addr: cfg.sipAddr, Trunk: cfg.trunk.config(), Engine: engine, Logger: log,
		MaxDialogsPerSource: cfg.sipLimits.maxDialogsPerSource, SessionProbe: cfg.sipLimits.probe(),
	}
}
