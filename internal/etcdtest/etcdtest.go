package etcdtest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/meshplane/meshplane/internal/embedetcd"
)

// Cluster is a single-member etcd owned by one test. Its methods may be called
// from several goroutines.
type Cluster struct {
	t          testing.TB
	dataDir    string
	clientAddr string
	peerAddr   string
	endpoints  []string
	proxy      *proxy

	mu      sync.Mutex
	server  *embedetcd.Server
	clients []*clientv3.Client
}

// Start runs etcd in t.TempDir() on free loopback ports and stops it (and
// closes every client it handed out) when the test ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	cp, err := embedetcd.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	pp, err := embedetcd.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{
		t:          t,
		dataDir:    t.TempDir(),
		clientAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(cp)),
		peerAddr:   net.JoinHostPort("127.0.0.1", strconv.Itoa(pp)),
	}
	px, err := newProxy(c.clientAddr)
	if err != nil {
		t.Fatal(err)
	}
	c.proxy = px
	// Clients dial etcd through the proxy, so Stop can cut their connections
	// at once and Restart keeps the address they know.
	c.endpoints = []string{"http://" + px.addr()}
	c.start()
	t.Cleanup(c.cleanup)
	return c
}

func (c *Cluster) start() {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		s   *embedetcd.Server
		err error
	)
	// The ports were free when picked, but a listener from the previous run
	// may linger for a moment after a restart: retry briefly.
	for attempt := 0; attempt < 20; attempt++ {
		s, err = embedetcd.Start(ctx, embedetcd.Config{
			DataDir:       c.dataDir,
			ClientAddr:    c.clientAddr,
			PeerAddr:      c.peerAddr,
			Logger:        slog.New(slog.DiscardHandler),
			UnsafeNoFsync: true,
		})
		if err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("etcdtest: start etcd: %v", err)
	}
	c.mu.Lock()
	c.server = s
	c.mu.Unlock()
	c.proxy.setDown(false)
}

// Endpoints are the client URLs, stable across Restart. They lead to etcd
// through a local TCP proxy that Stop cuts, so clients see etcd go away at
// once.
func (c *Cluster) Endpoints() []string { return append([]string(nil), c.endpoints...) }

// Client returns a new client of the cluster, closed when the test ends. The
// client survives Stop/Restart: it reconnects by itself.
func (c *Cluster) Client() *clientv3.Client {
	c.t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   c.Endpoints(),
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		// Reconnect within a second of a Restart instead of gRPC's default
		// backoff, which grows to minutes.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		})},
	})
	if err != nil {
		c.t.Fatalf("etcdtest: new client: %v", err)
	}
	c.mu.Lock()
	c.clients = append(c.clients, cli)
	c.mu.Unlock()
	return cli
}

// Stop stops etcd, keeping its data directory and ports for Restart.
func (c *Cluster) Stop() {
	c.mu.Lock()
	s := c.server
	c.server = nil
	c.mu.Unlock()
	c.proxy.setDown(true)
	if s != nil {
		s.Close()
	}
}

// Restart stops etcd if it runs and starts it again on the same data
// directory and ports.
func (c *Cluster) Restart() {
	c.t.Helper()
	c.Stop()
	c.start()
}

// Compact compacts the key-value history up to rev (physically, so that a
// watch from an older revision fails with ErrCompacted at once).
func (c *Cluster) Compact(rev int64) {
	c.t.Helper()
	cli := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		c.t.Fatalf("etcdtest: compact %d: %v", rev, err)
	}
}

// Revision is the cluster's current revision.
func (c *Cluster) Revision() int64 {
	c.t.Helper()
	cli := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "\x00meshplane-etcdtest-revision")
	if err != nil {
		c.t.Fatalf("etcdtest: get revision: %v", err)
	}
	return resp.Header.Revision
}

func (c *Cluster) cleanup() {
	c.mu.Lock()
	clients := c.clients
	c.clients = nil
	c.mu.Unlock()
	for _, cli := range clients {
		_ = cli.Close()
	}
	c.Stop()
	c.proxy.close()
}

// String names the cluster by its client endpoint, for test logs.
func (c *Cluster) String() string { return fmt.Sprintf("etcd(%s)", c.clientAddr) }
