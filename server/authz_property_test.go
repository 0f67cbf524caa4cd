package server_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"pgregory.net/rapid"

	"callcontrold/auth"
	"callcontrold/callstore"
	"callcontrold/directory"
	callcontrolv1 "callcontrold/gen/callcontrol/v1"
	"callcontrold/pbx"
	"callcontrold/pbx/sim"
	"callcontrold/server"
)

// The authorization model, written out from the reference's Permissions
// section independently of package auth: who sees a device's calls, who
// controls them, who may send them.
type modelUser struct {
	login, role, company string
	companies            []string // company-admin: administered
}

type modelDevice struct {
	name, company, owner, ext string
}

func (u modelUser) sees(d modelDevice) bool {
	switch {
	case d.owner == u.login: // an owner always sees its own calls
		return true
	case u.role == "admin", u.role == "sys-admin":
		return true
	case u.role == "company-admin":
		return slices.Contains(u.companies, d.company)
	default: // user
		return u.company == directory.DefaultCompany || u.company == d.company
	}
}

func (u modelUser) controls(d modelDevice) bool { return d.owner == u.login }

func (u modelUser) sends(d modelDevice) bool {
	return u.role == "admin" || u.role == "sys-admin" || u.role == "company-admin" && slices.Contains(u.companies, d.company)
}

// drawDirectory draws companies, users of every role and owned and
// unowned devices, and renders them as a directory file.
func drawDirectory(t *rapid.T) ([]modelUser, []modelDevice, string) {
	companies := []string{directory.DefaultCompany}
	companies = append(companies, rapid.SliceOfNDistinct(rapid.SampledFrom([]string{"acme", "globex", "initech"}), 1, 3, rapid.ID).Draw(t, "companies")...)
	roles := []string{"admin", "sys-admin", "company-admin", "user"}
	nUsers := rapid.IntRange(2, 6).Draw(t, "users")
	var users []modelUser
	for i := range nUsers {
		u := modelUser{
			login:   fmt.Sprintf("u%d", i),
			role:    rapid.SampledFrom(roles).Draw(t, "role"),
			company: rapid.SampledFrom(companies).Draw(t, "company"),
		}
		if u.role == "company-admin" {
			u.companies = rapid.SliceOfNDistinct(rapid.SampledFrom(companies), 1, len(companies), rapid.ID).Draw(t, "administers")
		}
		users = append(users, u)
	}
	nDevices := rapid.IntRange(2, 7).Draw(t, "devices")
	var devices []modelDevice
	for i := range nDevices {
		d := modelDevice{
			name:    fmt.Sprintf("SIP/1%02d", i),
			ext:     fmt.Sprintf("1%02d", i),
			company: rapid.SampledFrom(companies).Draw(t, "device company"),
		}
		if o := rapid.IntRange(-1, nUsers-1).Draw(t, "owner"); o >= 0 {
			d.owner = users[o].login
		}
		devices = append(devices, d)
	}

	var b strings.Builder
	b.WriteString("companies:\n")
	for _, c := range companies {
		fmt.Fprintf(&b, "  - {name: %s}\n", c)
	}
	b.WriteString("users:\n")
	for i, u := range users {
		sum := sha256.Sum256([]byte(tokenOf(u.login)))
		fmt.Fprintf(&b, "  - {id: %d, login: %s, name: %s, role: %s, company: %s, token_sha256: [%s]", 100+i, u.login, u.login, u.role, u.company, hex.EncodeToString(sum[:]))
		if len(u.companies) > 0 {
			fmt.Fprintf(&b, ", companies: [%s]", strings.Join(u.companies, ", "))
		}
		b.WriteString("}\n")
	}
	b.WriteString("devices:\n")
	for _, d := range devices {
		fmt.Fprintf(&b, "  - {name: %s, company: %s, features: [answer, hold, talk], extension: %q", d.name, d.company, d.ext)
		if d.owner != "" {
			fmt.Fprintf(&b, ", owner: %s", d.owner)
		}
		b.WriteString("}\n")
	}
	b.WriteString("extensions:\n")
	for _, d := range devices {
		fmt.Fprintf(&b, "  - {number: %q, company: %s, type: device, members: [%s]}\n", d.ext, d.company, d.name)
	}
	return users, devices, b.String()
}

