// Package callstore is the service's revisioned, in-memory store of live
// call legs and its watch fan-out.
//
// Every Commit applies one or more changes atomically as one revision: a
// single int64 counter for the whole store. Readers (Get, ByDevice, List)
// see whole revisions only, because a *Call is immutable: a change stores a
// new value and never edits the old one.
//
// # Watching
//
// Watch registers a watcher atomically with an optional snapshot of the
// matching live legs, or resumes after an (epoch, revision) token. The
// store then hands the watcher one Batch per revision that has events for
// it, in revision order, with no gap and no duplicate. Each event says how
// the change moves the leg relative to the watcher's view (Filter and
// visibility predicate): ViewEntered, ViewStayed or ViewLeft.
//
// The design follows etcd's cache package (demux.go, watcher.go,
// ringbuffer.go):
//
//   - The committer never blocks on a watcher and never runs consumer
//     code: it appends to a bounded per-watcher queue and signals a
//     capacity-1 channel (Watcher.Ready). The consumer calls Drain.
//   - Watchers are indexed by the uid, device and company in their filter.
//     A commit visits only the watchers indexed under the old or new
//     value's uid, device and company, plus the "broad" watchers whose
//     filter names none of them. An event costs work proportional to the
//     watchers that could match it, not to all watchers. The broad
//     watchers are grouped by view (the same states, types and visibility
//     func value: every admin's unfiltered watch, say): a change's event is
//     computed once per view and the view's watchers share its window, so
//     what a broad watcher costs a revision is a queue append.
//   - The last HistorySize committed revisions are kept in a ring buffer,
//     each change with its previous value, so a view transition can be
//     recomputed for any watcher later.
//   - A watcher whose queue overflows becomes lagging: the committer stops
//     queueing for it and remembers the next revision it needs. Its next
//     Drain replays from the ring (bounded work per call) until it has
//     caught up, then it is active again, atomically with respect to
//     commits. If the ring no longer holds that revision, the watcher ends
//     with *CompactedError. Resuming a watch is the same path: a new
//     watcher that starts out lagging. Memory is bounded by WatcherQueue
//     batches per watcher and HistorySize revisions, whatever consumers do.
//
// # Following a shared log
//
// A replica's store applies a log another process writes: ApplyAt takes
// the log's revisions in order. When the log has dropped the revisions a
// store still needs, Restore replaces its contents with a snapshot at a
// later revision (Snapshot takes one); no watch can continue across the
// missing revisions, so every watcher ends with a *CompactedError and the
// history starts afresh there. Compact refuses tokens older than what the
// log still holds, even while the ring holds them, as etcd's compaction
// does.
//
// Why not compute every batch lazily in Drain from a shared cursor? That
// makes the committer trivially cheap, but a narrow watcher (one device)
// woken once in a while would then scan every revision since its last
// Drain: total work O(watchers × revisions). Eager fan-out through the
// indexes costs O(matching watchers) per event and a Drain costs
// O(events handed out); the lazy replay is kept for the rare lagging and
// resuming watchers, where scanning is unavoidable anyway.
package callstore
