package server

import (
	"encoding/base64"
	"encoding/binary"
	"slices"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/encoding/protowire"

	"callcontrold/callstore"
	"callcontrold/wirefield"
)

// Field numbers of the frames that this file writes by hand (see
// encodeCache.batchFrame); package wirefield checks them against the
// generated descriptors.
const (
	fieldResponseEvents   = wirefield.ResponseEvents
	fieldBatchRevision    = wirefield.BatchRevision
	fieldBatchResumeToken = wirefield.BatchResumeToken
	fieldBatchEvents      = wirefield.BatchEvents
)

// encodeCache holds each event encoded once, shared by every watcher that
// receives it: a 10-watcher fan-out encodes an event once, not ten times.
// An encoding depends on the event, how it moves the watcher's view and
// (rarely) which of the calls it points at (qcall, xfer_data) the watcher
// may see, so those are the key.
//
// Every watcher of every revision looks here, so reads take no lock: a
// ring of slots, one revision each (rev modulo the ring size), holds
// immutable lists of frames that writers extend with compare-and-swap. A
// newer revision takes over its slot; watchers replaying older history
// simply encode again.
type encodeCache struct {
	cv    *converter    // decides what the viewer may see
	ev    *eventEncoder // writes the events' bytes
	bufs  sync.Pool     // *[]byte: eventEncoder's buffers, one per concurrent encoding
	slots []atomic.Pointer[cachedFrame]
	mask  int64
	head  atomic.Pointer[tokenHead] // the last epoch's (appendToken)
}

// tokenHead is the start of every resume token of one epoch: its version
// byte and epoch, 9 bytes, are 12 base64 characters of their own.
type tokenHead struct {
	epoch uint64
	b     [12]byte
}

// appendToken appends resumeToken{epoch, rev}'s encoding (appendTo's
// bytes): the head, the same in every frame of the epoch, encoded once,
// then the revision's 8 bytes.
func (c *encodeCache) appendToken(dst []byte, epoch uint64, rev int64) []byte {
	h := c.head.Load()
	if h == nil || h.epoch != epoch {
		h = &tokenHead{epoch: epoch}
		var b [9]byte
		b[0] = tokenVersion
		binary.BigEndian.PutUint64(b[1:], epoch)
		base64.RawURLEncoding.Encode(h.b[:], b[:])
		c.head.Store(h)
	}
	var r [8]byte
	binary.BigEndian.PutUint64(r[:], uint64(rev))
	return base64.RawURLEncoding.AppendEncode(append(dst, h.b[:]...), r[:])
}

// cachedFrame is a finished frame of one revision, as the cache holds it:
// its bytes, the keys of the events it holds, in order, with where each
// event's encoding lies in it, and the revision's frames published before
// it. Never modified once published. Watchers that receive the same
// events in the same views — all the unfiltered ones of one login, say —
// send the very same bytes: gRPC only reads a message, so one frame can go
// out on many streams. Such a watcher finds the frame by its events' keys
// alone, without looking up or touching the events' bytes; a watcher that
// needs another frame of the revision copies the encodings of the events
// it shares with a frame from there.
//
// A revision's frames are a list, newest first, each pointing at the one
// published before it: publishing a frame allocates it and nothing else
// (the revision's record used to be copied, with room for its encodings
// and frames, at every frame: twice the bytes a revision allocates here).
// The keys and places of a frame of up to two events live in the frame.
type cachedFrame struct {
	rev int64
	// noQcall has bit i set when the call of the commit's event i (i < 64)
	// points at no queue-bridged call: its key's qvis is false for every
	// viewer, and a watcher after the first finds the frame without
	// reading the call (a value another processor committed: a cache miss
	// per event, per watcher). The newest frame's is the revision's: each
	// adds its events' bits to those of the frames before it.
	noQcall uint64
	prev    *cachedFrame // the revision's frame published before this one, or nil
	raw     rawFrame
	epoch   uint64       // the resume token's, in the frame
	events  []frameEvent // small[:n], or an array of their own past len(small)
	small   [2]frameEvent
}

