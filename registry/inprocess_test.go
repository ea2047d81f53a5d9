package registry_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	registryv1 "github.com/meshplane/meshplane/api/registry/v1"
	"github.com/meshplane/meshplane/internal/embedetcd"
	"github.com/meshplane/meshplane/registry"
)

// TestInProcessClient runs the store over embedetcd's in-process client, as
// the control plane does with its embedded etcd: the gRPC API's lifecycle,
// the watch cache and the Watch stream, the compare-and-swap of concurrent
// registrations, and UNAVAILABLE once etcd has stopped.
func TestInProcessClient(t *testing.T) {
	ctx := ctxT(t)
	srv, err := embedetcd.Start(ctx, embedetcd.Config{DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	cli := srv.Client()
	t.Cleanup(func() { cli.Close() })
	store, err := registry.NewStore(cli, registry.StoreOptions{Logger: testLogger(t), Registerer: prometheus.NewRegistry(), RequestTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stopRun := context.WithCancel(ctx)
	runDone := make(chan error, 1)
	go func() { runDone <- store.Run(runCtx, nil) }()
	t.Cleanup(func() {
		stopRun()
		if err := <-runDone; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	waitFor(t, "store ready", store.Ready)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	registry.NewServer(store, testLogger(t)).RegisterGRPC(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	rc := registryv1.NewRegistryClient(conn)

	ws, err := rc.Watch(ctx, &registryv1.WatchRequest{Namespace: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	w := &watcher{}
	w.recv(t, ws) // the reset of the empty registry
	if w.resets != 1 {
		t.Fatalf("Watch began with %d resets, want 1", w.resets)
	}

	req := &registryv1.RegisterRequest{Service: "api", Namespace: "prod", Address: "10.0.0.1", Ports: grpcPorts(8080), TtlSeconds: 20}
	reg, err := rc.Register(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	w.recvUntil(t, ws, reg.GetInstanceId())
	waitFor(t, "the watch cache to see the instance", func() bool {
		return len(instanceIDs(store.Snapshot(), "prod", "api")) == 1
	})
	// Again, now from the watch cache's hint: an update on the same lease.
	key := instancesPrefix + "prod/api/" + reg.GetInstanceId()
	before, err := cli.Get(ctx, key)
	if err != nil || len(before.Kvs) != 1 {
		t.Fatalf("Get = %v, %v", before, err)
	}
	req.Weight = 5
	again, err := rc.Register(ctx, req)
	if err != nil || again.GetRevision() <= reg.GetRevision() {
		t.Fatalf("second Register = %v, %v", again, err)
	}
	after, err := cli.Get(ctx, key)
	if err != nil || len(after.Kvs) != 1 || after.Kvs[0].Lease != before.Kvs[0].Lease {
		t.Fatalf("after re-register: %v, %v; want the key on lease %x", after, err, before.Kvs[0].Lease)
	}
	if hb, err := rc.Heartbeat(ctx, &registryv1.HeartbeatRequest{Namespace: "prod", Service: "api", InstanceId: reg.GetInstanceId()}); err != nil || hb.GetTtlSeconds() <= 0 {
		t.Fatalf("Heartbeat = %v, %v", hb, err)
	}
	if _, err := rc.Deregister(ctx, &registryv1.DeregisterRequest{Namespace: "prod", Service: "api", InstanceId: reg.GetInstanceId()}); err != nil {
		t.Fatal(err)
	}
	w.recvUntil(t, ws)

	registerConcurrently(t, store, cli)

	// etcd stops: writes fail with UNAVAILABLE (not after the caller's own
	// deadline), the Watch stream ends, and Run keeps retrying quietly.
	srv.Close()
	for {
		_, err := ws.Recv()
		if err == nil {
			continue
		}
		if c := status.Code(err); c != codes.Unavailable {
			t.Errorf("Watch after etcd stopped: %v, want UNAVAILABLE", err)
		}
		break
	}
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err = rc.Register(rctx, &registryv1.RegisterRequest{Service: "api", Namespace: "prod", Address: "10.0.0.2", Ports: grpcPorts(8080)})
	wantCode(t, "Register after etcd stopped", err, codes.Unavailable)
	_, err = store.Register(rctx, inst("api", "10.0.0.3"))
	if !errors.Is(err, registry.ErrUnavailable) {
		t.Errorf("Store.Register after etcd stopped: %v, want ErrUnavailable", err)
	}
}
