package main

// The connect scenario: what the HTTP side (package web: vanguard
// transcoding into the same grpc.Server) costs beside plain gRPC, on one
// in-process server, alternating the kinds in rounds so that a noisy
// neighbour hits them alike:
//
//   - unary: the control pair Hold, Talk over gRPC, over Connect with a
//     binary body (application/proto) and over Connect with JSON (what
//     curl and the console send), HTTP/1.1 keep-alive connections;
//   - streaming: WatchCalls frames delivered per second over gRPC, over
//     Connect streaming with binary frames and with JSON frames (the
//     console's), under the stream scenario's traffic drivers.
//
// Responses are read as bytes, as in the gRPC scenarios, and every
// checkEvery-th is decoded and checked.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/internal/latency"
	"callcontrold/internal/rawframe"
	"callcontrold/web"
)

type connectResult struct {
	Concurrency  int       `json:"concurrency"`
	GRPC         unaryKind `json:"grpc"`
	ConnectProto unaryKind `json:"connect_proto"`
	ConnectJSON  unaryKind `json:"connect_json"`
	// ProtoRatio and JSONRatio are Connect control RPCs/s over gRPC's.
	ProtoRatio float64 `json:"proto_ratio"`
	JSONRatio  float64 `json:"json_ratio"`

	Streams          int        `json:"streams"`
	WatchGRPC        streamKind `json:"watch_grpc"`
	WatchConnectPB   streamKind `json:"watch_connect_proto"`
	WatchConnectJSON streamKind `json:"watch_connect_json"`
	// StreamProtoRatio and StreamJSONRatio are WatchCalls frames/s over
	// Connect over gRPC's.
	StreamProtoRatio float64 `json:"stream_proto_ratio"`
	StreamJSONRatio  float64 `json:"stream_json_ratio"`
}

func runConnect(ctx context.Context, e *env, ucfg unaryConfig, scfg streamConfig) (*connectResult, error) {
	ws, err := web.Listen("127.0.0.1:0", e.srv.GRPC(), web.Config{}, nil)
	if err != nil {
		return nil, err
	}
	served := make(chan error, 1)
	go func() { served <- ws.Serve() }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ws.Shutdown(sctx, nil)
		<-served
	}()
	base := "http://" + ws.Addr().String()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: max(ucfg.concurrency, scfg.streams)}}
	defer hc.CloseIdleConnections()

	res := &connectResult{Concurrency: ucfg.concurrency, Streams: scfg.streams}
	if err := connectUnary(ctx, e, hc, base, ucfg, res); err != nil {
		return res, err
	}
	if err := connectStreams(ctx, e, hc, base, scfg, res); err != nil {
		return res, err
	}
	return res, nil
}

// controlWorker runs Hold then Talk on uid until stop, recording each RPC.
type controlWorker func(i int, uid int64, h *latency.Hist, stop *atomic.Bool) (n, errs uint64)

func connectUnary(ctx context.Context, e *env, hc *http.Client, base string, cfg unaryConfig, res *connectResult) error {
	conns, err := e.dialN(cfg.conns)
	if err != nil {
		return err
	}
	uids := make([]int64, cfg.concurrency)
	for i := range uids {
		c, err := e.upCall(ctx, loadDevice(i))
		if err != nil {
			return err
		}
		uids[i] = c.UID
	}
	kinds := []struct {
		w   controlWorker
		out *unaryKind
		h   latency.Hist
	}{
		{w: grpcControl(withToken(ctx, loadToken), conns), out: &res.GRPC},
		{w: httpControl(ctx, hc, base, false), out: &res.ConnectProto},
		{w: httpControl(ctx, hc, base, true), out: &res.ConnectJSON},
	}
	var scratch latency.Hist
	for i := range kinds {
		controlPhase(kinds[i].w, uids, cfg.warmup, &scratch)
	}
	per := cfg.duration / time.Duration(cfg.rounds)
	for range cfg.rounds {
		for i := range kinds {
			n, errs, el := controlPhase(kinds[i].w, uids, per, &kinds[i].h)
			kinds[i].out.RPCs += n
			kinds[i].out.Errors += errs
			kinds[i].out.Seconds += el.Seconds()
		}
	}
	var failed uint64
	for i := range kinds {
		out := kinds[i].out
		out.PerSecond = float64(out.RPCs) / out.Seconds
		out.Latency = kinds[i].h.Summary()
		failed += out.Errors
	}
	res.ProtoRatio = res.ConnectProto.PerSecond / res.GRPC.PerSecond
	res.JSONRatio = res.ConnectJSON.PerSecond / res.GRPC.PerSecond
	if failed > 0 {
		return fmt.Errorf("connect: %d control RPCs failed (grpc %d, connect proto %d, json %d)",
			failed, res.GRPC.Errors, res.ConnectProto.Errors, res.ConnectJSON.Errors)
	}
	return nil
}

// controlPhase runs one worker per uid for d.
func controlPhase(w controlWorker, uids []int64, d time.Duration, h *latency.Hist) (n, errs uint64, elapsed time.Duration) {
	return runFor(len(uids), d, func(i int, stop *atomic.Bool) (n, errs uint64) { return w(i, uids[i], h, stop) })
}

