// Package replica makes several callcontrold processes one service: they
// share one revision log in a NATS JetStream stream, and each applies it,
// in order, to its own in-memory callstore.
//
// # The log
//
// One stream (file storage, R3 in a NATS cluster) holds one message per
// revision: all the legs one engine operation changed. A revision is the
// message's stream sequence, so every replica numbers revisions alike,
// and the store's epoch is derived from the stream's name and creation
// time (Open), so a WatchCalls resume token from one replica resumes on
// any other. A stream deleted and created again has another epoch: old
// tokens get OUT_OF_RANGE (EPOCH_MISMATCH), and the client re-snapshots.
//
// # The leader
//
// One replica holds the lease, a key in a JetStream KV bucket whose TTL
// is Config.LeaseTTL: the holder renews it every quarter TTL with a
// revision-checked update, the others try to create it. The leader runs
// the switch (the engine and its channel driver). The engine's commit
// goes through the leader's appender: check the changes against the
// store, publish them with the expected last sequence (the store's
// revision), and apply them to the store only once the stream has
// acknowledged them. A deposed leader whose lease lapsed cannot fork the
// log: its append expects a sequence that is no longer the last one and
// the stream refuses it; it also stops appending once its own clock says
// the lease lapsed. Each message records the appender's id and term (the
// lease revision it won), and terms never go back along the log: a
// replica that has applied a revision of a newer term never appends
// again under its old one, and the expected-sequence check means it can
// only append right after the last revision it applied. So two leaders
// can never interleave in the log, even when a stalled leader's clock
// still trusts its lease.
//
// Every replica, the leader too, reads the log with an ordered consumer
// and applies each revision with callstore.ApplyAt. The leader's own
// appends are applied as they are acknowledged, under a mutex the reader
// also takes, so the reader finds them applied and skips them.
//
// # Control RPCs
//
// The interceptor forwards control RPCs that reach a follower to the
// leader's advertised address, with the caller's metadata (the leader
// authenticates the same principal and rate-limits it) and the same
// request (the same request_id), and returns the leader's answer as it
// is: the same result, the same errors. The leader's answer carries its
// revision; the follower answers once its own store has applied it, so a
// read on the follower right after sees the write.
//
// # Failures
//
//   - Leader dies: its lease expires after at most LeaseTTL (at once on a
//     clean shutdown, which deletes it); another replica takes it, applies
//     the log to its end and builds a fresh engine. With KeepBridges (the
//     simulated driver) the engine adopts the calls where two phones talk
//     (pbx.Engine.AdoptBridges) and they go on. Every other leg the dead
//     leader held ends, in one revision, with cause 41 (temporary
//     failure): its signalling lived in the dead process (a SIP dialog
//     cannot move to another process; ringing, queued and external calls
//     hang on timers and far ends that died with it). Ending them is
//     honest; leaving them would show calls nothing can end.
//   - NATS lost while running: an append that fails or times out fails
//     the operation with UNAVAILABLE and ends the term (the engine may
//     have decided a transition the log never took, so it no longer
//     matches the store); the operation was not applied, or, if the
//     stream did store it after all, every replica applies it from the
//     log. Watches are served from the local store and keep working;
//     their tokens stay valid on every replica.
//   - A replica that cannot apply a message (a corrupt log) stops
//     applying, steps down and reports the error (Node.Err): restart it.
//   - NATS unreachable at start: Open fails with an error naming the URL.
//
// # Joining
//
// A new or restarted replica starts from an empty store and applies the
// log from revision 1; Ready is closed once it has applied the log as it
// stood at Open, and the server reports SERVING only then. The stream is
// not trimmed: a replica rebuilds from revision 1 (snapshot messages that
// would allow retention limits are not built yet, and Open refuses a
// trimmed stream).
package replica