// frameEvent is one event of a cached frame: its key, and where its
// encoding lies in the frame's bytes.
type frameEvent struct {
	key        encKey
	start, end uint32
}

// encKey identifies one encoding of a revision's event: which event (its
// position in the commit), how it moves the viewer's view, and which of
// the calls it points at the viewer may see. Within a revision, equal keys
// mean equal bytes. It is 16 bytes (a commit has far fewer than 2^31
// changes): every watcher after the first compares a frame's keys with
// its own.
type encKey struct {
	index int32
	view  callstore.ViewChange
	qvis  bool   // the viewer may see the qcall reference
	xvis  uint64 // which xfer_data legs the viewer may see
}

func newEncodeCache(cv *converter, window int) *encodeCache {
	n := 64 // a power of two between 64 and 4096 covering the window
	for n < window && n < 4096 {
		n *= 2
	}
	c := &encodeCache{cv: cv, ev: newEventEncoder(cv), slots: make([]atomic.Pointer[cachedFrame], n), mask: int64(n - 1)}
	c.bufs.New = func() any { return new([]byte) }
	return c
}

// key returns the key of e's encoding as the viewer sees it; noQcall is
// the revision's (cachedFrame.noQcall), or 0.
func (c *encodeCache) key(e *callstore.WatchEvent, visible func(*callstore.Call) bool, noQcall uint64) encKey {
	k := encKey{index: int32(e.Index), view: e.View, xvis: c.cv.xferVisible(e.Xfer, visible)}
	if e.Index >= 64 || noQcall&(1<<e.Index) == 0 {
		k.qvis = c.cv.qcallVisible(e.Call, visible)
	}
	return k
}

// noQcallBit is e's bit of cachedFrame.noQcall if its call points at no
// queue-bridged call, or 0.
func noQcallBit(e *callstore.WatchEvent) uint64 {
	if e.Index >= 64 || e.Call == nil || hasQcall(e.Call) {
		return 0
	}
	return 1 << e.Index
}

// record returns rev's newest published frame, the head of its list, or
// nil.
func (c *encodeCache) record(rev int64) *cachedFrame {
	if p := c.slots[rev&c.mask].Load(); p != nil && p.rev == rev {
		return p
	}
	return nil
}

// lookup returns the encoding of rev's event with key k, from a frame of
// rev that holds it.
func (c *encodeCache) lookup(rev int64, k encKey) ([]byte, bool) {
	for f := c.record(rev); f != nil; f = f.prev {
		for _, e := range f.events {
			if e.key == k {
				// Capped at its end: an append to it copies it, never
				// writes into the frame.
				return f.raw.data[e.start:e.end:e.end], true
			}
		}
	}
	return nil, false
}

// lookupFrame returns the frame of p's list (a revision's newest frame,
// or nil) whose events have keys, or nil.
func lookupFrame(p *cachedFrame, epoch uint64, keys []encKey) *rawFrame {
	for f := p; f != nil; f = f.prev {
		if f.epoch == epoch && f.hasKeys(keys) {
			return &f.raw
		}
	}
	return nil
}

// hasKeys reports whether f's events have keys, in order.
func (f *cachedFrame) hasKeys(keys []encKey) bool {
	if len(f.events) != len(keys) {
		return false
	}
	for i, e := range f.events {
		if e.key != keys[i] {
			return false
		}
	}
	return true
}

// publish adds the frame out, of events (their keys and places in out),
// to rev's frames, and returns it. Uncached (a newer revision owns the
// slot), it is on its own. noQcall are the events' bits of
// cachedFrame.noQcall.
func (c *encodeCache) publish(rev int64, out []byte, epoch uint64, events []frameEvent, noQcall uint64) *rawFrame {
	f := &cachedFrame{rev: rev, epoch: epoch}
	f.raw.set(out)
	if len(events) <= len(f.small) {
		f.events = f.small[:len(events):len(events)]
		copy(f.events, events)
	} else {
		f.events = slices.Clone(events)
	}
	slot := &c.slots[rev&c.mask]
	for {
		old := slot.Load()
		switch {
		case old == nil || old.rev < rev:
			f.prev, f.noQcall = nil, noQcall
		case old.rev == rev:
			f.prev, f.noQcall = old, old.noQcall|noQcall
		default:
			return &f.raw
		}
		if slot.CompareAndSwap(old, f) {
			return &f.raw
		}
	}
}

