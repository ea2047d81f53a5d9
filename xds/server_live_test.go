package xds

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/meshplane/meshplane/registry"
)

// healthBackend is a plain gRPC server with the health service on loopback.
func healthBackend(t *testing.T) (port uint32) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	healthpb.RegisterHealthServer(g, health.NewServer())
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	return uint32(lis.Addr().(*net.TCPAddr).Port)
}

func liveInput(ports ...uint32) Input {
	svc := registry.Service{Name: "svc", Namespace: "ns", Ports: []registry.Port{{Name: "grpc", Port: 50051, Protocol: registry.ProtocolGRPC}}}
	for i, p := range ports {
		svc.Instances = append(svc.Instances, registry.Instance{
			ID: fmt.Sprintf("i%d", i), Service: "svc", Namespace: "ns", Address: "127.0.0.1",
			Ports:  []registry.Port{{Name: "grpc", Port: 50051, TargetPort: p, Protocol: registry.ProtocolGRPC}},
			Weight: 1, Health: registry.HealthServing,
		})
	}
	return Input{Services: []registry.Service{svc}}
}

// TestServerLiveGRPCXDSClient runs grpc-go's own xDS client against the
// server with the real translator: xds:///svc.ns reaches the backend whose
// endpoint is in the input, and moves when the endpoint changes.
func TestServerLiveGRPCXDSClient(t *testing.T) {
	b1, b2 := healthBackend(t), healthBackend(t)
	var input atomic.Pointer[Input]
	in := liveInput(b1)
	input.Store(&in)

	srv, err := NewServer(ServerOptions{HoldOff: time.Millisecond, MaxDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(GRPCServerOptions()...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, func() Input { return *input.Load() }) }()
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = srv.Close()
		g.Stop()
	})
	eventually(t, srv.Ready, "the first publish")

	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}],
		                 "server_features": ["xds_v3", "ignore_resource_deletion"]}],
		"node": {"id": "live-client", "locality": {}}
	}`, lis.Addr().String())
	resolver, err := grpcxds.NewXDSResolverWithConfigForTesting([]byte(bootstrap))
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient("xds:///svc.ns", grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(resolver))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	client := healthpb.NewHealthClient(cc)

	reaches := func(port uint32) func() bool {
		return func() bool {
			rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer rcancel()
			var p peer.Peer
			_, err := client.Check(rctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p))
			return err == nil && p.Addr != nil && uint32(p.Addr.(*net.TCPAddr).Port) == port
		}
	}
	eventually(t, reaches(b1), "an RPC over xds:///svc.ns to reach backend %d", b1)

	// The client acknowledged every type, by name.
	eventually(t, func() bool {
		ps := srv.Proxies()
		if len(ps) != 1 || ps[0].Kind != KindGRPC || ps[0].NodeID != "live-client" {
			return false
		}
		for _, typ := range []string{resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType} {
			if ps[0].Types[typ].AckedVersion == "" {
				return false
			}
		}
		return ps[0].LastNACK == nil
	}, "the gRPC client to ACK LDS, RDS, CDS and EDS")

	// Move the service to the second backend.
	in2 := liveInput(b2)
	input.Store(&in2)
	srv.Notify()
	eventually(t, reaches(b2), "RPCs to move to backend %d", b2)
	if n := srv.Proxies()[0].LastNACK; n != nil {
		t.Fatalf("the gRPC client rejected a response: %+v", n)
	}
}

// TestServerLiveXDSServerOnDemandListener runs grpc-go's xDS-enabled server
// on 0.0.0.0: the Listener it asks for is in no translation, the ADS server
// builds it on demand, and the server turns SERVING.
func TestServerLiveXDSServerOnDemandListener(t *testing.T) {
	srv, err := NewServer(ServerOptions{HoldOff: time.Millisecond, MaxDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(GRPCServerOptions()...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, func() Input { return Input{} }) }()
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = srv.Close()
		g.Stop()
	})

	bootstrap := fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}],
		                 "server_features": ["xds_v3", "ignore_resource_deletion"]}],
		"node": {"id": "live-server", "locality": {}},
		"server_listener_resource_name_template": %q
	}`, lis.Addr().String(), ServerListenerPrefix+"%s")
	serving := make(chan struct{})
	var once atomic.Bool
	xs, err := grpcxds.NewGRPCServer(
		grpc.Creds(insecure.NewCredentials()),
		grpcxds.BootstrapContentsForTesting([]byte(bootstrap)),
		grpcxds.ServingModeCallback(func(_ net.Addr, args grpcxds.ServingModeChangeArgs) {
			if args.Mode == connectivity.ServingModeServing && once.CompareAndSwap(false, true) {
				close(serving)
			}
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	healthpb.RegisterHealthServer(xs, health.NewServer())
	backend, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = xs.Serve(backend) }()
	t.Cleanup(xs.Stop)
	select {
	case <-serving:
	case <-time.After(waitFor):
		t.Fatal("the xDS-enabled server never became SERVING")
	}
	port := backend.Addr().(*net.TCPAddr).Port
	cc, err := grpc.NewClient(fmt.Sprintf("127.0.0.1:%d", port), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	eventually(t, func() bool {
		rctx, rcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer rcancel()
		_, err := healthpb.NewHealthClient(cc).Check(rctx, &healthpb.HealthCheckRequest{})
		return err == nil
	}, "an RPC to the xDS-enabled server")
	// Go prints a 0.0.0.0 listener as [::] on a dual-stack host.
	if name := ServerListenerPrefix + backend.Addr().String(); !srv.caches.listenersGRPC.has(name) {
		t.Fatalf("no on-demand listener %q in the cache", name)
	}
}
