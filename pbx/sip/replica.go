package sip

import (
	"log/slog"
	"slices"
)

// LeaderSwitch is a Switch as a replica's leader runs it (package
// replica's Engine): it closes without an error to return, logging it
// instead, since a replica closes its engine as it steps down, on its
// own goroutine, with nobody to tell.
//
// A replica starts a Switch of its own when it takes the lease (the
// listener binds its --sip-addr then) and closes it when it steps down:
// only the leader speaks SIP. Its dialogs cannot move to another
// process, so a replica over the sip driver never adopts calls; the next
// leader ends every leg this one held with cause 41.
type LeaderSwitch struct {
	*Switch
	Log *slog.Logger // nil: slog.Default()
}

// Close closes the switch as Switch.Close does.
func (s LeaderSwitch) Close() {
	if err := s.Switch.Close(); err != nil {
		log := s.Log
		if log == nil {
			log = slog.Default()
		}
		log.Warn("sip switch close", "error", err)
	}
}

// BindingStore keeps the registrar's bindings where the next leader of a
// replicated switch loads them (package sipkv keeps them in a JetStream
// KV bucket), so that it can ring a phone at once rather than after the
// phone's next REGISTER. A binding holds no credentials.
type BindingStore interface {
	// Load returns every device's saved bindings.
	Load() (map[string][]Binding, error)
	// Save replaces a device's bindings (none: forget the device). It
	// reports failures itself: the registration stands either way.
	Save(device string, bindings []Binding)
}

// restoreBindings loads the saved bindings into reg; the devices that
// have a live one go up, as if they had just registered. A store that
// cannot be read leaves the registrar empty: phones come back as they
// register again.
func restoreBindings(store BindingStore, reg *Registrar, log *slog.Logger) {
	saved, err := store.Load()
	if err != nil {
		log.Warn("sip: saved registrations not loaded: phones come back as they register again", "error", err)
		return
	}
	n := 0
	for device, bs := range saved {
		n += reg.Restore(device, bs)
	}
	if n > 0 {
		log.Info("sip: registrations restored", "bindings", n)
	}
}

// Restore adds bindings saved by a previous registrar (OnBindings) to a
// device, skipping the expired ones, those it has already and any of a
// device that is no longer a SIP phone of the directory, and returns how
// many it added. The device goes up as if it had registered.
func (r *Registrar) Restore(device string, bindings []Binding) int {
	dev, ok := r.dir.Device(device)
	if !ok || dev.SIP == nil {
		return 0
	}
	now := r.cfg.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.live(device, now)
	list := slices.Clone(old)
	for _, b := range bindings {
		if b.liveAt(now) && !slices.ContainsFunc(list, func(o Binding) bool { return sameContact(o.Contact, b.Contact) }) {
			list = append(list, b)
		}
	}
	if n := dev.SIP.MaxRegistrations; n > 0 && len(list) > n {
		list = slices.Delete(list, 0, len(list)-n)
	}
	r.setBindings(device, old, list, "restored", func(Binding) string { return "replaced (max_registrations)" })
	return len(list) - len(old)
}
