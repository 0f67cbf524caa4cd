package replica

import (
	"context"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// Bucket finds or creates the KV bucket Stream+"_"+suffix, replicated as
// the log is, for state a leader's channel driver keeps for the next
// leader (Log.Bucket), and that followers may read.
func (n *Node) Bucket(ctx context.Context, suffix string) (jetstream.KeyValue, error) {
	name := n.cfg.Stream + "_" + suffix
	kv, err := n.js.KeyValue(ctx, name)
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	kv, err = n.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      name,
		Description: "callcontrold: the leader's channel driver state",
		Storage:     jetstream.FileStorage,
		Replicas:    n.cfg.Replicas,
	})
	if errors.Is(err, jetstream.ErrBucketExists) { // another replica created it meanwhile
		return n.js.KeyValue(ctx, name)
	}
	return kv, err
}
