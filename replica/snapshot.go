package replica

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"callcontrold/callstore"
)

// snapshotVersion is the version of the JSON snapshot format, the first
// one. A replica refuses a snapshot of a version it does not know rather
// than guess at it; the binary format (wire.go) has versions of its own.
const snapshotVersion = 1

// snapshot is the store as of one revision of the log: every live leg,
// the uid NewUID must continue after, and the newest leader term in the
// log up to that revision. That is all a replica needs to follow the log
// from Revision+1, and all a new leader needs: the engine is rebuilt from
// the store's live legs on every takeover.
type snapshot struct {
	V        int      `json:"v"`     // 1: JSON; snapshotBinaryVersion: binary
	Epoch    uint64   `json:"epoch"` // the log's epoch: a snapshot of another log is refused
	Revision int64    `json:"revision"`
	Term     uint64   `json:"term"`
	LastUID  int64    `json:"last_uid"`
	Writer   string   `json:"writer"` // the replica that wrote it
	Calls    []opCall `json:"calls"`
}

// snapshotSlots are the two objects snapshots take turns in: a new one
// overwrites the older, so the newest is never the one being written, and
// the bucket holds two objects whatever the number of snapshots taken.
var snapshotSlots = [2]string{"snapshot-a", "snapshot-b"}

// snapshotTimeout bounds writing or reading one snapshot.
const snapshotTimeout = 30 * time.Second

// encodeSnapshot writes a snapshot in the binary format (wire.go).
func encodeSnapshot(s *snapshot, calls []*callstore.Call) ([]byte, error) {
	return encodeSnapshotBinary(s, calls), nil
}

// decodeSnapshot reads a snapshot in the binary format, or in the JSON
// format of version 1 that a bucket written before it holds.
func decodeSnapshot(data []byte) (*snapshot, []*callstore.Call, error) {
	s, calls, err := decodeSnapshotAny(data)
	if err != nil {
		return nil, nil, err
	}
	if s.Revision <= 0 {
		return nil, nil, fmt.Errorf("replica: snapshot at revision %d", s.Revision)
	}
	return s, calls, nil
}

func decodeSnapshotAny(data []byte) (*snapshot, []*callstore.Call, error) {
	if binary, err := isBinary(data, "snapshot", snapshotBinaryVersion); binary || err != nil {
		if err != nil {
			return nil, nil, err
		}
		return decodeSnapshotBinary(data[2:])
	}
	var s snapshot
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, nil, fmt.Errorf("replica: malformed snapshot: %w", err)
	}
	if s.V != snapshotVersion {
		return nil, nil, fmt.Errorf("replica: snapshot version %d, this build reads %d (JSON) and %d (binary)", s.V, snapshotVersion, snapshotBinaryVersion)
	}
	calls := make([]*callstore.Call, len(s.Calls))
	for i := range s.Calls {
		calls[i] = fromOpCall(&s.Calls[i])
	}
	return &s, calls, nil
}

func (n *Node) findOrCreateSnapshots(ctx context.Context) (jetstream.ObjectStore, error) {
	bucket := n.cfg.Stream + "_SNAPSHOT"
	obs, err := n.js.ObjectStore(ctx, bucket)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return obs, err
	}
	obs, err = n.js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      bucket,
		Description: "callcontrold snapshots of the revision log's state",
		Storage:     jetstream.FileStorage,
		Replicas:    n.cfg.Replicas,
		Compression: true,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		return n.js.ObjectStore(ctx, bucket)
	}
	return obs, err
}

// snapshotSlot is what a slot holds: the revision of its snapshot of this
// log, 0 if none (empty, or a snapshot of another log).
func (n *Node) snapshotSlot(ctx context.Context, name string) (int64, error) {
	info, err := n.snaps.GetInfo(ctx, name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if info.Metadata["epoch"] != strconv.FormatUint(n.store.Epoch(), 10) {
		return 0, nil
	}
	rev, err := strconv.ParseInt(info.Metadata["revision"], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("replica: snapshot %s: revision %q", name, info.Metadata["revision"])
	}
	return rev, nil
}

// newestSnapshot returns the slot holding the newest snapshot of this log
// and its revision ("" and 0 if there is none), and the other slot.
func (n *Node) newestSnapshot(ctx context.Context) (newest string, rev int64, other string, err error) {
	var revs [2]int64
	for i, name := range snapshotSlots {
		if revs[i], err = n.snapshotSlot(ctx, name); err != nil {
			return "", 0, "", err
		}
	}
	newest, other, rev = snapshotSlots[0], snapshotSlots[1], revs[0]
	if revs[1] > revs[0] {
		newest, other, rev = snapshotSlots[1], snapshotSlots[0], revs[1]
	}
	if rev == 0 {
		newest = ""
	}
	return newest, rev, other, nil
}

// writeSnapshot writes the store as of its current revision into the
// slot that does not hold the newest snapshot, unless a snapshot at that
// revision or later exists already. It returns the newest snapshot's
// revision.
func (n *Node) writeSnapshot(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	// applyMu: the term is the newest one in the log up to rev, no later.
	n.applyMu.Lock()
	calls, lastUID, rev := n.store.Snapshot()
	term := n.maxTerm
	n.applyMu.Unlock()
	_, newest, slot, err := n.newestSnapshot(ctx)
	if err != nil || newest >= rev {
		return newest, err
	}
	data, err := encodeSnapshot(&snapshot{Epoch: n.store.Epoch(), Revision: rev, Term: term, LastUID: lastUID, Writer: n.cfg.ID}, calls)
	if err != nil {
		return newest, err
	}
	start := time.Now()
	_, err = n.snaps.Put(ctx, jetstream.ObjectMeta{
		Name:        slot,
		Description: fmt.Sprintf("the store at revision %d: %d live legs", rev, len(calls)),
		Metadata:    map[string]string{"revision": strconv.FormatInt(rev, 10), "epoch": strconv.FormatUint(n.store.Epoch(), 10)},
	}, bytes.NewReader(data))
	if err != nil {
		return newest, fmt.Errorf("replica: write snapshot at revision %d: %w", rev, err)
	}
	n.m.snapshotsWritten.Inc()
	n.log.Info("snapshot written", "revision", rev, "legs", len(calls), "bytes", len(data), "took", time.Since(start))
	return rev, nil
}

// readSnapshot reads and decodes the snapshot in slot. The object store
// checks its digest: a snapshot overwritten while it is read fails.
func (n *Node) readSnapshot(ctx context.Context, slot string) (*snapshot, []*callstore.Call, error) {
	ctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	res, err := n.snaps.Get(ctx, slot)
	if err != nil {
		return nil, nil, fmt.Errorf("replica: read snapshot %s: %w", slot, err)
	}
	defer res.Close()
	data, err := io.ReadAll(res)
	if err != nil {
		return nil, nil, fmt.Errorf("replica: read snapshot %s: %w", slot, err)
	}
	s, calls, err := decodeSnapshot(data)
	if err != nil {
		return nil, nil, err
	}
	if s.Epoch != n.store.Epoch() {
		return nil, nil, fmt.Errorf("replica: snapshot %s is of another log (epoch %d, this log's is %d)", slot, s.Epoch, n.store.Epoch())
	}
	return s, calls, nil
}
