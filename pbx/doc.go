// Package pbx is the switch: the dial plan, the call flows and their
// timers. It decides every transition of every leg and commits it to the
// callstore, one revision per operation, so that watchers see each
// operation whole.
//
// The server talks to a switch only through [Switch] (and, for the
// simulated far end, [Simulator]), so a switch driving real SIP devices
// can replace [Sim] without touching the server or the store.
//
// [Sim] is the simulated switch embedded in the binary. It follows
// reference/call-model-notes.md: a leg's state is derived from its own
// near-end state and the state of the leg it is bridged to, exactly as the
// old JavaScript client derived it, so that clients written against the
// real PBX see the same sequences here.
package pbx
