package server_test

import (
	"context"
	"net"
	"runtime"
	"testing"
	"time"

	"callcontrold/auth"
	"callcontrold/callstore"
	"callcontrold/directory"
	"callcontrold/pbx/sim"
	"callcontrold/server"
)

// TestStoppedServerIsGarbage: once Shutdown has returned, nothing of the
// server stays reachable, even after a client that gave up on a call
// before sending its request (whose stream sits on the pending list until
// its read timeout, a minute here). A server left reachable keeps its
// store, engine and directory, as a test or a load tool that builds one
// server after another would find in its next server's memory.
func TestStoppedServerIsGarbage(t *testing.T) {
	collected := stoppedServer(t)
	deadline := time.Now().Add(waitLimit)
	for {
		runtime.GC()
		select {
		case <-collected:
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("the stopped server is still reachable")
		}
	}
}

// stoppedServer runs a server, abandons a call on it before its request
// message, shuts it down, and returns a channel closed once the server has
// been collected. It returns nothing else: the caller must not keep the
// server alive.
func stoppedServer(t *testing.T) <-chan struct{} {
	t.Helper()
	dir := directory.Demo()
	store := callstore.New(callstore.Options{})
	sw := sim.New(dir, store, sim.Options{Logger: testLogger()})
	authn, err := auth.NewAuthenticator(context.Background(), auth.Config{Tokens: dir, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{RequestReadTimeout: time.Minute}, server.Deps{
		Store: store, Directory: dir, Switch: sw, Devices: sw, Simulator: sw,
		Authenticate: authn.Authenticate, Logger: testLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	r := dialRawH2(t, lis.Addr().String())
	r.open(0) // a call whose request never comes
	r.sync()
	if err := r.conn.Close(); err != nil {
		t.Fatal(err)
	}
	<-r.done

	collected := make(chan struct{})
	runtime.AddCleanup(srv, func(ch chan struct{}) { close(ch) }, collected)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	srv.Shutdown(ctx)
	<-served
	sw.Close()
	store.Close()
	authn.Close()
	return collected
}
