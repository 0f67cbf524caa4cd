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
// immutable entry lists that writers replace with compare-and-swap. A
// newer revision takes over its slot; watchers replaying older history
// simply encode again.
type encodeCache struct {
	cv    *converter    // decides what the viewer may see
	ev    *eventEncoder // writes the events' bytes
	bufs  sync.Pool     // *[]byte: eventEncoder's buffers, one per concurrent encoding
	slots []atomic.Pointer[revEncodings]
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

// revEncodings are the encodings of one revision's events, and the whole
// frames built from them; never modified once published.
type revEncodings struct {
	rev     int64
	entries []encEntry     // in entryArr while they fit
	frames  []*cachedFrame // in frameArr while they fit
	// noQcall has bit i set when the call of the commit's event i (i < 64)
	// points at no queue-bridged call: its key's qvis is false for every
	// viewer, and a watcher after the first finds the frame without
	// reading the call (a value another processor committed: a cache miss
	// per event, per watcher).
	noQcall uint64
	// Room for a revision's usual encodings, one frame of up to two fresh
	// events (every watcher of one view), in the record itself: one
	// allocation per update rather than three. frame is the frame the
	// update adds (publish): each record adds one.
	entryArr [2]encEntry
	frameArr [1]*cachedFrame
	frame    cachedFrame
}

// encKey identifies one encoding of a revision's event: which event (its
// position in the commit), how it moves the viewer's view, and which of
// the calls it points at the viewer may see. Within a revision, equal keys
// mean equal bytes. It is 16 bytes (a commit has far fewer than 2^31
// changes): a revision's record holds six keys, and every watcher after
// the first compares a frame's keys with its own.
type encKey struct {
	index int32
	view  callstore.ViewChange
	qvis  bool   // the viewer may see the qcall reference
	xvis  uint64 // which xfer_data legs the viewer may see
}

type encEntry struct {
	key encKey
	b   []byte
}

// cachedFrame is a finished frame and the keys of the events it holds, in
// order. Watchers that receive the same events in the same views — all
// the unfiltered ones of one login, say — send the very same bytes: gRPC
// only reads a message, so one frame can go out on many streams. Such a
// watcher finds the frame by its events' keys alone, without looking up
// or touching the events' bytes. The frame's header and the keys of a
// frame of up to four events live in the revision's record that added
// the frame (revEncodings.frame): no allocation of their own.
type cachedFrame struct {
	raw   rawFrame
	epoch uint64   // the resume token's, in the frame
	keys  []encKey // small[:n], or an array of their own past len(small)
	small [4]encKey
}

func newEncodeCache(cv *converter, window int) *encodeCache {
	n := 64 // a power of two between 64 and 4096 covering the window
	for n < window && n < 4096 {
		n *= 2
	}
	c := &encodeCache{cv: cv, ev: newEventEncoder(cv), slots: make([]atomic.Pointer[revEncodings], n), mask: int64(n - 1)}
	c.bufs.New = func() any { return new([]byte) }
	return c
}

// key returns the key of e's encoding as the viewer sees it; noQcall is
// the revision's record's (revEncodings.noQcall), or 0.
func (c *encodeCache) key(e *callstore.WatchEvent, visible func(*callstore.Call) bool, noQcall uint64) encKey {
	k := encKey{index: int32(e.Index), view: e.View, xvis: c.cv.xferVisible(e.Xfer, visible)}
	if e.Index >= 64 || noQcall&(1<<e.Index) == 0 {
		k.qvis = c.cv.qcallVisible(e.Call, visible)
	}
	return k
}

// noQcallBit is e's bit of revEncodings.noQcall if its call points at no
// queue-bridged call, or 0.
func noQcallBit(e *callstore.WatchEvent) uint64 {
	if e.Index >= 64 || e.Call == nil || hasQcall(e.Call) {
		return 0
	}
	return 1 << e.Index
}

// record returns rev's published encodings, or nil.
func (c *encodeCache) record(rev int64) *revEncodings {
	if p := c.slots[rev&c.mask].Load(); p != nil && p.rev == rev {
		return p
	}
	return nil
}

func (c *encodeCache) lookup(rev int64, k encKey) ([]byte, bool) {
	p := c.record(rev)
	if p == nil {
		return nil, false
	}
	for _, e := range p.entries {
		if e.key == k {
			return e.b, true
		}
	}
	return nil, false
}

// update publishes a copy of rev's encodings changed by f, unless a newer
// revision owns the slot (then this one stays uncached).
func (c *encodeCache) update(rev int64, f func(next *revEncodings)) {
	slot := &c.slots[rev&c.mask]
	for {
		old := slot.Load()
		next := &revEncodings{rev: rev}
		switch {
		case old == nil || old.rev < rev:
			next.entries, next.frames = next.entryArr[:0], next.frameArr[:0]
		case old.rev == rev:
			next.entries = carry(old.entries, next.entryArr[:])
			next.frames = carry(old.frames, next.frameArr[:])
			next.noQcall = old.noQcall
		default:
			return
		}
		f(next)
		if slot.CompareAndSwap(old, next) {
			return
		}
	}
}

// carry returns a published record's list for its copy: in room (the
// copy's own array) if it fits, else the published array with its
// capacity cut at its length, so that appends copy it, never write into
// it.
func carry[T any](old, room []T) []T {
	if len(old) <= len(room) {
		return room[:copy(room, old)]
	}
	return old[:len(old):len(old)]
}

// lookupFrame returns the frame of p (a revision's record, or nil) whose
// events have keys, or nil.
func lookupFrame(p *revEncodings, epoch uint64, keys []encKey) *rawFrame {
	if p == nil {
		return nil
	}
	for _, f := range p.frames {
		if f.epoch == epoch && slices.Equal(f.keys, keys) {
			return &f.raw
		}
	}
	return nil
}

// publish adds the frame out of events with keys, and the event
// encodings first written for it, to rev's encodings (one copy of them
// per frame, not one per event), and returns the frame. The frame lives
// in the record that adds it (revEncodings.frame); uncached (a newer
// revision owns the slot), on its own. noQcall are the events' bits of
// revEncodings.noQcall.
func (c *encodeCache) publish(rev int64, entries []encEntry, out []byte, epoch uint64, keys []encKey, noQcall uint64) *rawFrame {
	var frame *cachedFrame
	c.update(rev, func(next *revEncodings) {
		frame = &next.frame
		frame.set(out, epoch, keys)
		next.entries = append(next.entries, entries...)
		next.frames = append(next.frames, frame)
		next.noQcall |= noQcall
	})
	if frame == nil {
		frame = new(cachedFrame)
		frame.set(out, epoch, keys)
	}
	return &frame.raw
}

// set makes f the frame out of events with keys.
func (f *cachedFrame) set(out []byte, epoch uint64, keys []encKey) {
	f.raw.set(out)
	f.epoch = epoch
	if len(keys) <= len(f.small) {
		f.keys = f.small[:len(keys):len(keys)]
		copy(f.keys, keys)
	} else {
		f.keys = slices.Clone(keys)
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
// encodings of its fields. An encoding is taken from the cache, or
// written by eventEncoder and then cached where it lies in the frame, so
// that the frame and its fresh encodings are one allocation.
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
	var freshArray [4]encEntry
	fresh := freshArray[:0] // the encodings written for this frame: cached with it
	var noQcall uint64
	for i, e := range events {
		out = protowire.AppendTag(out, fieldBatchEvents, protowire.BytesType)
		out = protowire.AppendVarint(out, uint64(len(e)))
		at := len(out)
		out = append(out, e...)
		if spans[i][0] >= 0 {
			fresh = append(fresh, encEntry{key: keys[i], b: out[at:len(out):len(out)]})
		}
		noQcall |= noQcallBit(&b.Events[i])
	}
	clear(events) // do not pin encodings past this frame
	*scratch = events[:0]
	*buf = written
	c.bufs.Put(buf)
	return c.publish(b.Revision, fresh, out, epoch, keys, noQcall)
}
