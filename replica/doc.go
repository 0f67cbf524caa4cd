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
// # The encoding
//
// A log message (codec.go) and a snapshot (snapshot.go) are written in a
// compact binary format (wire.go): a marker byte, a version byte, then
// numbered fields in the protobuf wire format, written and read by hand
// with protowire. Beside the JSON of version 1 it replaces, a typical
// message is a third of the size and a 100,000-leg snapshot is written
// and read four to five times faster, with a fifth of the memory
// allocated (docs/BENCHMARKS.md). Hand-written rather than generated from a
// .proto: a generated message is one more copy of every leg (callstore
// Call to message struct and back) with its strings allocated twice on
// read, and the format is small and private to replicas; the protobuf
// wire format still gives what a generated one would: a field a reader
// does not know is skipped, so a field older replicas may ignore (the
// next is field 4 of an op) is added without a new version.
//
// A replica refuses a version it does not know, with an error naming
// it, rather than guess: a change older replicas must not misread takes
// a new version byte. JSON begins with '{', never with the marker, so a
// reader tells the formats apart by the first byte: a log or snapshot
// bucket written before the binary format is still read. A replica of a
// build before it cannot read the binary format (it stops with a
// malformed log message): upgrade the followers first, one by one (they
// read the JSON the old leader still writes), and the leader last; the
// lease then moves to an upgraded replica, and none is left that cannot
// read what it writes.
//
// # The leader
//
// One replica holds the lease, a key in a JetStream KV bucket whose TTL
// is Config.LeaseTTL: the holder renews it every quarter TTL with a
// revision-checked update, the others try to create it. The leader runs
// the switch (the engine and its channel driver).
//
// # Appending: several operations in flight
//
// The engine decides and commits under its lock; the commit is the term's
// pipeline (pipeline.go): check the changes against the store and the
// appends still in flight, publish them asynchronously with the expected
// last sequence (the previous append's revision, or the store's when
// none is in flight), and return at once with the revision the stream
// will give them. The next operation builds on it without waiting, so
// many operations are in flight while one ack's round trip is. One
// goroutine takes the acks in revision order and applies each revision
// to the store with the very values the engine committed. An operation's
// RPC returns only once its revision (and every earlier one) is
// acknowledged and applied (Switch), and the engine delivers signals to
// its channel driver only then (pbx.Options.Sync): nothing outside the
// process acts on a transition the log may not hold.
//
// The first append that fails, is refused or gets no ack within
// AppendTimeout fails the pipeline: that operation and every later one
// fail UNAVAILABLE, nothing more is published, and the term ends (the
// engine decided transitions the log never took, so it no longer matches
// the store). An operation reported failed may still be in the log (its
// ack was lost): every replica then applies it from the log, as any
// other revision. Never the other way round: success is only reported
// for a revision the stream acknowledged at the sequence it expected.
//
// A deposed leader cannot fork the log. Each append expects a sequence,
// so the stream stores it only right after the revision it was built on,
// provided the appends in flight before it were stored too. One of those
// lost (refused, or dropped with a connection) while a later one is
// stored after whatever took its place would fork the log, and that
// cannot happen: a term's appends go over one connection, which delivers
// them in order or loses a tail of them; nothing published while
// disconnected is sent on a later connection (no reconnect buffer, no
// publish retries), and an append while older ones are in flight on a
// connection since replaced ends the term; and an append is published
// only while the lease has more than an eighth of its TTL left on the
// leader's clock, while another replica can take the lease, and append,
// only once it expired. So another leader's revisions follow all of a
// deposed leader's, and the deposed leader's next append expects a
// sequence that is no longer the last one: the stream refuses it. This
// rests on what any lease rests on: clocks that run at about the same
// rate, and an append that reaches the stream within that eighth of the
// TTL. (The stream's own last-message-id check would not rest on it, but
// nats-server 2.15 refuses that check only when it applies a clustered
// message, and a refusal there stalls the stream: all later appends hang.)
// Each message also records the appender's id and term (the lease
// revision it won), and terms never go back along the log: a replica
// that has applied a revision of a newer term never appends again under
// its old one, even when a stalled leader's clock still trusts its lease.
//
// Every replica, the leader too, reads the log with an ordered consumer
// and applies each revision with callstore.ApplyAt. On the leader the
// reader leaves the revisions of its own appends in flight to the
// pipeline (it waits for them to be applied, or for the pipeline to
// fail, and then applies only what the pipeline did not), so a leader's
// store holds the very values its engine committed.
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
// # A retry after a failover
//
// A client that sent a control RPC with a request_id and lost the answer
// retries with the same request_id. The server's request_id cache
// answers a retry on the same leader; but when the leader died right
// after the log took the operation, the retry reaches the next leader,
// whose cache never saw it, and must not act a second time. So the
// request travels with the operation into the log: the server puts it on
// the operation's context (pbx.WithRequest: principal, method,
// request_id and the fingerprint of the request's content), the engine
// hands it with the operation's first revision to the pipeline
// (pbx.Options.CommitRequest, Log.CommitRequest), and the log message
// records it. Driver events and timers carry none.
//
// Every replica, the leader too, indexes the requests of the revisions
// it applies (requests.go): (principal, method, request_id) → revision,
// fingerprint and the legs the revision changed, as it left them, for
// Config.RequestTTL after the revision's time (the cache's TTL) and at
// most Config.MaxRequests of them. A request the leader's cache does not
// know but the index holds is answered from that revision (the server's
// Deps.Applied): the call or calls the first answer held, each as its
// revision left it, which is what the operation answered. Dial answers
// the caller's leg as its own revision left it (the first answer may
// have shown it one revision later, routed); a different request under
// the same request_id is refused as the cache refuses it. Nothing is
// applied twice: the index only holds revisions this replica applied,
// and a new leader serves only once it has applied the whole log.
//
// Why the log and not a shared cache (a KV bucket of answers): the
// revision is the one fact every replica agrees on, and it is written
// atomically with the operation it answers; a separate write could be
// lost between the append and the answer, which is the very failure this
// is for. The index is rebuilt from the log by every replica as it
// applies it; a replica that joined from a snapshot knows only the
// requests after it (snapshots carry no index), which is why the TTL is
// short next to how long the stream keeps its revisions.
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
//     honest; leaving them would show calls nothing can end. Over the sip
//     driver (pbx/sip.LeaderSwitch) the leader alone runs the SIP switch,
//     started with each term and closed when it ends, and nothing is
//     adopted: every leg of a SIP call, talking ones too, is a dialog
//     whose transaction state, CSeq and route set lived in the dead
//     process, so no other process can re-INVITE or BYE it. All of them
//     end with cause 41 in that one revision; the phones keep their media
//     until they hang up themselves. The registrations do move: the
//     leader's registrar saves each device's bindings in a KV bucket
//     (Log.Bucket, package pbx/sip/sipkv) and the next leader's loads
//     them, so it rings the phones without waiting for their next
//     REGISTER.
//   - NATS lost while running: an append that fails or times out fails
//     its operation and every later one with UNAVAILABLE and ends the
//     term (see Appending); an operation was not applied, or, if the
//     stream did store it after all, every replica applies it from the
//     log. Watches are served from the local store and keep working;
//     their tokens stay valid on every replica.
//   - A replica that cannot apply a message (a corrupt log) stops
//     applying, steps down and reports the error (Node.Err): restart it.
//   - NATS unreachable at start: Open fails with an error naming the URL.
//
// # Joining, snapshots and retention
//
// A new or restarted replica starts from an empty store and applies the
// log from revision 1, if the stream still holds it; Ready is closed once
// it has applied the log as it stood at Open, and the server reports
// SERVING only then.
//
// The stream may be limited (Config.MaxRevisions, MaxAge, MaxBytes; the
// oldest revisions go first). So the leader writes snapshots: the store
// as of one revision (every live leg, the last uid handed out, and the
// newest leader term in the log up to it: all a replica needs to follow
// the log from the next revision, and all a new leader needs, since the
// engine is rebuilt from the store's legs on every takeover). It writes
// one every Config.SnapshotEvery revisions (at most half the stream's
// revision limit), and whenever the newest snapshot falls in the older
// half of what a limited stream holds, so that the newest snapshot always
// reaches the stream's first revision, whatever the kind of limit.
//
// Snapshots live in a JetStream object store (Stream+"_SNAPSHOT"), not in
// the log: a revision is the log's sequence, so a snapshot message in the
// log stream would take a revision number of its own and shift every
// later one; and a snapshot of a busy switch is larger than a NATS
// message may be, which the object store handles by chunking (with a
// digest that is checked on read), as a KV value could not. The bucket
// holds two objects that snapshots take turns in: a new one overwrites
// the older, so the newest is never the one being written, and the
// bucket does not grow with the number of snapshots taken. Each carries
// the log's epoch: a snapshot of another log is never loaded.
//
// A replica whose next revision the stream no longer holds (it joins
// after the stream dropped revision 1, or it fell behind the stream's
// retention: its reader meets a gap, a message beyond the next revision)
// loads the newest snapshot (callstore.Restore) and reads the tail after
// it. Its watchers cannot continue across the revisions it never saw:
// they end OUT_OF_RANGE (REVISION_COMPACTED, naming the snapshot's
// revision) and re-snapshot, as for a watcher that fell behind the
// history. A leader steps down first (its engine matched the old store).
// Until a snapshot reaches the stream's first revision (only after a
// stream was trimmed by hand), the replica waits for the leader's next.
//
// Every replica also compacts its store to what the stream holds
// (callstore.Compact, polled every quarter lease): a resume token older
// than the stream's first revision is OUT_OF_RANGE on every replica, even
// one whose own history still holds it, so a token the log has dropped is
// refused wherever a load balancer sends it. A replica that joined from a
// snapshot holds no history before it: a token older than its snapshot is
// OUT_OF_RANGE there too, and the client re-snapshots.
package replica
