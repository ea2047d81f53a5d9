package xds

import (
	"context"
	"fmt"
	"net"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"google.golang.org/grpc"
)

func TestCacheEntryVersionIsContentHash(t *testing.T) {
	a1, err := newEntry(resourcev3.EndpointType, "a", svCLA("a", 1, 2))
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := newEntry(resourcev3.EndpointType, "a", svCLA("a", 1, 2))
	a3, _ := newEntry(resourcev3.EndpointType, "a", svCLA("a", 1, 3))
	if a1.version != a2.version {
		t.Fatal("equal content, different versions")
	}
	if a1.version == a3.version {
		t.Fatal("different content, same version")
	}
}

func TestCacheStateVersion(t *testing.T) {
	tests := map[string]struct {
		a, b  map[string]string
		equal bool
	}{
		"same set":              {a: map[string]string{"x": "1", "y": "2"}, b: map[string]string{"y": "2", "x": "1"}, equal: true},
		"empty":                 {a: map[string]string{}, b: nil, equal: true},
		"other version":         {a: map[string]string{"x": "1"}, b: map[string]string{"x": "2"}},
		"swapped":               {a: map[string]string{"x": "1", "y": "2"}, b: map[string]string{"x": "2", "y": "1"}},
		"name/version boundary": {a: map[string]string{"ab": "c"}, b: map[string]string{"a": "bc"}},
		"subset":                {a: map[string]string{"x": "1"}, b: map[string]string{"x": "1", "y": "2"}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := stateVersion(tc.a) == stateVersion(tc.b); got != tc.equal {
				t.Fatalf("stateVersion(%v) == stateVersion(%v) is %v, want %v", tc.a, tc.b, got, tc.equal)
			}
		})
	}
}

func TestCacheSetPublishesOnlyChanges(t *testing.T) {
	c := newTypeCache(resourcev3.EndpointType)
	build := func(ports map[string]uint32) map[string]*entry {
		out := map[string]*entry{}
		for name, p := range ports {
			e, err := newEntry(resourcev3.EndpointType, name, svCLA(name, p))
			if err != nil {
				t.Fatal(err)
			}
			out[name] = e
		}
		return out
	}
	if ch, rm := c.set("", build(map[string]uint32{"a": 1, "b": 2, "c": 3})); ch != 3 || rm != 0 {
		t.Fatalf("first set: %d changed %d removed, want 3 0", ch, rm)
	}
	anyB := c.shared["b"].any
	if ch, rm := c.set("", build(map[string]uint32{"a": 1, "b": 2, "c": 4})); ch != 1 || rm != 0 {
		t.Fatalf("one endpoint changed: %d changed %d removed, want 1 0", ch, rm)
	}
	if c.shared["b"].any != anyB {
		t.Fatal("an unchanged resource was replaced: its marshalled bytes are no longer shared")
	}
	if ch, rm := c.set("", build(map[string]uint32{"a": 1})); ch != 0 || rm != 2 {
		t.Fatalf("two deleted: %d changed %d removed, want 0 2", ch, rm)
	}
	// Node layers shadow shared resources and go away with the node.
	c.set("n1", build(map[string]uint32{"a": 9, "z": 1}))
	if c.lookupLocked("n1", "a").version == c.lookupLocked("", "a").version {
		t.Fatal("layer does not shadow the shared resource")
	}
	if c.lookupLocked("n2", "z") != nil {
		t.Fatal("another node sees n1's layer")
	}
	c.set("n1", nil)
	if len(c.layers) != 0 || c.lookupLocked("n1", "z") != nil {
		t.Fatal("layer not removed")
	}
}