func tokenOf(login string) string { return "tok-" + login }

// TestAuthorizationProperty: over random directories, principals and
// calls, through the real server over TCP, ListCalls and every watch show
// a principal exactly the calls the model lets it see, no control RPC
// succeeds on a call it does not own, and hidden calls are NOT_FOUND while
// visible but foreign ones are PERMISSION_DENIED.
func TestAuthorizationProperty(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		users, devices, yaml := drawDirectory(rt)
		dir, err := directory.Parse([]byte(yaml), "random.yaml")
		if err != nil {
			rt.Fatalf("the drawn directory does not load: %v\n%s", err, yaml)
		}
		deviceOf := map[string]modelDevice{}
		for _, d := range devices {
			deviceOf[d.name] = d
		}

		store := callstore.New(callstore.Options{})
		sw := sim.New(dir, store, sim.Options{Clock: pbx.NewFakeClock(time.Unix(1_700_000_000, 0)), Logger: testLogger()})
		authn, err := auth.NewAuthenticator(context.Background(), auth.Config{Tokens: dir, Logger: testLogger()})
		if err != nil {
			rt.Fatal(err)
		}
		srv, err := server.New(server.Config{ProgressInterval: 20 * time.Millisecond}, server.Deps{
			Store: store, Directory: dir, Switch: sw, Devices: sw, Simulator: sw,
			Authenticate: authn.Authenticate, Logger: testLogger(),
		})
		if err != nil {
			rt.Fatal(err)
		}
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			rt.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(lis) }()
		conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			rt.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		rt.Cleanup(func() {
			cancel()
			conn.Close()
			sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer scancel()
			srv.Shutdown(sctx)
			<-served
			sw.Close()
			store.Close()
			authn.Close()
		})
		api := callcontrolv1.NewCallControlServiceClient(conn)
		as := func(u modelUser) context.Context {
			return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tokenOf(u.login))
		}

		// Everyone watches from the start; the store's own watcher is the
		// ground truth of every leg ever created.
		truth, _, _, err := store.Watch(callstore.WatchRequest{})
		if err != nil {
			rt.Fatal(err)
		}
		defer truth.Close()
		watches := map[string]callcontrolv1.CallControlService_WatchCallsClient{}
		for _, u := range users {
			w, err := api.WatchCalls(as(u), &callcontrolv1.WatchCallsRequest{})
			if err != nil {
				rt.Fatalf("%s: WatchCalls: %v", u.login, err)
			}
			if _, err := w.Recv(); err != nil { // started
				rt.Fatalf("%s: WatchCalls: %v", u.login, err)
			}
			watches[u.login] = w
		}

		liveUIDs := func() []int64 {
			calls, _ := store.List(nil, nil, 0, 0)
			uids := []int64{1 << 40} // and one that never existed
			for _, c := range calls {
				uids = append(uids, c.UID)
			}
			return uids
		}
		// check classifies an RPC outcome against the model.
		check := func(op string, u modelUser, dev modelDevice, exists, needsOwner, needsSend bool, err error) {
			code := status.Code(err)
			switch {
			case !exists || !u.sees(dev):
				if code != codes.NotFound {
					rt.Fatalf("%s by %s (%s) on a call on %s it cannot see (or that does not exist): %v, want NOT_FOUND", op, u.login, u.role, dev.name, err)
				}
			case needsOwner && !u.controls(dev), needsSend && !u.sends(dev):
				if code != codes.PermissionDenied {
					rt.Fatalf("%s by %s (%s) on a visible call on %s (owner %q, company %s): %v, want PERMISSION_DENIED", op, u.login, u.role, dev.name, dev.owner, dev.company, err)
				}
			default:
				if code == codes.NotFound || code == codes.PermissionDenied || code == codes.Unauthenticated {
					rt.Fatalf("%s by %s (%s) on its own call on %s: %v", op, u.login, u.role, dev.name, err)
				}
			}
		}

		steps := rapid.IntRange(1, 25).Draw(rt, "steps")
		for range steps {
			u := rapid.SampledFrom(users).Draw(rt, "user")
			switch op := rapid.SampledFrom([]string{"ring", "dial", "get", "hold", "talk", "hangup", "send"}).Draw(rt, "op"); op {
			case "ring": // a call placed by the switch itself, no one's RPC
				from, to := rapid.SampledFrom(devices).Draw(rt, "from"), rapid.SampledFrom(devices).Draw(rt, "to")
				_, _ = sw.Dial(ctx, from.name, to.ext, pbx.DialOptions{})
			case "dial":
				from, to := rapid.SampledFrom(devices).Draw(rt, "from"), rapid.SampledFrom(devices).Draw(rt, "to")
				_, err := api.Dial(as(u), &callcontrolv1.DialRequest{Device: from.name, Number: to.ext})
				check(op, u, from, true, true, false, err)
			default:
				uid := rapid.SampledFrom(liveUIDs()).Draw(rt, "uid")
				c, exists := store.Get(uid)
				var dev modelDevice
				if exists {
					dev = deviceOf[c.Device]
				}
				var err error
				switch op {
				case "get":
					_, err = api.GetCall(as(u), &callcontrolv1.GetCallRequest{Uid: uid})
				case "hold":
					_, err = api.Hold(as(u), &callcontrolv1.HoldRequest{Uid: uid})
				case "talk":
					_, err = api.Talk(as(u), &callcontrolv1.TalkRequest{Uid: uid})
				case "hangup":
					_, err = api.Hangup(as(u), &callcontrolv1.HangupRequest{Uid: uid})
				case "send":
					_, err = api.Send(as(u), &callcontrolv1.SendRequest{Uid: uid, Number: rapid.SampledFrom(devices).Draw(rt, "to").ext})
				}
				check(op, u, dev, exists, op != "get" && op != "send", op == "send", err)
			}
		}

		// The ground truth: every leg ever created, and the live ones.
		rev := store.Revision()
		everOn := map[int64]string{}
		for {
			bs, progress, err := truth.Drain(nil)
			if err != nil {
				rt.Fatal(err)
			}
			for _, b := range bs {
				for _, e := range b.Events {
					everOn[e.Call.UID] = e.Call.Device
				}
			}
			if progress >= rev {
				break
			}
			<-truth.Ready()
		}
		live, _ := store.List(nil, nil, 0, 0)

		for _, u := range users {
			// ListCalls: exactly the visible live calls.
			var want, got []int64
			for _, c := range live {
				if u.sees(deviceOf[c.Device]) {
					want = append(want, c.UID)
				}
			}
			resp, err := api.ListCalls(as(u), &callcontrolv1.ListCallsRequest{PageSize: 1000})
			if err != nil {
				rt.Fatalf("%s: ListCalls: %v", u.login, err)
			}
			for _, c := range resp.GetCalls() {
				got = append(got, c.GetUid())
			}
			if !slices.Equal(got, want) {
				rt.Fatalf("%s (%s of %s %v) ListCalls = %v, want %v", u.login, u.role, u.company, u.companies, got, want)
			}

			// The watch: events of exactly the visible legs, up to rev.
			seen := map[int64]bool{}
			w := watches[u.login]
			for done := false; !done; {
				m, err := w.Recv()
				if err != nil {
					rt.Fatalf("%s: watch: %v", u.login, err)
				}
				switch f := m.GetFrame().(type) {
				case *callcontrolv1.WatchCallsResponse_Events:
					for _, e := range f.Events.GetEvents() {
						if d := deviceOf[e.GetCall().GetDevice()]; !u.sees(d) {
							rt.Fatalf("%s (%s) watched an event of call %d on %s (company %s, owner %q)", u.login, u.role, e.GetCall().GetUid(), d.name, d.company, d.owner)
						}
						seen[e.GetCall().GetUid()] = true
					}
					done = f.Events.GetRevision() >= rev
				case *callcontrolv1.WatchCallsResponse_Progress:
					done = f.Progress.GetRevision() >= rev
				case *callcontrolv1.WatchCallsResponse_SnapshotEnd:
					done = f.SnapshotEnd.GetRevision() >= rev
				}
			}
			for uid, d := range everOn {
				if u.sees(deviceOf[d]) && !seen[uid] {
					rt.Fatalf("%s (%s) never saw call %d on %s, which it may see", u.login, u.role, uid, d)
				}
			}
		}
	})
}
