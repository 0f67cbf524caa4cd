package replica

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	callcontrolv1 "callcontrold/gen/callcontrol/v1"
)

// Metadata the replicas exchange on a forwarded call.
const (
	// forwardedHeader marks a call a follower forwarded (its id): the
	// leader never forwards it again, so a lease that just moved cannot
	// bounce a call between replicas.
	forwardedHeader = "callcontrold-forwarded-by"
	// revisionHeader is the leader's revision after the call: the
	// follower answers once its own store has reached it, so a client
	// that reads from the follower next sees its own write.
	revisionHeader = "callcontrold-revision"
)

// readYourWriteWait bounds how long a follower waits for its store to
// reach the leader's revision before answering a forwarded call anyway.
const readYourWriteWait = 2 * time.Second

// isControl reports whether a unary method changes calls: those run on
// the leader. Reads (ListCalls, GetCall, DeviceService) and WatchCalls are
// served by every replica from its own store.
func isControl(fullMethod string) bool {
	svc, method, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	switch {
	case !ok:
		return false
	case svc == callcontrolv1.SimulatorService_ServiceDesc.ServiceName:
		return true
	case svc == callcontrolv1.CallControlService_ServiceDesc.ServiceName:
		return method != "ListCalls" && method != "GetCall"
	}
	return false
}

// UnaryInterceptor forwards control RPCs that reach a follower to the
// leader, with the caller's metadata (so the leader authenticates the
// same principal) and request (same request_id), and returns the leader's
// answer unchanged (same errors). It must run before authentication and
// rate limiting, which the leader applies. With no leader known, or for a
// call forwarded to a replica that no longer leads, the call runs here
// and the switch answers UNAVAILABLE.
func (n *Node) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !isControl(info.FullMethod) {
			return handler(ctx, req)
		}
		md, _ := metadata.FromIncomingContext(ctx)
		if n.Leading() {
			resp, err := handler(ctx, req)
			if err == nil && len(md.Get(forwardedHeader)) > 0 {
				_ = grpc.SetHeader(ctx, metadata.Pairs(revisionHeader, strconv.FormatInt(n.store.Revision(), 10)))
			}
			return resp, err
		}
		_, addr := n.Leader()
		if addr == "" { // between terms, or not looked up yet: ask the lease now
			lctx, cancel := context.WithTimeout(ctx, n.cfg.LeaseTTL/4)
			n.lookupLeader(lctx)
			cancel()
			_, addr = n.Leader()
		}
		if addr == "" || len(md.Get(forwardedHeader)) > 0 {
			return handler(ctx, req)
		}
		return n.forward(ctx, addr, md, info, req, handler)
	}
}

// forward invokes the method on the leader. If it cannot even try (no
// response type, no connection), the call runs here instead, where the
// switch answers UNAVAILABLE through the server's error mapping.
func (n *Node) forward(ctx context.Context, addr string, md metadata.MD, info *grpc.UnaryServerInfo, req any, handler grpc.UnaryHandler) (any, error) {
	method := info.FullMethod
	reply, err := responseFor(method)
	if err != nil {
		n.log.Error("cannot forward", "method", method, "error", err)
		return handler(ctx, req)
	}
	conn, err := n.fwd.conn(addr, n.cfg.ForwardCreds)
	if err != nil {
		n.log.Warn("cannot forward", "leader", addr, "error", err)
		return handler(ctx, req)
	}
	out := metadata.MD{}
	for k, v := range md {
		if strings.HasPrefix(k, ":") || strings.HasPrefix(k, "grpc-") || k == "content-type" || k == "user-agent" {
			continue
		}
		out[k] = v
	}
	out.Set(forwardedHeader, n.cfg.ID)
	var hdr metadata.MD
	err = conn.Invoke(metadata.NewOutgoingContext(ctx, out), method, req, reply, grpc.Header(&hdr))
	n.m.forwarded.WithLabelValues(status.Code(err).String()).Inc()
	if err != nil {
		return nil, err // the leader's status, unchanged
	}
	if v := hdr.Get(revisionHeader); len(v) == 1 {
		if rev, perr := strconv.ParseInt(v[0], 10, 64); perr == nil {
			wctx, cancel := context.WithTimeout(ctx, readYourWriteWait)
			if werr := n.waitApplied(wctx, rev); werr != nil {
				n.log.Debug("forwarded call answered before this replica applied it", "revision", rev, "error", werr)
			}
			cancel()
		}
	}
	return reply, nil
}

// responseFor returns an empty response message of a unary method.
func responseFor(fullMethod string) (proto.Message, error) {
	name := strings.TrimPrefix(fullMethod, "/")
	i := strings.LastIndex(name, "/")
	if i < 0 {
		return nil, fmt.Errorf("replica: malformed method name %q", fullMethod)
	}
	d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name[:i]))
	if err != nil {
		return nil, fmt.Errorf("replica: forward %s: %w", fullMethod, err)
	}
	sd, ok := d.(protoreflect.ServiceDescriptor)
	if !ok {
		return nil, fmt.Errorf("replica: forward %s: not a service", fullMethod)
	}
	md := sd.Methods().ByName(protoreflect.Name(name[i+1:]))
	if md == nil {
		return nil, fmt.Errorf("replica: forward %s: no such method", fullMethod)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, fmt.Errorf("replica: forward %s: %w", fullMethod, err)
	}
	return mt.New().Interface(), nil
}

// forwarder keeps one client connection to the current leader.
type forwarder struct {
	mu     sync.Mutex
	addr   string
	cc     *grpc.ClientConn
	closed bool
}

func (f *forwarder) conn(addr string, creds credentials.TransportCredentials) (*grpc.ClientConn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, fmt.Errorf("replica: %w", errNotLeader)
	}
	if f.cc != nil && f.addr == addr {
		return f.cc, nil
	}
	if f.cc != nil {
		_ = f.cc.Close()
		f.cc = nil
	}
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	opt := grpc.WithTransportCredentials(creds)
	cc, err := grpc.NewClient(addr, opt)
	if err != nil {
		return nil, fmt.Errorf("replica: connect to the leader at %s: %w", addr, err)
	}
	f.addr, f.cc = addr, cc
	return cc, nil
}

func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	if f.cc != nil {
		_ = f.cc.Close()
		f.cc = nil
	}
}
