package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"

	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/internal/benchserver"
	"callcontrold/internal/rawframe"
	"callcontrold/pbx/sim"
	ccserver "callcontrold/server"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/wirefield"
)

// callcontrold, as cmd/callbench builds it: the real store, simulated
// switch, authenticator, interceptor chain and services (benchserver: the
// limits off, logs discarded at level info), and the history callcontrold
// retains by default (--history-size 100000: 10 s at 10k changes/s; etcd
// keeps all of it until compacted). The driver commits straight to the
// store, as the switch does.

const (
	peerCallcontrold = "callcontrold"
	adminToken       = "bench-admin"
	fanoutDevices    = 1000 // SIP/f0000..: one filtered watcher each
	ccHistorySize    = 100000
)

func fanoutDevice(i int) string { return fmt.Sprintf("SIP/f%04d", i) }

// benchDirectoryYAML: company default, an admin (who watches) and the user
// owning the fan-out devices.
func benchDirectoryYAML() []byte {
	var b strings.Builder
	h := sha256.Sum256([]byte(adminToken))
	fmt.Fprintf(&b, "ring_timeout: 1h\ncompanies:\n  - {name: default, display_name: Default company}\nusers:\n")
	fmt.Fprintf(&b, "  - {id: 1, login: admin, name: Bench admin, role: admin, company: default, token_sha256: [%s]}\n", hex.EncodeToString(h[:]))
	fmt.Fprintf(&b, "  - {id: 2, login: load, name: Load user, role: user, company: default}\ndevices:\n")
	for i := range fanoutDevices {
		fmt.Fprintf(&b, "  - {name: %s, display_name: Fan-out line %d, company: default, owner: load, features: [answer, hold, talk]}\n", fanoutDevice(i), i)
	}
	return []byte(b.String())
}

type ccServer struct {
	store *callstore.Store
	sim   *sim.Switch
	srv   *benchserver.Server
}

func startCallcontrold() (server, error) {
	dir, err := directory.Parse(benchDirectoryYAML(), "peerbench directory")
	if err != nil {
		return nil, err
	}
	log := benchserver.Logger()
	s := &ccServer{store: callstore.New(callstore.Options{HistorySize: ccHistorySize})}
	s.sim = sim.New(dir, s.store, sim.Options{Logger: log})
	s.srv, err = benchserver.New(ccserver.Config{}, ccserver.Deps{
		Store: s.store, Directory: dir, Switch: s.sim, Devices: s.sim, Simulator: s.sim, Logger: log,
	})
	if err == nil {
		err = s.srv.ServeLoopback()
	}
	if err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *ccServer) addr() string  { return s.srv.Addr() }
func (s *ccServer) newUID() int64 { return s.store.NewUID() }
func (s *ccServer) writers() int  { return 1 }

func (s *ccServer) put(ch callstore.Change) error {
	ch.Call.Name = stamp()
	_, err := s.store.Commit(ch)
	return err
}

func (s *ccServer) close() {
	if s.srv != nil {
		s.srv.Close()
	}
	s.sim.Close()
	s.store.Close()
}

// ccClient watches callcontrold: WatchCalls as admin, filtered to one
// device or unfiltered.
type ccClient struct{}

// The WatchCallsResponse frames the client reads (oneof field numbers),
// and the path down to an event's Call.name (wirefield: the numbers are
// checked against the generated descriptors there).
const (
	frameStarted     = wirefield.ResponseStarted
	frameSnapshot    = wirefield.ResponseSnapshot
	frameSnapshotEnd = wirefield.ResponseSnapshotEnd
	frameEvents      = wirefield.ResponseEvents
)

func (ccClient) open(ctx context.Context, cc *grpc.ClientConn, device int, snapshot bool) (grpc.ClientStream, error) {
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+adminToken)
	req := &callcontrolv1.WatchCallsRequest{SkipSnapshot: !snapshot}
	if device >= 0 {
		req.Filter = &callcontrolv1.CallFilter{Devices: []string{fanoutDevice(device)}}
	}
	s, err := rawframe.ServerStream(ctx, cc, callcontrolv1.CallControlService_WatchCalls_FullMethodName, req)
	if err != nil {
		return nil, err
	}
	// started, then (with a snapshot) its chunks and its end.
	want := protowire.Number(frameStarted)
	if snapshot {
		want = frameSnapshotEnd
	}
	var m rawframe.Msg
	for {
		if err := s.RecvMsg(&m); err != nil {
			return nil, err
		}
		kind, _, err := rawframe.Oneof(m.B)
		if err != nil {
			return nil, err
		}
		if kind == want {
			return s, nil
		}
		if kind != frameStarted && kind != frameSnapshot {
			return nil, fmt.Errorf("watch: frame %d before the snapshot's end", kind)
		}
	}
}

func (ccClient) events(b []byte, fn func(at int64)) error {
	kind, batch, err := rawframe.Oneof(b)
	if err != nil || kind != frameEvents {
		return err
	}
	return rawframe.EachField(batch, wirefield.BatchEvents, func(ev []byte) error {
		call, err := rawframe.SubField(ev, wirefield.EventCall)
		if err != nil {
			return err
		}
		name, err := rawframe.SubField(call, wirefield.CallName)
		fn(rawframe.Decimal(name))
		return err
	})
}