// batchFrame returns a WatchCallsResponse{events: EventBatch{...}} frame
// of b's events as the viewer sees them: the cached frame of the same
// events in the same views if there is one (the watchers after the first
// of a view), or one built now (buildFrame). The frame is never modified
// once built (gRPC may still be writing it after SendMsg returns), so
// watchers that receive the same events share it. scratch is the
// caller's reusable slice for the event encodings.
func (c *encodeCache) batchFrame(b *callstore.Batch, epoch uint64, visible func(*callstore.Call) bool, scratch *[][]byte) *rawFrame {
	p := c.record(b.Revision)
	var noQcall uint64
	if p != nil {
		noQcall = p.noQcall
	}
	var keyArray [8]encKey
	keys := keyArray[:0]
	for i := range b.Events {
		keys = append(keys, c.key(&b.Events[i], visible, noQcall))
	}
	if f := lookupFrame(p, epoch, keys); f != nil {
		return f
	}
	return c.buildFrame(b, epoch, keys, scratch)
}

// buildFrame builds and caches the frame of b's events, whose encodings
// have keys: protobuf's wire format lets a message be assembled from the
// encodings of its fields. An encoding is copied from a frame of the
// revision that holds it, or written by eventEncoder; the frame then
// caches where each lies in it, so that the frame's bytes are the only
// copy of its fresh encodings.
func (c *encodeCache) buildFrame(b *callstore.Batch, epoch uint64, keys []encKey, scratch *[][]byte) *rawFrame {
	buf := c.bufs.Get().(*[]byte)
	written := (*buf)[:0] // the encodings not in the cache, one after another
	events := (*scratch)[:0]
	var spanArray [8][2]int
	spans := spanArray[:0] // each event's place in written; {-1, -1} when cached
	for i := range b.Events {
		if enc, ok := c.lookup(b.Revision, keys[i]); ok {
			events = append(events, enc)
			spans = append(spans, [2]int{-1, -1})
			continue
		}
		start := len(written)
		written = c.ev.appendEvent(written, &b.Events[i], keys[i].qvis, keys[i].xvis)
		events = append(events, nil) // set below: written may still move
		spans = append(spans, [2]int{start, len(written)})
	}
	inner := protowire.SizeTag(fieldBatchRevision) + protowire.SizeVarint(uint64(b.Revision)) +
		protowire.SizeTag(fieldBatchResumeToken) + protowire.SizeBytes(tokenLen)
	for i, sp := range spans {
		if sp[0] >= 0 {
			events[i] = written[sp[0]:sp[1]]
		}
		inner += protowire.SizeTag(fieldBatchEvents) + protowire.SizeBytes(len(events[i]))
	}
	out := make([]byte, 0, protowire.SizeTag(fieldResponseEvents)+protowire.SizeBytes(inner))
	out = protowire.AppendTag(out, fieldResponseEvents, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(inner))
	out = protowire.AppendTag(out, fieldBatchRevision, protowire.VarintType)
	out = protowire.AppendVarint(out, uint64(b.Revision))
	out = protowire.AppendTag(out, fieldBatchResumeToken, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(tokenLen))
	out = c.appendToken(out, epoch, b.Revision)
	var placeArray [8]frameEvent
	places := placeArray[:0] // each event's key and place in out: cached with the frame
	var noQcall uint64
	for i, e := range events {
		out = protowire.AppendTag(out, fieldBatchEvents, protowire.BytesType)
		out = protowire.AppendVarint(out, uint64(len(e)))
		at := len(out)
		out = append(out, e...)
		places = append(places, frameEvent{key: keys[i], start: uint32(at), end: uint32(len(out))})
		noQcall |= noQcallBit(&b.Events[i])
	}
	clear(events) // do not pin encodings past this frame
	*scratch = events[:0]
	*buf = written
	c.bufs.Put(buf)
	return c.publish(b.Revision, out, epoch, places, noQcall)
}
