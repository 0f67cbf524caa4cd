package natsembed

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestStart: the cluster takes an R3 file-storage stream at once, any of
// its URLs serves it, and Close removes the servers' storage.
func TestStart(t *testing.T) {
	c, err := Start(3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAndCheck(t, c) }) // after connect's cleanups
	if got := len(c.urls); got != 3 {
		t.Fatalf("%d URLs, want 3", got)
	}
	js, ctx := connect(t, c)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t"}, Replicas: 3, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	ack, err := js.Publish(ctx, "t", []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Sequence != 1 {
		t.Errorf("first message stored at %d, want 1", ack.Sequence)
	}
}

// TestStartOne: the single server takes a file-storage bucket at once,
// and Close removes its storage.
func TestStartOne(t *testing.T) {
	c, err := StartOne()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { closeAndCheck(t, c) }) // after connect's cleanups
	js, ctx := connect(t, c)
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "T", Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if rev, err := kv.Put(ctx, "k", []byte("v")); err != nil || rev != 1 {
		t.Errorf("first put: revision %d, %v; want 1", rev, err)
	}
}

// connect returns JetStream on c and a context bounding the test's calls;
// both end with the test.
func connect(t *testing.T, c *Cluster) (jetstream.JetStream, context.Context) {
	t.Helper()
	nc, err := nats.Connect(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return js, ctx
}

// closeAndCheck closes c and checks that its storage is gone.
func closeAndCheck(t *testing.T, c *Cluster) {
	dir := c.dir
	c.Close()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("storage %s left after Close: %v", dir, err)
	}
}
