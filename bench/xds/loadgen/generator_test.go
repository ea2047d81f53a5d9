package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// testServer is a stock go-control-plane ADS server: a LinearCache per type
// behind a MuxCache, the same arrangement Meshplane's server starts from.
type testServer struct {
	addr string
	eds  *cache.LinearCache
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		}},
	}
}

// markerCLA is cluster name's endpoints: three instances, the first one
// (the marker in the plans below) with the given weight.
func markerCLA(name string, weight uint32) *endpointv3.ClusterLoadAssignment {
	return cla(name,
		lbe("10.0.0.1", 8080, wrapperspb.UInt32(weight)),
		lbe("10.0.0.2", 8080, wrapperspb.UInt32(1)),
		lbe("10.0.0.3", 8080, wrapperspb.UInt32(1)))
}

func startServer(t *testing.T, clusters []string) *testServer {
	t.Helper()
	cds, clas := map[string]types.Resource{}, map[string]types.Resource{}
	for _, c := range clusters {
		cds[c] = edsCluster(c)
		clas[c] = markerCLA(c, 1)
	}
	// A static cluster, as a sidecar's local-application cluster is: a
	// wildcard client must not wait for endpoints it will never get.
	cds["static-local"] = &clusterv3.Cluster{Name: "static-local", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}
	eds := cache.NewLinearCache(resource.EndpointType, cache.WithInitialResources(clas))
	mux := &cache.MuxCache{
		Classify:      func(r *cache.Request) string { return r.GetTypeUrl() },
		ClassifyDelta: func(r *cache.DeltaRequest) string { return r.GetTypeUrl() },
		Caches: map[string]cache.Cache{
			resource.ClusterType:  cache.NewLinearCache(resource.ClusterType, cache.WithInitialResources(cds)),
			resource.EndpointType: eds,
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, server.NewServer(ctx, mux, nil))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(func() {
		cancel()
		gs.Stop()
	})
	return &testServer{addr: lis.Addr().String(), eds: eds}
}

// events runs the generator and returns its decoded events, a command
// writer, and a channel that yields Run's result.
func runGenerator(t *testing.T, plan Plan) (<-chan Event, io.WriteCloser, <-chan error) {
	t.Helper()
	outR, outW := io.Pipe()
	cmdR, cmdW := io.Pipe()
	g, err := New(plan, outW)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	done := make(chan error, 1)
	go func() {
		done <- g.Run(ctx, cmdR)
		_ = outW.Close()
	}()
	events := make(chan Event, 100)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(outR)
		sc.Buffer(nil, 16<<20)
		for sc.Scan() {
			var ev Event
			if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
				t.Errorf("event %q: %v", sc.Text(), err)
				return
			}
			events <- ev
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = cmdW.Close()
		for range events {
		}
	})
	return events, cmdW, done
}

// next returns the next event of the given kind, skipping progress events.
func next(t *testing.T, events <-chan Event, kind string) Event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("events ended while waiting for %q", kind)
			}
			if ev.Event == kind {
				return ev
			}
			if ev.Event != "progress" {
				t.Fatalf("got event %+v while waiting for %q", ev, kind)
			}
		case <-deadline:
			t.Fatalf("no %q event within 30 s", kind)
		}
	}
}

func TestGeneratorRounds(t *testing.T) {
	plan := testPlan(12)
	plan.Scoped, plan.Wildcard, plan.PerClient, plan.Shared = 20, 2, 4, 5
	plan.DialConcurrency = 4
	srv := startServer(t, plan.Clusters)
	plan.Addr = srv.addr
	events, commands, done := runGenerator(t, plan)

	ready := next(t, events, "ready")
	if ready.Ready != 22 || ready.Failed != 0 || ready.OpenFilesLimit == 0 {
		t.Fatalf("ready event %+v: want 22 ready, 0 failed, the open files limit", ready)
	}
	shared := plan.Clusters[plan.Shared]
	for _, weight := range []uint32{7, 9} {
		before := time.Now().UnixNano()
		if err := srv.eds.UpdateResource(shared, markerCLA(shared, weight)); err != nil {
			t.Fatal(err)
		}
		r := next(t, events, "round")
		if r.Marker != weight || !r.Complete || len(r.ScopedAckNs) != 20 || len(r.WildcardAckNs) != 2 {
			t.Fatalf("round %d: marker %d, complete %v, %d scoped, %d wildcard ACKs; want complete, 20 and 2",
				weight, r.Marker, r.Complete, len(r.ScopedAckNs), len(r.WildcardAckNs))
		}
		for _, at := range append(r.ScopedAckNs, r.WildcardAckNs...) {
			if at < before {
				t.Fatalf("round %d: an ACK at %d precedes the change at %d", weight, at, before)
			}
		}
	}
	// A change to another cluster is not a round: the next round seen is
	// still the marker's.
	other := plan.Clusters[0]
	if err := srv.eds.UpdateResource(other, markerCLA(other, 5)); err != nil {
		t.Fatal(err)
	}
	// Asking for a round nobody saw writes it, incomplete and empty.
	if _, err := fmt.Fprintln(commands, "report 42"); err != nil {
		t.Fatal(err)
	}
	if r := next(t, events, "round"); r.Marker != 42 || r.Complete || len(r.ScopedAckNs)+len(r.WildcardAckNs) != 0 {
		t.Fatalf("reported round %+v: want marker 42, incomplete, empty", r)
	}
	if _, err := fmt.Fprintln(commands, "bogus"); err != nil {
		t.Fatal(err)
	}
	if ev := next(t, events, "bad-command"); !strings.Contains(ev.Error, "bogus") {
		t.Fatalf("bad-command event %+v: want the line quoted", ev)
	}
	if _, err := fmt.Fprintln(commands, "quit"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30 s of quit")
	}
}

func TestGeneratorUnreachableServer(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close() // nothing listens there now
	plan := testPlan(5)
	plan.Addr, plan.Scoped, plan.Wildcard = addr, 3, 1
	events, _, _ := runGenerator(t, plan)
	ready := next(t, events, "error")
	if !strings.Contains(ready.Error, "loadgen:") {
		t.Errorf("error event %+v: want a loadgen error", ready)
	}
	for {
		ev := <-events
		if ev.Event == "ready" {
			if ev.Ready != 0 || ev.Failed != 4 {
				t.Fatalf("ready event %+v: want 0 ready, 4 failed", ev)
			}
			return
		}
		if ev.Event != "error" && ev.Event != "progress" {
			t.Fatalf("unexpected event %+v", ev)
		}
	}
}
