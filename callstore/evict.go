package callstore

import "container/heap"

// lagHeap holds the lagging watchers ordered by the next revision they
// need, so that a commit which pushes the oldest retained revision past a
// watcher finds it at once, without scanning every watcher. A consumer
// that stopped reading never calls Drain, so the committer is the only one
// that can notice it has fallen out of the history.
//
// Guarded by the store's write lock. A watcher's key may be lower than its
// real next revision (catchUp advances next under the read lock and cannot
// touch the heap), never higher; evictPassedLocked re-reads the real one
// before acting, so a stale key costs a re-key, never a wrong eviction. A
// watcher that caught up stays in the heap until it surfaces.
type lagHeap []*Watcher

func (h lagHeap) Len() int           { return len(h) }
func (h lagHeap) Less(i, j int) bool { return h[i].lagKey < h[j].lagKey }
func (h lagHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].lagIdx, h[j].lagIdx = int32(i), int32(j)
}

// Push and Pop implement heap.Interface; use add and remove.
func (h *lagHeap) Push(x any) {
	w := x.(*Watcher)
	w.lagIdx = int32(len(*h))
	*h = append(*h, w)
}

func (h *lagHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	w.lagIdx = -1
	return w
}

// add enters w, which needs revision next, unless it is there already
// (then its key is lower than next, which is safe).
func (h *lagHeap) add(w *Watcher, next int64) {
	if w.lagIdx >= 0 {
		return
	}
	w.lagKey = next
	heap.Push(h, w)
}

func (h *lagHeap) remove(w *Watcher) {
	if w.lagIdx >= 0 {
		heap.Remove(h, int(w.lagIdx))
	}
}

// evictPassedLocked ends every lagging watcher whose next revision is no
// longer retained (at or before oldest) with a *CompactedError, drops its
// queue and calls its Evicted hook. Called by Commit with s.mu held for
// writing, after the history advanced; costs nothing while the oldest
// lagging watcher is still in the history.
func (s *Store) evictPassedLocked(oldest int64) {
	for len(s.laggers) > 0 && s.laggers[0].lagKey <= oldest {
		w := s.laggers[0]
		w.mu.Lock()
		lagging, next := w.lagging && w.err == nil, w.next
		w.mu.Unlock()
		switch {
		case !lagging:
			heap.Pop(&s.laggers)
		case next > oldest:
			w.lagKey = next
			heap.Fix(&s.laggers, 0)
		default:
			s.evictLocked(w, &CompactedError{Oldest: oldest})
		}
	}
}

// evictLocked ends the lagging watcher w with err, frees its queue and
// tells its owner. s.mu is held for writing.
func (s *Store) evictLocked(w *Watcher, err error) {
	w.mu.Lock()
	w.err = err
	w.endRev = w.next - 1
	w.lagging = false
	s.nlag.Add(-1)
	clear(w.queue)
	w.queue = nil
	w.mu.Unlock()
	s.unregisterLocked(w)
	w.signal()
	if w.evicted != nil {
		w.evicted(err)
	}
}
