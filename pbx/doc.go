// Package pbx is the call engine: the legs and their states, the dial
// plan (extensions, ring-all, hunt groups, queues, park orbits, external
// numbers), the features (hold, transfer, attended transfer, send, park,
// pickup), hangup causes and the PBX's own timers (ring timeouts, hunt
// steps). It decides every transition of every leg and commits it to the
// callstore, one revision per operation, so that watchers see each
// operation whole.
//
// # Engine and drivers
//
// The engine does not know how a phone rings. A channel driver does
// ([Driver]): the engine tells it what to signal (ring this device for
// this leg, answer, bridge two parties, hold toward a party, hang up with
// a cause, call an external number), and the driver reports what the
// phones and the trunk did through the engine's event methods (answered,
// refused with a cause, hung up, held, a phone dialled, an external party
// called in, answered or ended). Package pbx/sim is the simulated driver;
// a SIP driver puts real phones behind the same engine. The server talks
// only to [Switch], so it cannot tell which driver is behind it.
//
// # Why the lock is never held while a driver runs
//
// One mutex serializes operations, driver events and timers: deciding a
// transition and committing it are atomic, and revisions follow the order
// of operations. A real driver does network I/O, and it reports events
// that need that same mutex. So an operation decides and commits under
// the lock, queues the signals it decided, and releases the lock before
// any driver method runs. The queue is delivered in decision order, one
// signal at a time, by whichever goroutine finds nobody delivering (see
// flush): signals from two operations never cross, and a driver may
// report an event from inside a signal (the simulator answers at once)
// without deadlocking. The only driver methods called under the lock are
// Refuse, Status and CanAnswer, which answer from the driver's memory.
//
// # Operations whose effect is the far end's
//
// The API promises every operation returns the call as applied. When the
// effect is a phone's own doing, the engine cannot apply it by deciding:
// Talk on a ringing call asks the phone to answer, and Dial asks the
// caller's own phone to go off hook (click-to-dial) before it routes the
// number. Those operations wait, without the lock, for the driver's
// report (or the leg's end), bounded by the caller's context: Talk then
// fails with the context's error and the phone still rings; Dial returns
// the leg as it stands (state dial), because the call exists either way
// and the ring timeout bounds the wait for the phone. With the simulator
// the report comes at once, so these operations behave as a single step.
//
// # State
//
// A leg's state is derived, as the old JavaScript client of the PBX
// derived it, from its own near-end state (nrState) and the near-end
// state of what it is bridged to or rings (brState); see derive. An
// external party reached over the trunk has no leg of its own: it is a
// remote, with a near-end state that feeds the derived state of the leg
// it talks to, and an id ([RemoteID]) by which the driver reports on it.
// [Engine.Verify] checks the model against the store.
package pbx
