package auth_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors"
	grpcauth "github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/auth"
	"github.com/grpc-ecosystem/go-grpc-middleware/v2/interceptors/selector"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"callcontrold/auth"
	"callcontrold/callstore"
	"callcontrold/directory"
)

// The authenticator as the server wires it: behind a selector that lets
// health checks and reflection through. Its errors are *auth.AuthError;
// the server turns them into UNAUTHENTICATED with an ErrorInfo reason.
func ExampleAuthenticator() {
	a, err := auth.NewAuthenticator(context.Background(), auth.Config{Tokens: directory.Demo()})
	if err != nil {
		log.Fatal(err)
	}
	defer a.Close()

	authenticate := func(ctx context.Context) (context.Context, error) {
		ctx, err := a.Authenticate(ctx)
		var ae *auth.AuthError
		if errors.As(err, &ae) {
			return nil, status.Error(codes.Unauthenticated, ae.Msg)
		}
		return ctx, err
	}
	needsAuth := selector.MatchFunc(func(_ context.Context, c interceptors.CallMeta) bool {
		return c.Service != healthpb.Health_ServiceDesc.ServiceName &&
			c.Service != reflectionpb.ServerReflection_ServiceDesc.ServiceName
	})
	s := grpc.NewServer(
		grpc.ChainUnaryInterceptor(selector.UnaryServerInterceptor(grpcauth.UnaryServerInterceptor(authenticate), needsAuth)),
		grpc.ChainStreamInterceptor(selector.StreamServerInterceptor(grpcauth.StreamServerInterceptor(authenticate), needsAuth)),
	)
	defer s.Stop()
}

// A handler asks two questions, in this order: may the caller know the
// call exists (else NOT_FOUND), and may it act on it (else
// PERMISSION_DENIED).
func ExampleCanControl() {
	call := &callstore.Call{DeviceRef: &callstore.DeviceRef{Device: "SIP/webrtc11", DeviceCompany: "acme", OwnerLogin: "bob"}}
	for _, p := range []*auth.Principal{
		{Login: "bob", Role: directory.RoleUser, Company: "acme"},
		{Login: "admin", Role: directory.RoleAdmin, Company: "default"},
		{Login: "alice", Role: directory.RoleUser, Company: "other"},
	} {
		switch {
		case !auth.CanSeeCall(p, call):
			fmt.Println(p.Login, "NOT_FOUND")
		case !auth.CanControl(p, call):
			fmt.Println(p.Login, "PERMISSION_DENIED")
		default:
			fmt.Println(p.Login, "OK")
		}
	}
	// Output:
	// bob OK
	// admin PERMISSION_DENIED
	// alice NOT_FOUND
}
