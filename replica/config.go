package replica

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/credentials"

	"callcontrold/callstore"
	"callcontrold/pbx"
)

// Engine is the switch a leader runs: *sim.Switch is one. It is built on
// every takeover, over the replica's store, committing through the log.
type Engine interface {
	pbx.Switch
	DeviceState(name string) (pbx.DeviceState, error)
	AdoptBridges() (int, error)
	EndForeignLegs(cause int32) (int, error)
	Close()
}

// Log is how a leader's engine commits to the log: pass Commit and Sync
// to pbx.Options. Commit publishes an operation and returns before the
// stream acknowledged it, so that several are in flight; Sync waits until
// every operation committed so far is acknowledged and applied (or fails
// UNAVAILABLE): the engine calls it before it signals the driver.
type Log struct {
	Commit func(changes ...callstore.Change) (int64, error)
	// CommitRequest is Commit that also records, in the revision, the
	// client request the operation carries out: pass it to
	// pbx.Options.CommitRequest, so that a retry reaching the next leader
	// is answered from the log (requests.go).
	CommitRequest func(req *pbx.Request, changes ...callstore.Change) (int64, error)
	Sync          func() error
	// Bucket finds or creates the KV bucket Stream+"_"+suffix, where the
	// engine's channel driver keeps what the next leader needs (the sip
	// driver's registrations: the bucket "SIPREG").
	Bucket func(ctx context.Context, suffix string) (jetstream.KeyValue, error)
}

// Config configures a replica. URL and NewEngine are required.
type Config struct {
	URL       string // NATS server URL(s), comma separated
	CredsFile string // NATS credentials file (JWT + nkey); "" for none
	TLSCA     string // CA file (PEM) to verify the NATS servers; "" for the system roots
	TLSCert   string // client certificate (PEM) for NATS mTLS; with TLSKey
	TLSKey    string

	// Stream is the JetStream stream that holds the revision log; its
	// lease bucket is Stream+"_LEASE". Default "CALLCONTROLD".
	Stream string
	// Replicas is the stream's and the bucket's replication factor: 3 in
	// a NATS cluster, 1 against a single server. Default 1.
	Replicas int
	// LeaseTTL: a leader that stops renewing is replaced after about this
	// long. Default 5s.
	LeaseTTL time.Duration
	// AppendTimeout bounds one append to the log. Default 5s.
	AppendTimeout time.Duration
	// ConnectTimeout bounds reaching NATS at Open. Default 10s.
	ConnectTimeout time.Duration
	// RequestTTL and MaxRequests bound the index of the requests the log
	// applied (requests.go): a retry with the same request_id within
	// RequestTTL of the revision that applied it is answered from the log
	// by any later leader. Defaults 10m and 10000, the server's request_id
	// cache's.
	RequestTTL  time.Duration
	MaxRequests int

	// MaxRevisions, MaxAge and MaxBytes limit the log stream when Open
	// creates it (JetStream MaxMsgs, MaxAge, MaxBytes; 0: no limit): the
	// oldest revisions are dropped first. A replica that needs a revision
	// the stream dropped loads the newest snapshot and applies the tail
	// after it; a resume token older than the stream holds is refused.
	MaxRevisions int64
	MaxAge       time.Duration
	MaxBytes     int64
	// SnapshotEvery: the leader writes a snapshot of its store every this
	// many revisions (at most every half of the stream's revision limit),
	// and whenever the newest snapshot falls in the older half of what a
	// limited stream holds. Default 10000.
	SnapshotEvery int64

	// ID names this replica in the lease and the log; default
	// hostname-random.
	ID string
	// Advertise is the gRPC address followers forward control RPCs to
	// while this replica leads (host:port, reachable by the others).
	Advertise string
	// ForwardCreds secure forwarded RPCs to the leader; nil: plaintext
	// (replicas on a private network or behind a mesh that adds mTLS).
	ForwardCreds credentials.TransportCredentials

	// StoreOptions configure the replica's store; Epoch is set from the
	// log's identity.
	StoreOptions callstore.Options
	// NewEngine builds the switch on takeover; log is what it must
	// commit through (pbx.Options.Commit and Sync).
	NewEngine func(store *callstore.Store, log Log) (Engine, error)
	// KeepBridges: on takeover, the new engine adopts the calls where two
	// phones talk (pbx.Engine.AdoptBridges) instead of ending them. Only
	// for a driver that keeps no per-call state (the simulated one); a SIP
	// dialog cannot move, so with the sip driver every call ends.
	KeepBridges bool
	// DeviceStatus answers a phone's registration status on a follower
	// (GetDevice); nil: unknown.
	DeviceStatus func(device string) pbx.DeviceStatus

	Logger   *slog.Logger
	Registry prometheus.Registerer // nil: metrics not registered
}

func (c Config) withDefaults() (Config, error) {
	if c.URL == "" {
		return c, errors.New("replica: a NATS URL is required")
	}
	if c.NewEngine == nil {
		return c, errors.New("replica: NewEngine is required")
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return c, errors.New("replica: NATS client certificate and key go together")
	}
	if c.Stream == "" {
		c.Stream = "CALLCONTROLD"
	}
	if c.Replicas <= 0 {
		c.Replicas = 1
	}
	if c.Replicas > 5 {
		return c, fmt.Errorf("replica: %d stream replicas: JetStream allows 1 to 5", c.Replicas)
	}
	if err := c.CheckRetention(); err != nil {
		return c, err
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = DefaultSnapshotEvery
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.LeaseTTL, 5*time.Second)
	def(&c.AppendTimeout, 5*time.Second)
	def(&c.ConnectTimeout, 10*time.Second)
	def(&c.RequestTTL, 10*time.Minute)
	if c.MaxRequests <= 0 {
		c.MaxRequests = 10000
	}
	if c.ID == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		c.ID = host + "-" + hex.EncodeToString(b)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}

// DefaultSnapshotEvery is Config.SnapshotEvery's default.
const DefaultSnapshotEvery = 10000

// The smallest retention limits: the leader checks the stream every
// quarter lease and writes a snapshot in well under a second for a busy
// switch, so a limit must leave it that much time.
const (
	MinRetainedRevisions = 100
	MinRetainedAge       = time.Minute
	MinRetainedBytes     = 1 << 20
)

// CheckRetention reports whether the retention limits and SnapshotEvery
// are usable (Open checks them too; a command line checks them early).
func (c Config) CheckRetention() error {
	switch {
	case c.MaxRevisions < 0 || c.MaxAge < 0 || c.MaxBytes < 0 || c.SnapshotEvery < 0:
		return errors.New("replica: retention limits and SnapshotEvery cannot be negative")
	case c.MaxRevisions > 0 && c.MaxRevisions < MinRetainedRevisions:
		return fmt.Errorf("replica: a stream limit of %d revisions is too small: at least %d", c.MaxRevisions, MinRetainedRevisions)
	case c.MaxAge > 0 && c.MaxAge < MinRetainedAge:
		return fmt.Errorf("replica: a stream age limit of %v is too small: at least %v", c.MaxAge, MinRetainedAge)
	case c.MaxBytes > 0 && c.MaxBytes < MinRetainedBytes:
		return fmt.Errorf("replica: a stream limit of %d bytes is too small: at least %d", c.MaxBytes, MinRetainedBytes)
	}
	return nil
}
