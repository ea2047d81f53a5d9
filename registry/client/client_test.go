package client_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshplane/meshplane/internal/etcdtest"
	"github.com/meshplane/meshplane/registry"
	"github.com/meshplane/meshplane/registry/client"
)

const waitTimeout = 30 * time.Second

func logger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// plane is a control plane for the client: etcd, store, gRPC server on a
// fixed loopback address that can be stopped and started again.
type plane struct {
	t     *testing.T
	etcd  *etcdtest.Cluster
	cli   *clientv3.Client
	store *registry.Store
	addr  string
	gs    *grpc.Server
}

func newPlane(t *testing.T) *plane {
	t.Helper()
	p := &plane{t: t, etcd: etcdtest.Start(t)}
	p.cli = p.etcd.Client()
	s, err := registry.NewStore(p.cli, registry.StoreOptions{Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	p.store = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = s.Run(ctx, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	p.startServer("127.0.0.1:0")
	t.Cleanup(func() { p.stopServer() })
	return p
}

func (p *plane) startServer(addr string) {
	p.t.Helper()
	var lis net.Listener
	var err error
	for range 50 { // the old listener's port may take a moment to free up
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	p.addr = lis.Addr().String()
	p.gs = grpc.NewServer()
	registry.NewServer(p.store, logger(p.t)).RegisterGRPC(p.gs)
	go func() { _ = p.gs.Serve(lis) }()
}

func (p *plane) stopServer() {
	if p.gs != nil {
		p.gs.Stop()
		p.gs = nil
	}
}

func (p *plane) dial() *grpc.ClientConn {
	p.t.Helper()
	conn, err := grpc.NewClient(p.addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second}}))
	if err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { conn.Close() })
	return conn
}

// key reads an instance's key: its lease, and whether it exists.
func (p *plane) key(ns, svc, id string) (clientv3.LeaseID, bool) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := p.cli.Get(ctx, "/meshplane/v1/instances/"+ns+"/"+svc+"/"+id)
	if err != nil {
		p.t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return 0, false
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease), true
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func registration() client.Registration {
	return client.Registration{
		Service: "api",
		Address: "127.0.0.1",
		Ports:   []client.Port{{Name: "grpc", Port: 8080, Protocol: client.ProtocolGRPC}},
		TTL:     5 * time.Second,
	}
}

// runClient starts c.Run; the returned func cancels it and returns its error.
func runClient(t *testing.T, c *client.Client) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	stopped := false
	var result error
	stop := func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case result = <-done:
			case <-time.After(waitTimeout):
				t.Fatal("Run did not return after cancel")
			}
		}
		return result
	}
	t.Cleanup(func() { _ = stop() })
	select {
	case <-c.Registered():
	case err := <-done:
		t.Fatalf("Run returned before registering: %v", err)
	case <-time.After(waitTimeout):
		t.Fatal("not registered in time")
	}
	return stop
}

