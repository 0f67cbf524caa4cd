package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/embed"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"callcontrold/callstore"
	"callcontrold/internal/rawframe"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/wirefield"
)

// etcd, embedded (go.etcd.io/etcd/server/v3/embed): one member, loopback
// client and peer URLs on ephemeral ports, data in a temporary directory,
// fsync off (UnsafeNoFsync) so that, like callcontrold's in-memory store,
// a commit does not wait for the disk. Otherwise etcd's defaults
// (snapshot every 10,000 entries, 100 ms backend batches). The driver
// writes through EtcdServer.Put in the same process (raft, apply, mvcc,
// watch notification: etcd's whole write path, without a client
// connection), with enough puts in flight to keep the rate.
//
// A leg is one key, /calls/<device>/<uid>; its value is the leg as a
// callcontrol.v1.Call message, the same fields callcontrold sends for it,
// so the events are of the same size (the report prints both sizes). A
// device watcher watches the prefix /calls/<device>/, an unfiltered one
// /calls/.

const (
	peerEtcd     = "etcd"
	etcdPrefix   = "/calls/"
	etcdWriters  = 256
	etcdPutLimit = 10 * time.Second
)

type etcdServer struct {
	e   *embed.Etcd
	uid atomic.Int64
}

func startEtcd(dir string) (server, error) {
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.UnsafeNoFsync = true
	// etcd logs errors on an ordinary shutdown too: its log goes to a file,
	// shown if it does not start.
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{filepath.Join(dir, "etcd.log")}
	loop := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{loop}, []url.URL{loop}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{loop}, []url.URL{loop}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	e, err := embed.StartEtcd(cfg)
	if err == nil {
		select {
		case <-e.Server.ReadyNotify():
			return &etcdServer{e: e}, nil
		case err = <-e.Err():
		case <-time.After(30 * time.Second):
			err = errors.New("not ready after 30s")
		}
		e.Close()
	}
	log, _ := os.ReadFile(cfg.LogOutputs[0])
	return nil, fmt.Errorf("etcd: %w; its log:\n%s", err, log[max(0, len(log)-4096):])
}

func (s *etcdServer) addr() string  { return s.e.Clients[0].Addr().String() }
func (s *etcdServer) newUID() int64 { return s.uid.Add(1) }
func (s *etcdServer) writers() int  { return etcdWriters }
func (s *etcdServer) close()        { s.e.Close() }

func (s *etcdServer) put(ch callstore.Change) error {
	c := *ch.Call
	c.Name = stamp()
	v, err := proto.Marshal(legMessage(&c))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), etcdPutLimit)
	defer cancel()
	_, err = s.e.Server.Put(ctx, &pb.PutRequest{Key: []byte(etcdKey(c.Device, c.UID)), Value: v})
	return err
}

func etcdKey(device string, uid int64) string {
	return fmt.Sprintf("%s%s/%d", etcdPrefix, device, uid)
}

// legMessage is the leg as callcontrold's API shows it (the fields this
// benchmark's legs set).
func legMessage(c *callstore.Call) *callcontrolv1.Call {
	m := &callcontrolv1.Call{
		Uid: c.UID, Id: c.ID, Cid: c.CID, Device: c.Device, DeviceCompany: c.DeviceCompany,
		Name: c.Name, Number: c.Number, Stamp: timestamppb.New(time.UnixMilli(c.StampMillis)),
		Owner:   &callcontrolv1.Contact{Id: c.OwnerID, Login: c.OwnerLogin, Name: "Load user", Company: "default"},
		OwnerId: c.OwnerID, Cause: c.Cause, CauseTxt: c.CauseText(),
		Party: callcontrolv1.Party(c.Party), State: callcontrolv1.State(c.State),
		NrState: callcontrolv1.NearEndState(c.NRState),
	}
	if c.StartMillis != 0 {
		m.Start = timestamppb.New(time.UnixMilli(c.StartMillis))
	}
	for f := callstore.Features(1); f != 0 && f <= c.Features; f <<= 1 {
		if c.Features&f != 0 {
			m.Features = append(m.Features, callcontrolv1.Feature(f))
		}
	}
	return m
}

// etcdWatchRequest is the WatchRequest creating a watch of device's
// prefix (device >= 0) or of every leg (-1).
func etcdWatchRequest(device int) []byte {
	key := etcdPrefix
	if device >= 0 {
		key += fanoutDevice(device) + "/"
	}
	end := []byte(key)
	end[len(end)-1]++ // the prefix's range end: "/" + 1 = "0"
	var create []byte
	create = protowire.AppendTag(create, 1, protowire.BytesType)
	create = protowire.AppendBytes(create, []byte(key))
	create = protowire.AppendTag(create, 2, protowire.BytesType)
	create = protowire.AppendBytes(create, end)
	var req []byte
	req = protowire.AppendTag(req, etcdCreateRequest, protowire.BytesType)
	return protowire.AppendBytes(req, create)
}

// etcdClient watches etcd through its raw gRPC watch API, one Watch stream
// per watcher (as many streams as callcontrold's watchers), requests
// encoded and responses read with protowire like callcontrold's.
type etcdClient struct{}

var etcdWatchDesc = &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}

const etcdWatchMethod = "/etcdserverpb.Watch/Watch"

// The fields the client writes and reads: WatchRequest.create_request (1)
// {key 1, range_end 2}; WatchResponse {created 3, canceled 4,
// cancel_reason 6, events 11}; Event.kv (2); KeyValue.value (5).
const (
	etcdCreateRequest = 1
	etcdCreated       = 3
	etcdCanceled      = 4
	etcdCancelReason  = 6
	etcdEvents        = 11
)

func (etcdClient) open(ctx context.Context, cc *grpc.ClientConn, device int, _ bool) (grpc.ClientStream, error) {
	req := etcdWatchRequest(device)
	s, err := cc.NewStream(ctx, etcdWatchDesc, etcdWatchMethod, rawframe.Recv)
	if err != nil {
		return nil, err
	}
	if err := s.SendMsg(&rawframe.Msg{B: req}); err != nil {
		return nil, err
	}
	var m rawframe.Msg
	if err := s.RecvMsg(&m); err != nil {
		return nil, err
	}
	created, err := rawframe.VarintField(m.B, etcdCreated)
	if err == nil && created != 1 {
		err = errors.New("etcd watch: first response is not created")
	}
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (etcdClient) events(b []byte, fn func(at int64)) error {
	if c, err := rawframe.VarintField(b, etcdCanceled); err != nil || c == 1 {
		reason, _ := rawframe.SubField(b, etcdCancelReason)
		return errors.Join(err, fmt.Errorf("etcd watch canceled: %s", reason))
	}
	return rawframe.EachField(b, etcdEvents, func(ev []byte) error {
		kv, err := rawframe.SubField(ev, 2)
		if err != nil {
			return err
		}
		value, err := rawframe.SubField(kv, 5)
		if err != nil {
			return err
		}
		name, err := rawframe.SubField(value, wirefield.CallName)
		fn(rawframe.Decimal(name))
		return err
	})
}
