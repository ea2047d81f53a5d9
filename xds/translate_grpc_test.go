package xds

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpcxds "google.golang.org/grpc/xds"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/meshplane/meshplane/registry"
)

// TestTranslateWithGRPCGo serves Translate's output from go-control-plane's
// stock ADS server to grpc-go's real xDS implementation: three xDS-enabled
// gRPC servers (which need their ServerListener to start serving) and an xDS
// client dialling xds:///greeter.default. The instance weights are 1, 1 and 2
// across two localities laid out so that only a correct per-endpoint weight
// gives 1:1:2 (a locality-weight-squared bug gives 1:3:6, round_robin 1:1:1).
func TestTranslateWithGRPCGo(t *testing.T) {
	if testing.Short() {
		t.Skip("starts gRPC servers and an xDS client; skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	// Backends first: their ports go into the registry snapshot.
	type backend struct {
		lis    net.Listener
		weight uint32
		zone   string
		hits   atomic.Int64
	}
	backends := []*backend{{weight: 1, zone: "a"}, {weight: 1, zone: "b"}, {weight: 2, zone: "b"}}
	grpcPort := registry.Port{Name: "grpc", Port: 50051, Protocol: registry.ProtocolGRPC}
	svc := registry.Service{Name: "greeter", Namespace: "default", Ports: []registry.Port{grpcPort}}
	for i, b := range backends {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		b.lis = lis
		p := grpcPort
		p.TargetPort = uint32(lis.Addr().(*net.TCPAddr).Port)
		svc.Instances = append(svc.Instances, registry.Instance{
			ID: fmt.Sprintf("greeter-%d", i), Service: "greeter", Namespace: "default", Address: "127.0.0.1",
			Ports: []registry.Port{p}, Locality: registry.Locality{Region: "r", Zone: b.zone},
			Weight: b.weight, Health: registry.HealthServing,
		})
	}
	res, err := Translate(Input{Services: []registry.Service{svc}})
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(res); err != nil {
		t.Fatal(err)
	}

	// The management server: go-control-plane's SnapshotCache (ads=false,
	// as gRPC subscribes by name) and stock server.
	snapCache := cachev3.NewSnapshotCache(false, cachev3.IDHash{}, nil)
	snap, err := cachev3.NewSnapshot("1", map[resourcev3.Type][]types.Resource{
		resourcev3.ListenerType: toResources(res.Listeners),
		resourcev3.RouteType:    toResources(res.Routes),
		resourcev3.ClusterType:  toResources(res.Clusters),
		resourcev3.EndpointType: toResources(res.Endpoints),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := snapCache.SetSnapshot(ctx, "test-node", snap); err != nil {
		t.Fatal(err)
	}
	ads := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(ads, serverv3.NewServer(ctx, snapCache, nil))
	adsLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = ads.Serve(adsLis) }()
	defer ads.Stop()

	bootstrap := []byte(fmt.Sprintf(`{
		"xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3", "ignore_resource_deletion"]}],
		"node": {"id": "test-node"},
		"server_listener_resource_name_template": %q
	}`, adsLis.Addr().String(), ServerListenerPrefix+"%s"))

	// xDS-enabled servers: each counts the RPCs it gets on any method.
	for _, b := range backends {
		srv, err := grpcxds.NewGRPCServer(grpc.Creds(insecure.NewCredentials()), grpcxds.BootstrapContentsForTesting(bootstrap),
			grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
				b.hits.Add(1)
				if err := stream.RecvMsg(&emptypb.Empty{}); err != nil {
					return err
				}
				return stream.SendMsg(&emptypb.Empty{})
			}))
		if err != nil {
			t.Fatal(err)
		}
		go func() { _ = srv.Serve(b.lis) }()
		defer srv.Stop()
	}

	resolverBuilder, err := grpcxds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///greeter.default", grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithResolvers(resolverBuilder))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	call := func() error {
		callCtx, callCancel := context.WithTimeout(ctx, 10*time.Second)
		defer callCancel()
		return conn.Invoke(callCtx, "/meshplane.test.Echo/Echo", &emptypb.Empty{}, &emptypb.Empty{}, grpc.WaitForReady(true))
	}

	// Warm up until every backend has answered (servers start NOT_SERVING
	// until their Listener arrives; ring hash connects lazily).
	for {
		if err := call(); err != nil && ctx.Err() != nil {
			t.Fatalf("warm-up: %v", err)
		}
		if backends[0].hits.Load() > 0 && backends[1].hits.Load() > 0 && backends[2].hits.Load() > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("not every backend reached: %d %d %d", backends[0].hits.Load(), backends[1].hits.Load(), backends[2].hits.Load())
		}
	}
	for _, b := range backends {
		b.hits.Store(0)
	}
	const rpcs = 4000
	for i := 0; i < rpcs; i++ {
		if err := call(); err != nil {
			t.Fatalf("rpc %d: %v", i, err)
		}
	}
	a, b, c := float64(backends[0].hits.Load()), float64(backends[1].hits.Load()), float64(backends[2].hits.Load())
	t.Logf("spread over %d RPCs for weights 1:1:2: %v : %v : %v", rpcs, a, b, c)
	// Expected 1000:1000:2000. The ring's arcs and the random hashes add a
	// few percent of noise; the bounds reject 1:1:1 and 1:3:6 by far.
	if r := c / a; r < 1.5 || r > 2.6 {
		t.Errorf("weight-2 / weight-1 (other locality) = %.2f, want ≈ 2", r)
	}
	if r := c / b; r < 1.5 || r > 2.6 {
		t.Errorf("weight-2 / weight-1 (same locality) = %.2f, want ≈ 2", r)
	}
	if r := a / b; r < 0.7 || r > 1.4 {
		t.Errorf("weight-1 / weight-1 across localities = %.2f, want ≈ 1", r)
	}
}

func toResources[T types.Resource](in []T) []types.Resource {
	out := make([]types.Resource, 0, len(in))
	for _, r := range in {
		out = append(out, r)
	}
	return out
}