func grpcControl(ctx context.Context, conns []*grpc.ClientConn) controlWorker {
	return func(i int, uid int64, h *latency.Hist, stop *atomic.Bool) (n, errs uint64) {
		cc := conns[i%len(conns)]
		var raw rawframe.Msg
		reqs := []struct {
			method string
			req    proto.Message
			check  func([]byte) error
		}{
			{holdMethod, &callcontrolv1.HoldRequest{Uid: uid}, func(b []byte) error {
				return checkControl(b, &callcontrolv1.HoldResponse{}, callcontrolv1.State_STATE_HOLD)
			}},
			{talkMethod, &callcontrolv1.TalkRequest{Uid: uid}, func(b []byte) error {
				return checkControl(b, &callcontrolv1.TalkResponse{}, callcontrolv1.State_STATE_UP)
			}},
		}
		for j := 0; !stop.Load(); j++ {
			for _, r := range reqs {
				t := time.Now()
				err := cc.Invoke(ctx, r.method, r.req, &raw, rawframe.Recv)
				h.Record(time.Since(t))
				if err == nil && j%checkEvery == 0 {
					err = r.check(raw.B)
				}
				if n++; err != nil {
					errs++
				}
			}
		}
		return n, errs
	}
}

// checkEvery: one control pair in this many is decoded and checked.
const checkEvery = 1024

// httpControl sends Hold then Talk as Connect unary POSTs, binary or JSON.
func httpControl(ctx context.Context, hc *http.Client, base string, asJSON bool) controlWorker {
	contentType := "application/proto"
	marshal := func(m proto.Message) ([]byte, error) { return proto.Marshal(m) }
	unmarshal := func(b []byte, m proto.Message) error { return proto.Unmarshal(b, m) }
	if asJSON {
		contentType = "application/json"
		marshal = func(m proto.Message) ([]byte, error) { return protojson.Marshal(m) }
		unmarshal = func(b []byte, m proto.Message) error { return protojson.Unmarshal(b, m) }
	}
	return func(_ int, uid int64, h *latency.Hist, stop *atomic.Bool) (n, errs uint64) {
		hold, err1 := marshal(&callcontrolv1.HoldRequest{Uid: uid})
		talk, err2 := marshal(&callcontrolv1.TalkRequest{Uid: uid})
		if err := errors.Join(err1, err2); err != nil {
			return 1, 1
		}
		var buf bytes.Buffer
		post := func(method string, body []byte) error {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+method, bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", contentType)
			req.Header.Set("Authorization", "Bearer "+loadToken)
			resp, err := hc.Do(req)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			buf.Reset()
			_, err = buf.ReadFrom(resp.Body)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("%s: HTTP %d: %s", method, resp.StatusCode, buf.Bytes())
			}
			return err
		}
		for j := 0; !stop.Load(); j++ {
			for _, r := range []struct {
				method string
				body   []byte
				resp   interface {
					proto.Message
					GetCall() *callcontrolv1.Call
				}
				want callcontrolv1.State
			}{
				{holdMethod, hold, &callcontrolv1.HoldResponse{}, callcontrolv1.State_STATE_HOLD},
				{talkMethod, talk, &callcontrolv1.TalkResponse{}, callcontrolv1.State_STATE_UP},
			} {
				t := time.Now()
				err := post(r.method, r.body)
				h.Record(time.Since(t))
				if err == nil && j%checkEvery == 0 {
					if err = unmarshal(buf.Bytes(), r.resp); err == nil && r.resp.GetCall().GetState() != r.want {
						err = fmt.Errorf("connect: call %d is %v, want %v", uid, r.resp.GetCall().GetState(), r.want)
					}
				}
				if n++; err != nil {
					errs++
				}
			}
		}
		return n, errs
	}
}

// table adds the scenario's rows: gRPC is the baseline column.
func (c *connectResult) table(tw io.Writer) {
	if c == nil {
		return
	}
	for _, k := range []struct {
		name  string
		kind  unaryKind
		ratio float64
	}{{"Connect proto", c.ConnectProto, c.ProtoRatio}, {"Connect JSON", c.ConnectJSON, c.JSONRatio}} {
		fmt.Fprintf(tw, "%s c=%d\tHold+Talk RPCs/s\t%.0f gRPC (p50 %.3f, p99 %.3f)\t%.0f (%.2f×)\t%.3f / %.3f\t\n",
			k.name, c.Concurrency, c.GRPC.PerSecond, c.GRPC.Latency.P50, c.GRPC.Latency.P99, k.kind.PerSecond, k.ratio, k.kind.Latency.P50, k.kind.Latency.P99)
	}
	fmt.Fprintf(tw, "WatchCalls x%d\tframes/s\t%.0f gRPC\t%.0f Connect proto (%.2f×), %.0f Connect JSON (%.2f×)\t\t\n",
		c.Streams, c.WatchGRPC.PerSecond, c.WatchConnectPB.PerSecond, c.StreamProtoRatio, c.WatchConnectJSON.PerSecond, c.StreamJSONRatio)
}