func TestClientHeartbeatsAndDeregistersOnCancel(t *testing.T) {
	t.Parallel() // mostly waits on leases and restarts
	p := newPlane(t)
	c, err := client.New(p.dial(), registration(), client.WithLogger(logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	if c.InstanceID() != "" {
		t.Fatalf("InstanceID before registration = %q", c.InstanceID())
	}
	stop := runClient(t, c)
	id := c.InstanceID()
	if id != "127.0.0.1-8080" {
		t.Fatalf("InstanceID = %q, want the server-derived 127.0.0.1-8080", id)
	}
	lease, ok := p.key("default", "api", id)
	if !ok {
		t.Fatal("instance not in etcd after Registered")
	}
	// Outlive two TTLs: only heartbeats keep the key.
	time.Sleep(11 * time.Second)
	if l, ok := p.key("default", "api", id); !ok || l != lease {
		t.Fatalf("after 2 TTLs: present=%v lease %x (was %x); heartbeats did not keep it", ok, l, lease)
	}
	if err := c.SetHealth(context.Background(), client.HealthDraining); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "DRAINING in the registry", func() bool {
		svc, _, err := p.store.Service(context.Background(), "default", "api")
		return err == nil && svc.Instances[0].Health == registry.HealthDraining
	})
	if err := c.SetHealth(context.Background(), "SICK"); err == nil {
		t.Error("SetHealth(SICK) succeeded")
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	// Deregistration is done when Run returns, not left to lease expiry.
	if _, ok := p.key("default", "api", id); ok {
		t.Fatal("instance still registered after Run returned")
	}
}

func TestClientReRegistersAfterLeaseExpired(t *testing.T) {
	t.Parallel() // mostly waits on leases and restarts
	p := newPlane(t)
	reg := registration()
	reg.InstanceID = "pod-1"
	reg.Health = client.HealthNotServing
	c, err := client.New(p.dial(), reg, client.WithLogger(logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	runClient(t, c)
	lease, ok := p.key("default", "api", "pod-1")
	if !ok {
		t.Fatal("not registered")
	}
	// Revoking the lease is what expiry does (key deleted, lease gone), without
	// waiting out the TTL.
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := p.cli.Revoke(ctx, lease); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.key("default", "api", "pod-1"); ok {
		t.Fatal("key survived revoking its lease")
	}
	waitFor(t, "re-registration on a new lease", func() bool {
		l, ok := p.key("default", "api", "pod-1")
		return ok && l != lease
	})
	// The store reads through its watch cache, which may not have applied the
	// new registration yet when etcd already holds it.
	var svc registry.Service
	waitFor(t, "the store's cache to hold the re-registered instance", func() bool {
		var err error
		svc, _, err = p.store.Service(ctx, "default", "api")
		return err == nil && len(svc.Instances) == 1
	})
	if svc.Instances[0].Health != registry.HealthNotServing {
		t.Fatalf("re-registered instance: %+v, want health NOT_SERVING kept", svc)
	}
}

// TestClientReRegistersAfterServerRestart: the control plane's gRPC server
// goes away long enough for the lease to expire, then comes back on the same
// address; the client registers the instance again by itself.
func TestClientReRegistersAfterServerRestart(t *testing.T) {
	t.Parallel() // mostly waits on leases and restarts
	p := newPlane(t)
	c, err := client.New(p.dial(), registration(), client.WithLogger(logger(t)), client.WithBackoff(100*time.Millisecond, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	runClient(t, c)
	id := c.InstanceID()
	addr := p.addr
	p.stopServer()
	waitFor(t, "lease to expire while the server is down", func() bool {
		_, ok := p.key("default", "api", id)
		return !ok
	})
	p.startServer(addr)
	waitFor(t, "re-registration after the server restarted", func() bool {
		_, ok := p.key("default", "api", id)
		return ok
	})
}

func TestClientInvalidRegistration(t *testing.T) {
	p := newPlane(t)
	reg := registration()
	reg.Service = "Not_A_Label"
	c, err := client.New(p.dial(), reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	err = c.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "service: must be a DNS label") {
		t.Fatalf("Run = %v, want the server's INVALID_ARGUMENT naming service", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Run retried an invalid registration until the deadline")
	}
}

func TestNewRejects(t *testing.T) {
	conn, err := grpc.NewClient("127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tests := map[string]struct {
		conn grpc.ClientConnInterface
		mod  func(*client.Registration)
		opts []client.Option
		want string
	}{
		"nil conn":       {conn: nil, want: "nil connection"},
		"no service":     {conn: conn, mod: func(r *client.Registration) { r.Service = "" }, want: "Service is required"},
		"no address":     {conn: conn, mod: func(r *client.Registration) { r.Address = "" }, want: "Address is required"},
		"no port":        {conn: conn, mod: func(r *client.Registration) { r.Ports = nil }, want: "at least one port"},
		"fractional ttl": {conn: conn, mod: func(r *client.Registration) { r.TTL = 1500 * time.Millisecond }, want: "whole seconds"},
		"bad backoff":    {conn: conn, opts: []client.Option{client.WithBackoff(time.Second, time.Millisecond)}, want: "backoff"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			reg := registration()
			if tc.mod != nil {
				tc.mod(&reg)
			}
			_, err := client.New(tc.conn, reg, tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New = %v, want error containing %q", err, tc.want)
			}
		})
	}
}
