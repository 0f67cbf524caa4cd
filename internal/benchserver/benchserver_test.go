package benchserver

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"runtime/debug"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"callcontrold/callstore"
	"callcontrold/directory"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/internal/gcpercent"
	"callcontrold/pbx/sim"
	"callcontrold/server"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestServe: the server answers over loopback with the directory's bearer
// tokens, refuses another token, and Close ends everything it started
// (goleak); New sets the service's default GOGC, as cmd/callcontrold does.
func TestServe(t *testing.T) {
	t.Setenv("GOGC", "") // as if unset: the operator's variable would win
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	h := sha256.Sum256([]byte("tok"))
	dir, err := directory.Parse([]byte(fmt.Sprintf(`companies:
  - {name: default, display_name: Default company}
users:
  - {id: 1, login: admin, name: Admin, role: admin, company: default, token_sha256: [%s]}
devices:
  - {name: SIP/1, display_name: Line 1, company: default, owner: admin, features: [answer, hold, talk]}
`, hex.EncodeToString(h[:]))), "test directory")
	if err != nil {
		t.Fatal(err)
	}
	store := callstore.New(callstore.Options{})
	defer store.Close()
	sw := sim.New(dir, store, sim.Options{Logger: Logger()})
	defer sw.Close()
	if _, err := New(server.Config{}, server.Deps{Store: store, Switch: sw}); err == nil {
		t.Error("New without a directory: no error")
	}
	s, err := New(server.Config{}, server.Deps{Store: store, Directory: dir, Switch: sw, Devices: sw, Simulator: sw})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if got := debug.SetGCPercent(gcpercent.Default); got != gcpercent.Default {
		t.Errorf("GOGC after New = %d, want the service's default %d", got, gcpercent.Default)
	}
	if err := s.ServeLoopback(); err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(s.Addr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	client := callcontrolv1.NewCallControlServiceClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	as := func(token string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	if _, err := client.ListCalls(as("tok"), &callcontrolv1.ListCallsRequest{}); err != nil {
		t.Errorf("ListCalls with the directory's token: %v", err)
	}
	if _, err := client.ListCalls(as("other"), &callcontrolv1.ListCallsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ListCalls with another token: %v, want Unauthenticated", err)
	}
}