func TestCacheClassify(t *testing.T) {
	tests := map[string]struct {
		typeURL string
		envoy   bool
		want    string
	}{
		"grpc lds":  {typeURL: resourcev3.ListenerType, want: muxListenersGRPC},
		"envoy lds": {typeURL: resourcev3.ListenerType, envoy: true, want: muxListenersEnvoy},
		"grpc cds":  {typeURL: resourcev3.ClusterType, want: muxClusters},
		"envoy cds": {typeURL: resourcev3.ClusterType, envoy: true, want: muxClusters},
		"rds":       {typeURL: resourcev3.RouteType, envoy: true, want: muxRoutes},
		"eds":       {typeURL: resourcev3.EndpointType, want: muxEndpoints},
		"sds":       {typeURL: resourcev3.SecretType, envoy: true, want: muxOther},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			n := grpcNode("x")
			if tc.envoy {
				n = envoyNode("x", nil)
			}
			if got := classify(tc.typeURL, n); got != tc.want {
				t.Fatalf("classify = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestServerEnvoyReconnectWithNamesStaysWildcard(t *testing.T) {
	f := newFixture(t, baseResources())
	c := newDeltaClient(t, f.conn(), envoyNode("e1", nil))
	// A reconnecting Envoy that lists the clusters it had instead of "*".
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResourceNamesSubscribe: []string{"a"}})
	r := c.recv()
	if got := deltaNames(r); !svEqual(got, []string{"a", "b"}) {
		t.Fatalf("CDS %v, want every cluster [a b]", got)
	}
	c.ack(r)
	res := baseResources()
	res.Clusters = append(res.Clusters, svCluster("new", 0))
	f.publish(res)
	if got := deltaNames(c.recv()); !svEqual(got, []string{"new"}) {
		t.Fatalf("CDS update %v, want the new cluster", got)
	}
	// SotW: an unknown type is not answered, and the stream stays open.
	s := newSotwClient(t, f.conn(), envoyNode("e2", nil))
	s.send(resourcev3.SecretType, []string{"default"}, "", "", nil)
	s.send(resourcev3.EndpointType, []string{"a"}, "", "", nil)
	if r := s.recv(); r.GetTypeUrl() != resourcev3.EndpointType {
		t.Fatalf("got %s first, want EDS (no answer for SDS)", r.GetTypeUrl())
	}
}

func TestServerAnswersNothingBeforeFirstPublish(t *testing.T) {
	// A restarted control plane must not tell reconnecting proxies that
	// nothing exists: watches opened before the first publish wait for it.
	srv, err := NewServer(ServerOptions{
		Translate:        func(Input) (*Resources, error) { return baseResources(), nil },
		Validate:         func(*Resources) error { return nil },
		TranslateSidecar: func(Input, Sidecar) (*Resources, error) { return &Resources{}, nil },
		ValidateSidecar:  func(_, _ *Resources) error { return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	f := &fixture{t: t, srv: srv, addr: lis.Addr().String()}

	grpcClient := newSotwClient(t, f.conn(), grpcNode("g"))
	grpcClient.send(resourcev3.ListenerType, []string{"a.ns"}, "", "", nil)
	envoy := newDeltaClient(t, f.conn(), envoyNode("e", nil))
	envoy.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	eventually(t, func() bool {
		return srv.caches.listenersGRPC.numWatches() == 1 && srv.caches.clusters.numWatches() == 1
	}, "both watches")
	if srv.Ready() {
		t.Fatal("ready before the first publish")
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, func() Input { return Input{} }) }()
	t.Cleanup(func() { cancel(); <-done; _ = srv.Close() })

	if got := sotwNames(t, grpcClient.recv()); !svEqual(got, []string{"a.ns"}) {
		t.Fatalf("gRPC client's first LDS %v, want [a.ns]", got)
	}
	if got := deltaNames(envoy.recv()); !svEqual(got, []string{"a", "b"}) {
		t.Fatalf("Envoy's first CDS %v, want [a b]", got)
	}
}

func TestServerEnvoyDeltaReconnectNoPush(t *testing.T) {
	f := newFixture(t, baseResources())
	fn := func(_ Input, sc Sidecar) (*Resources, error) {
		return &Resources{Clusters: []*clusterv3.Cluster{svCluster("inbound|8080", 9080)}}, nil
	}
	f.sidecar.Store(&fn)
	meta := map[string]any{MetaService: "a.ns", MetaInboundPorts: "8080"}
	c := newDeltaClient(t, f.conn(), envoyNode("sc", meta))
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	r := c.recv()
	versions := map[string]string{}
	for _, res := range r.GetResources() {
		versions[res.GetName()] = res.GetVersion()
	}
	if len(versions) != 3 {
		t.Fatalf("first CDS %v, want a, b and the sidecar's cluster", deltaNames(r))
	}
	c.ack(r)

	// The Envoy reconnects (to this or another replica) with what it has.
	c2 := newDeltaClient(t, f.conn(), envoyNode("sc", meta))
	c2.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, InitialResourceVersions: versions})
	// A wildcard subscriber's first request is answered, to end its
	// initialisation, but with nothing: it has everything.
	if r := c2.recv(); len(r.GetResources()) != 0 || len(r.GetRemovedResources()) != 0 {
		t.Fatalf("reconnected Envoy was sent %v, removed %v; want nothing", deltaNames(r), r.GetRemovedResources())
	} else {
		c2.ack(r)
	}
	eventually(t, func() bool { return f.srv.caches.clusters.numWatches() == 2 }, "both watches")
	res := baseResources()
	res.Clusters[0] = svCluster("a", 5)
	f.publish(res)
	if got := deltaNames(c2.recv()); !svEqual(got, []string{"a"}) {
		t.Fatalf("reconnected Envoy got %v first, want only the changed [a]", got)
	}
}

// TestCacheSweepsEmptyWatchSets: sets of names nobody watches any more are
// kept across a push (re-opened at once) but dropped once most are empty.
func TestCacheSweepsEmptyWatchSets(t *testing.T) {
	c := newTypeCache(resourcev3.EndpointType)
	c.set("", map[string]*entry{})
	var cancels []func()
	for i := range 2000 {
		name := fmt.Sprint("n-", i)
		req := &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{name}, ResponseNonce: "x"}
		cancel, err := c.CreateWatch(req, streamv3.NewSotwSubscription([]string{name}, false), make(chan cachev3.Response, 1))
		if err != nil {
			t.Fatal(err)
		}
		cancels = append(cancels, cancel)
	}
	for _, cancel := range cancels {
		cancel()
		cancel() // twice, as a fired and then replaced watch is
	}
	c.mu.Lock()
	sets, empty := len(c.byName), c.emptySets
	c.mu.Unlock()
	if sets != 2000 || empty != 2000 {
		t.Fatalf("%d sets, %d counted empty; want 2000 kept, all counted", sets, empty)
	}
	e, err := newEntry(resourcev3.EndpointType, "other", svCLA("other", 1))
	if err != nil {
		t.Fatal(err)
	}
	c.apply(map[string]*entry{"other": e}, nil)
	if c.numWatches() != 0 || len(c.byName) != 0 || c.emptySets != 0 {
		t.Fatalf("after a publish: %d sets, %d empty, want none", len(c.byName), c.emptySets)
	}
}
