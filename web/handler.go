package web

import (
	"fmt"
	"net/http"
	"strings"
	"time"

	"connectrpc.com/connect"
	"connectrpc.com/vanguard"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

// Config tunes the HTTP side. The zero value of every field means its
// default (see withDefaults).
type Config struct {
	// AllowedOrigins may call the API from a browser page on another
	// origin ("https://crm.example.com"; "*" for any). None by default:
	// the console itself is same-origin and needs none.
	AllowedOrigins []string
	// MaxBodyBytes limits a request body (default 1 MiB, the gRPC
	// server's message limit).
	MaxBodyBytes int64
	// BodyTimeout limits the time to receive a request body (default 30s).
	BodyTimeout time.Duration
	// UnaryWriteTimeout limits the time to write a unary response
	// (default 30s). Streams have none: WatchCalls stays open.
	UnaryWriteTimeout time.Duration
	// Transport, if set, applies the gRPC server's transport limits to the
	// HTTP port too (see limits.go); cmd/callcontrold passes its
	// *server.Server. Without it, only net/http's defaults and the limits
	// above apply.
	Transport Transport
}

func (c Config) withDefaults() Config {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = 1 << 20
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = 30 * time.Second
	}
	if c.UnaryWriteTimeout <= 0 {
		c.UnaryWriteTimeout = 30 * time.Second
	}
	return c
}

// NewHandler serves every service registered on gs (with its descriptor
// in the global registry, as generated code does) over Connect, gRPC-Web
// and gRPC, and the console at "/". Requests run through gs itself (its
// ServeHTTP), so its interceptors apply to them as to any gRPC call.
// Register every service on gs before calling NewHandler.
func NewHandler(gs *grpc.Server, cfg Config) (http.Handler, error) {
	cfg = cfg.withDefaults()
	console := consoleHandler()
	methods := rpcMethods(gs)
	var services []*vanguard.Service
	for name := range gs.GetServiceInfo() {
		// A service registered without a descriptor in the global registry
		// (a hand-written one, such as a benchmark's no-op service) cannot
		// be transcoded: it stays gRPC-only.
		if _, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(name)); err != nil {
			for path := range methods {
				if strings.HasPrefix(path, "/"+name+"/") {
					delete(methods, path)
				}
			}
			continue
		}
		services = append(services, vanguard.NewService(name, gs))
	}
	// As vanguardgrpc.NewTranscoder, which refuses such services: every
	// request goes to gs as gRPC with binary protobuf.
	transcoder, err := vanguard.NewTranscoder(services,
		vanguard.WithCodec(strictJSON),
		vanguard.WithCodec(protoCodec),
		vanguard.WithUnknownHandler(console),
		vanguard.WithDefaultServiceOptions(
			vanguard.WithTargetProtocols(vanguard.ProtocolGRPC),
			vanguard.WithTargetCodecs(vanguard.CodecProto),
			vanguard.WithMaxMessageBufferBytes(uint32(cfg.MaxBodyBytes)),
		),
	)
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	rpc := guardRPC(transcoder, methods, rpcLimits{
		maxBody:     cfg.MaxBodyBytes,
		bodyTimeout: cfg.BodyTimeout,
		unaryWrite:  cfg.UnaryWriteTimeout,
		transport:   cfg.Transport,
	})
	mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := methods[r.URL.Path]; ok {
			rpc.ServeHTTP(w, r)
			return
		}
		console.ServeHTTP(w, r)
	})
	return newCORSPolicy(cfg.AllowedOrigins).wrap(mux), nil
}

// strictJSON is vanguard's JSON codec, except that an unknown field is an
// error (INVALID_ARGUMENT) instead of being dropped: a JSON client that
// misspells "number" should hear so, not dial nothing. Fields at their
// zero value are left out, as connect-go and protojson do by default
// (vanguard would write every absent message as null).
func strictJSON(res vanguard.TypeResolver) vanguard.Codec {
	c := vanguard.NewJSONCodec(res)
	c.UnmarshalOptions.DiscardUnknown = false
	c.MarshalOptions.EmitUnpopulated = false
	return requestCodec{c}
}

func protoCodec(res vanguard.TypeResolver) vanguard.Codec {
	return requestCodec{vanguard.NewProtoCodec(res)}
}

// requestCodec reports a body it cannot decode as INVALID_ARGUMENT (the
// client sent it); vanguard would answer UNKNOWN, an HTTP 500.
type requestCodec struct{ vanguard.Codec }

func (c requestCodec) Unmarshal(data []byte, msg proto.Message) error {
	if err := c.Codec.Unmarshal(data, msg); err != nil {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("malformed %s request body: %w", c.Name(), err))
	}
	return nil
}
