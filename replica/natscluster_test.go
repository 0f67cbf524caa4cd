package replica

import (
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"

	"callcontrold/internal/freeport"
)

// natsCluster is a JetStream cluster of embedded NATS servers on
// loopback, on free ports (freeport), each storing under the test's temp dir.
// A node can be killed and restarted on the same ports and storage.
type natsCluster struct {
	t       testing.TB
	servers []*natsserver.Server // nil while killed
	opts    []*natsserver.Options
}

func startNATSCluster(t testing.TB, n int) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t, servers: make([]*natsserver.Server, n), opts: make([]*natsserver.Options, n)}
	t.Cleanup(c.shutdown)
	// JetStream in a cluster wants its routes configured from the start,
	// and a killed node comes back on its ports, so every port is picked
	// first, below the kernel's ephemeral range (freeport): a port there
	// is not one another process's outgoing connection can take, nor one
	// a node's own connection to a peer not yet listening can land on
	// (a TCP self-connect), which an ephemeral port released just before
	// its node listens can be.
	ports := func() int {
		p, err := freeport.Port()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	cports := make([]int, n)
	var routes []*url.URL
	for i := range cports {
		cports[i] = ports()
		routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", cports[i])})
	}
	for i := range n {
		c.opts[i] = &natsserver.Options{
			ServerName: fmt.Sprintf("nats-%d", i),
			Host:       "127.0.0.1",
			Port:       ports(),
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			// NoAdvertise: a client knows only the URLs it was given, so a
			// replica given one node's URL is cut off while that node is down.
			Cluster: natsserver.ClusterOpts{Name: "callcontrold-test", Host: "127.0.0.1", Port: cports[i], NoAdvertise: true},
			Routes:  routes,
		}
	}
	for i := range n {
		c.start(i)
	}
	c.waitMetaLeader()
	for i := range n {
		c.waitCurrent(i)
	}
	return c
}

func (c *natsCluster) start(i int) {
	c.t.Helper()
	s, err := natsserver.NewServer(c.opts[i])
	if err != nil {
		c.t.Fatalf("nats node %d: %v", i, err)
	}
	if os.Getenv("REPLICA_TEST_LOG") != "" {
		c.opts[i].NoLog = false
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		c.t.Fatalf("nats node %d not ready", i)
	}
	c.servers[i] = s
}

// waitMetaLeader waits until the cluster has elected its JetStream meta
// leader: before that, creating a stream times out.
func (c *natsCluster) waitMetaLeader() {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range c.servers {
			if s != nil && s.JetStreamIsLeader() {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatal("no JetStream meta leader")
}

// kill stops node i at once (its storage stays).
func (c *natsCluster) kill(i int) {
	s := c.servers[i]
	c.servers[i] = nil
	s.Shutdown()
	s.WaitForShutdown()
}

// restart brings node i back on its ports and storage, and waits until
// its JetStream has caught up with the cluster's.
func (c *natsCluster) restart(i int) {
	c.t.Helper()
	c.start(i)
	c.waitCurrent(i)
}

// waitCurrent waits until node i's JetStream has caught up with the
// cluster's.
func (c *natsCluster) waitCurrent(i int) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !c.servers[i].JetStreamIsCurrent() {
		if time.Now().After(deadline) {
			c.t.Fatalf("nats node %d did not catch up with the cluster", i)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// url lists every node's client URL: a client reconnects to any of them.
func (c *natsCluster) url() string {
	var urls []string
	for _, o := range c.opts {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(urls, ",")
}

func (c *natsCluster) shutdown() {
	for i, s := range c.servers {
		if s != nil {
			c.kill(i)
		}
	}
}
