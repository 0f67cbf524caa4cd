// Package natsembed runs embedded NATS servers with JetStream on
// loopback, with ephemeral ports: a cluster for the log of replicas in a
// benchmark, in one process with the replicas, or one server for a test.
// It is not a way to run NATS in production: point replicas at an
// operated cluster there.
package natsembed

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
)

// Cluster is n embedded NATS servers forming one JetStream cluster.
type Cluster struct {
	servers []*natsserver.Server
	urls    []string
	dir     string // the servers' storage, removed by Close
}

// readyTimeout bounds each wait of Start: a server ready for connections,
// the meta leader elected, every server caught up, every server online in
// the leader's view.
const readyTimeout = 30 * time.Second

// Start starts n servers storing under a fresh temporary directory and
// returns once JetStream has a meta leader, every server is current, and
// the leader sees every server online (a replicated stream can be placed).
func Start(n int) (c *Cluster, err error) {
	dir, err := os.MkdirTemp("", "natsembed-")
	if err != nil {
		return nil, err
	}
	c = &Cluster{dir: dir}
	defer func() {
		if err != nil {
			c.Close()
		}
	}()
	// JetStream in a cluster wants its routes from the start, so the
	// cluster ports are picked first: ephemeral ports held open until just
	// before their server listens on them.
	held := make([]net.Listener, n)
	defer func() {
		for _, l := range held {
			if l != nil {
				_ = l.Close()
			}
		}
	}()
	var routes []*url.URL
	for i := range held {
		if held[i], err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			return c, err
		}
		routes = append(routes, &url.URL{Scheme: "nats", Host: held[i].Addr().String()})
	}
	for i := range n {
		opts := &natsserver.Options{
			ServerName: fmt.Sprintf("nats-%d", i),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   fmt.Sprintf("%s/%d", dir, i),
			NoLog:      true,
			NoSigs:     true,
			Cluster:    natsserver.ClusterOpts{Name: "natsembed", Host: "127.0.0.1", Port: held[i].Addr().(*net.TCPAddr).Port},
			Routes:     routes,
		}
		_ = held[i].Close()
		held[i] = nil
		s, err := natsserver.NewServer(opts)
		if err != nil {
			return c, fmt.Errorf("nats server %d: %w", i, err)
		}
		go s.Start()
		c.servers = append(c.servers, s)
		if !s.ReadyForConnections(readyTimeout) {
			return c, fmt.Errorf("nats server %d not ready", i)
		}
		c.urls = append(c.urls, "nats://"+s.Addr().String())
	}
	if err := c.waitFor(func(s *natsserver.Server) bool { return s.JetStreamIsLeader() }, false); err != nil {
		return c, errors.New("natsembed: no JetStream meta leader")
	}
	if err := c.waitFor(func(s *natsserver.Server) bool { return s.JetStreamIsCurrent() }, true); err != nil {
		return c, errors.New("natsembed: a server did not catch up with the cluster")
	}
	// The meta leader places a replicated stream only on peers it has
	// heard from since it was elected; until then creating an R3 stream
	// fails with "no suitable peers for placement".
	if err := c.waitFor(func(s *natsserver.Server) bool { return len(s.JetStreamClusterPeers()) == n }, false); err != nil {
		return c, errors.New("natsembed: the meta leader does not see every server online")
	}
	return c, nil
}

// StartOne starts a single server, outside any cluster, storing under a
// fresh temporary directory, and returns once it accepts connections:
// JetStream is ready then (streams and buckets of one replica).
func StartOne() (c *Cluster, err error) {
	dir, err := os.MkdirTemp("", "natsembed-")
	if err != nil {
		return nil, err
	}
	c = &Cluster{dir: dir}
	s, err := natsserver.NewServer(&natsserver.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true,
	})
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("nats server: %w", err)
	}
	go s.Start()
	c.servers = append(c.servers, s)
	if !s.ReadyForConnections(readyTimeout) {
		c.Close()
		return nil, errors.New("natsembed: nats server not ready")
	}
	c.urls = append(c.urls, s.ClientURL())
	return c, nil
}

// waitFor waits until ok holds for one server (all false) or every one.
func (c *Cluster) waitFor(ok func(*natsserver.Server) bool, all bool) error {
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		n := 0
		for _, s := range c.servers {
			if ok(s) {
				n++
			}
		}
		if (all && n == len(c.servers)) || (!all && n > 0) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("timed out")
}

// URL lists every server's client URL, comma separated.
func (c *Cluster) URL() string { return strings.Join(c.urls, ",") }

// Close shuts every server down and removes their storage.
func (c *Cluster) Close() {
	for _, s := range c.servers {
		s.Shutdown()
		s.WaitForShutdown()
	}
	c.servers = nil
	_ = os.RemoveAll(c.dir)
}
