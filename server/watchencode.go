package server

import (
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
}

// revEncodings are the encodings of one revision's events, and the whole
// frames built from them; never modified once published.
type revEncodings struct {
	rev     int64
	entries []encEntry
	frames  []frameEntry
}

// frameEntry is a finished frame and the event encodings it was built
// from (identified by their first byte: the cache hands out one slice per
// variant). Watchers that receive the same events in the same views — all
// the unfiltered ones of one login, say — send the very same bytes: gRPC
// only reads a message, so one frame can go out on many streams.
type frameEntry struct {
	parts []*byte
	frame *rawFrame
}

type encEntry struct {
	index int
	view  callstore.ViewChange
	qvis  bool   // the viewer may see the qcall reference
	xvis  uint64 // which xfer_data legs the viewer may see
	b     []byte
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

func (c *encodeCache) lookup(rev int64, index int, view callstore.ViewChange, qvis bool, xvis uint64) ([]byte, bool) {
	p := c.slots[rev&c.mask].Load()
	if p == nil || p.rev != rev {
		return nil, false
	}
	for _, e := range p.entries {
		if e.index == index && e.view == view && e.qvis == qvis && e.xvis == xvis {
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
		case old.rev == rev:
			// Full slice expressions: appends must copy, never write
			// into a published array.
			next.entries = old.entries[:len(old.entries):len(old.entries)]
			next.frames = old.frames[:len(old.frames):len(old.frames)]
		default:
			return
		}
		f(next)
		if slot.CompareAndSwap(old, next) {
			return
		}
	}
}

func (c *encodeCache) lookupFrame(rev int64, parts [][]byte) *rawFrame {
	p := c.slots[rev&c.mask].Load()
	if p == nil || p.rev != rev {
		return nil
	}
next:
	for _, fe := range p.frames {
		if len(fe.parts) != len(parts) {
			continue
		}
		for i, b := range parts {
			if fe.parts[i] != &b[0] {
				continue next
			}
		}
		return fe.frame
	}
	return nil
}

// publish adds a frame, and the event encodings first written for it, to
// rev's encodings: one copy of them per frame, not one per event.
func (c *encodeCache) publish(rev int64, entries []encEntry, parts [][]byte, frame *rawFrame) {
	fe := frameEntry{parts: make([]*byte, len(parts)), frame: frame}
	for i, b := range parts {
		fe.parts[i] = &b[0]
	}
	c.update(rev, func(next *revEncodings) {
		next.entries = append(next.entries, entries...)
		next.frames = append(next.frames, fe)
	})
}

// event returns e's CallEvent encoding as the viewer sees it, from the
// cache or written by eventEncoder; fresh says it was written here, for
// the caller to publish. The bytes are shared: never modify them.
func (c *encodeCache) event(rev int64, e *callstore.WatchEvent, visible func(*callstore.Call) bool) (entry encEntry, fresh bool) {
	entry = encEntry{index: e.Index, view: e.View, qvis: c.cv.qcallVisible(e.Call, visible), xvis: c.cv.xferVisible(e.Xfer, visible)}
	if b, ok := c.lookup(rev, entry.index, entry.view, entry.qvis, entry.xvis); ok {
		entry.b = b
		return entry, false
	}
	buf := c.bufs.Get().(*[]byte)
	enc := c.ev.appendEvent((*buf)[:0], e, entry.qvis, entry.xvis)
	entry.b = make([]byte, len(enc)) // the entry's own: the buffer goes back for reuse
	copy(entry.b, enc)
	*buf = enc
	c.bufs.Put(buf)
	return entry, true
}

// batchFrame builds a WatchCallsResponse{events: EventBatch{...}} frame
// from cached event encodings: protobuf's wire format lets a message be
// assembled from the encodings of its fields. scratch is the caller's
// reusable slice for the event encodings. The frame is never modified once
// built (gRPC may still be writing it after SendMsg returns), so watchers
// that receive the same events share it.
func (c *encodeCache) batchFrame(b *callstore.Batch, epoch uint64, visible func(*callstore.Call) bool, scratch *[][]byte) *rawFrame {
	events := (*scratch)[:0]
	var freshArray [4]encEntry
	fresh := freshArray[:0] // the encodings written for this frame: published with it
	inner := protowire.SizeTag(fieldBatchRevision) + protowire.SizeVarint(uint64(b.Revision)) +
		protowire.SizeTag(fieldBatchResumeToken) + protowire.SizeBytes(tokenLen)
	for i := range b.Events {
		e, isFresh := c.event(b.Revision, &b.Events[i], visible)
		if isFresh {
			fresh = append(fresh, e)
		}
		events = append(events, e.b)
		inner += protowire.SizeTag(fieldBatchEvents) + protowire.SizeBytes(len(e.b))
	}
	defer func() {
		clear(events) // do not pin encodings past this frame
		*scratch = events[:0]
	}()
	// A frame of a fresh encoding cannot be cached: frames know their
	// events by address.
	if len(fresh) == 0 {
		if f := c.lookupFrame(b.Revision, events); f != nil {
			return f
		}
	}
	out := make([]byte, 0, protowire.SizeTag(fieldResponseEvents)+protowire.SizeBytes(inner))
	out = protowire.AppendTag(out, fieldResponseEvents, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(inner))
	out = protowire.AppendTag(out, fieldBatchRevision, protowire.VarintType)
	out = protowire.AppendVarint(out, uint64(b.Revision))
	out = protowire.AppendTag(out, fieldBatchResumeToken, protowire.BytesType)
	out = protowire.AppendVarint(out, uint64(tokenLen))
	out = resumeToken{Epoch: epoch, Revision: b.Revision}.appendTo(out)
	for _, e := range events {
		out = protowire.AppendTag(out, fieldBatchEvents, protowire.BytesType)
		out = protowire.AppendBytes(out, e)
	}
	f := newRawFrame(out)
	c.publish(b.Revision, fresh, events, f)
	return f
}
