package server

import (
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
)

// idempotencyCache remembers the outcome of control requests that carried
// a request_id, so a client retrying after a lost reply gets the first
// result instead of acting twice. Entries are per (login, method,
// request_id), expire after a TTL and are bounded in number (least
// recently used go first), so memory stays bounded.
//
// On a replica the cache is the leader's alone; the log carries each
// request into the revision that applied it, so that the next leader
// answers a retry from there (replay.go, package replica).
//
// A retry that arrives while the first attempt still runs waits for it.
// Outcomes a retry could change (the caller's rate limit, cancellation, an
// internal error) are not remembered.
type idempotencyCache struct {
	ttl  time.Duration
	size int
	now  func() time.Time

	mu      sync.Mutex
	entries map[idemKey]*list.Element
	lru     list.List // of *idemEntry, most recent at front
}

type idemKey struct{ login, method, id string }

type idemEntry struct {
	key         idemKey
	fingerprint [sha256.Size]byte
	done        chan struct{}
	resp        proto.Message
	err         error
	expires     time.Time
}

func newIdempotencyCache(ttl time.Duration, size int) *idempotencyCache {
	return &idempotencyCache{ttl: ttl, size: size, now: time.Now, entries: make(map[idemKey]*list.Element)}
}

// fingerprint identifies the request's content, so that one request_id
// reused for a different request is caught rather than answered with an
// unrelated result.
func fingerprint(req proto.Message) [sha256.Size]byte {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(req)
	return sha256.Sum256(b)
}

// do runs f once per key; later calls with the same key get its outcome.
func (c *idempotencyCache) do(ctx context.Context, key idemKey, req proto.Message, f func() (proto.Message, error)) (proto.Message, error, bool) {
	fp := fingerprint(req)
	now := c.now()
	c.mu.Lock()
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*idemEntry)
		if now.Before(e.expires) {
			c.lru.MoveToFront(el)
			c.mu.Unlock()
			if !bytes.Equal(e.fingerprint[:], fp[:]) {
				return nil, reusedRequestID(), false
			}
			select {
			case <-e.done:
				return e.resp, e.err, true
			case <-ctx.Done():
				return nil, toStatusError(ctx.Err()), false
			}
		}
		c.removeLocked(el)
	}
	e := &idemEntry{key: key, fingerprint: fp, done: make(chan struct{}), expires: now.Add(c.ttl)}
	c.entries[key] = c.lru.PushFront(e)
	for c.lru.Len() > c.size {
		c.removeLocked(c.lru.Back())
	}
	c.mu.Unlock()

	e.resp, e.err = f()
	if retriable(e.err) {
		c.mu.Lock()
		if el, ok := c.entries[key]; ok && el.Value == e {
			c.removeLocked(el)
		}
		c.mu.Unlock()
	}
	close(e.done)
	return e.resp, e.err, false
}

func (c *idempotencyCache) removeLocked(el *list.Element) {
	c.lru.Remove(el)
	delete(c.entries, el.Value.(*idemEntry).key)
}
