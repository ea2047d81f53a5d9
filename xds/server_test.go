package xds

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// waitFor is how long a test waits for a condition on this noisy machine.
const waitFor = 30 * time.Second

// fixture is a running Server on loopback whose translation the test sets.
type fixture struct {
	t       *testing.T
	srv     *Server
	addr    string
	reg     *prometheus.Registry
	res     atomic.Pointer[Resources]
	sidecar atomic.Pointer[func(Input, Sidecar) (*Resources, error)]
	fail    atomic.Bool
}

// newFixture starts a Server with hand-built resources (no hold-off worth
// speaking of) on a loopback gRPC server.
func newFixture(t *testing.T, res *Resources, mod ...func(*ServerOptions)) *fixture {
	t.Helper()
	f := &fixture{t: t, reg: prometheus.NewRegistry()}
	f.res.Store(res)
	opts := ServerOptions{
		Registerer: f.reg,
		HoldOff:    time.Millisecond,
		MaxDelay:   10 * time.Millisecond,
		Translate: func(Input) (*Resources, error) {
			if f.fail.Load() {
				return nil, errors.New("translation broken on purpose")
			}
			return f.res.Load(), nil
		},
		Validate: func(*Resources) error { return nil },
		TranslateSidecar: func(in Input, sc Sidecar) (*Resources, error) {
			if fn := f.sidecar.Load(); fn != nil {
				return (*fn)(in, sc)
			}
			return &Resources{}, nil
		},
		ValidateSidecar: func(_, _ *Resources) error { return nil },
	}
	for _, m := range mod {
		m(&opts)
	}
	srv, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	g := grpc.NewServer(GRPCServerOptions()...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = lis.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, func() Input { return Input{} }) }()
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		_ = srv.Close()
		g.Stop()
	})
	f.waitPublishes(1)
	return f
}

// publish replaces the translation and waits until it is published.
func (f *fixture) publish(res *Resources) {
	f.t.Helper()
	before := metricValue(f.srv.metrics.publishes)
	f.res.Store(res)
	f.srv.Notify()
	f.waitPublishes(before + 1)
}

func (f *fixture) waitPublishes(n float64) {
	f.t.Helper()
	eventually(f.t, func() bool { return metricValue(f.srv.metrics.publishes) >= n }, "%v publishes", n)
}

func (f *fixture) conn() *grpc.ClientConn {
	f.t.Helper()
	cc, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = cc.Close() })
	return cc
}

func eventually(t *testing.T, cond func() bool, format string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for "+format, args...)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// grpcNode and envoyNode are the two kinds of node.
func grpcNode(id string) *corev3.Node {
	return &corev3.Node{Id: id, UserAgentName: "gRPC Go"}
}

func envoyNode(id string, meta map[string]any) *corev3.Node {
	m, err := structpb.NewStruct(meta)
	if err != nil {
		panic(err)
	}
	return &corev3.Node{Id: id, UserAgentName: "envoy", Metadata: m}
}

// sotwClient is a minimal SotW ADS client: the test drives every request.
type sotwClient struct {
	t      *testing.T
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	node   *corev3.Node
	resps  chan *discoveryv3.DiscoveryResponse
	sent   bool
}

func newSotwClient(t *testing.T, cc *grpc.ClientConn, node *corev3.Node) *sotwClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &sotwClient{t: t, stream: st, node: node, resps: make(chan *discoveryv3.DiscoveryResponse, 100)}
	go func() {
		defer close(c.resps)
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			c.resps <- r
		}
	}()
	return c
}

func (c *sotwClient) send(typeURL string, names []string, version, nonce string, nack error) {
	c.t.Helper()
	req := &discoveryv3.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names, VersionInfo: version, ResponseNonce: nonce}
	if !c.sent {
		req.Node = c.node
		c.sent = true
	}
	if nack != nil {
		req.ErrorDetail = &rpcstatus.Status{Code: 3, Message: nack.Error()}
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *sotwClient) recv() *discoveryv3.DiscoveryResponse {
	c.t.Helper()
	select {
	case r, ok := <-c.resps:
		if !ok {
			c.t.Fatal("stream closed")
		}
		return r
	case <-time.After(waitFor):
		c.t.Fatal("no response")
	}
	return nil
}

// ack acknowledges a response, keeping the subscription.
func (c *sotwClient) ack(r *discoveryv3.DiscoveryResponse, names []string) {
	c.t.Helper()
	c.send(r.GetTypeUrl(), names, r.GetVersionInfo(), r.GetNonce(), nil)
}

// deltaClient is a minimal delta ADS client.
type deltaClient struct {
	t      *testing.T
	stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	node   *corev3.Node
	resps  chan *discoveryv3.DeltaDiscoveryResponse
	sent   bool
	err    error // the stream's error, set before resps closes
}

func newDeltaClient(t *testing.T, cc *grpc.ClientConn, node *corev3.Node) *deltaClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &deltaClient{t: t, stream: st, node: node, resps: make(chan *discoveryv3.DeltaDiscoveryResponse, 100)}
	go func() {
		defer close(c.resps)
		for {
			r, err := st.Recv()
			if err != nil {
				c.err = err
				return
			}
			c.resps <- r
		}
	}()
	return c
}

func (c *deltaClient) send(req *discoveryv3.DeltaDiscoveryRequest) {
	c.t.Helper()
	if !c.sent {
		req.Node = c.node
		c.sent = true
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *deltaClient) recv() *discoveryv3.DeltaDiscoveryResponse {
	c.t.Helper()
	select {
	case r, ok := <-c.resps:
		if !ok {
			c.t.Fatal("stream closed")
		}
		return r
	case <-time.After(waitFor):
		c.t.Fatal("no response")
	}
	return nil
}

func (c *deltaClient) ack(r *discoveryv3.DeltaDiscoveryResponse) {
	c.t.Helper()
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()})
}

// Resource builders: small, valid enough for the cache (which does not look
// inside them).
func svCluster(name string, timeoutSeconds int64) *clusterv3.Cluster {
	c := &clusterv3.Cluster{Name: name, ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}}
	if timeoutSeconds > 0 {
		c.PerConnectionBufferLimitBytes = wrapperspb.UInt32(uint32(timeoutSeconds))
	}
	return c
}

func svCLA(name string, ports ...uint32) *endpointv3.ClusterLoadAssignment {
	l := &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{}, LoadBalancingWeight: wrapperspb.UInt32(1)}
	for _, p := range ports {
		l.LbEndpoints = append(l.LbEndpoints, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: p}},
			}}},
		}})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{l}}
}

func svAPIListener(name string) *listenerv3.Listener {
	return &listenerv3.Listener{Name: name, ApiListener: &listenerv3.ApiListener{ApiListener: &anypb.Any{TypeUrl: "x"}}}
}

func svSocketListener(name string, port uint32) *listenerv3.Listener {
	return &listenerv3.Listener{Name: name, Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: "0.0.0.0", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}},
	}}}
}

func svRouteConfig(name string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name}
}

// names lists the resource names in a response, sorted.
func sotwNames(t *testing.T, r *discoveryv3.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, a := range r.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, resourceName(m))
	}
	sort.Strings(out)
	return out
}

func deltaNames(r *discoveryv3.DeltaDiscoveryResponse) []string {
	var out []string
	for _, res := range r.GetResources() {
		out = append(out, res.GetName())
	}
	sort.Strings(out)
	return out
}

func svUnpackCLA(t *testing.T, a *anypb.Any) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	c := &endpointv3.ClusterLoadAssignment{}
	if err := a.UnmarshalTo(c); err != nil {
		t.Fatal(err)
	}
	return c
}

func svEqual(a, b []string) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

// baseResources is two services' worth of resources.
func baseResources() *Resources {
	return &Resources{
		Listeners:      []*listenerv3.Listener{svAPIListener("a.ns"), svAPIListener("b.ns")},
		EnvoyListeners: []*listenerv3.Listener{svSocketListener("outbound_http", 15001)},
		Routes:         []*routev3.RouteConfiguration{svRouteConfig("a.ns"), svRouteConfig("b.ns"), svRouteConfig("outbound_http")},
		Clusters:       []*clusterv3.Cluster{svCluster("a", 0), svCluster("b", 0)},
		Endpoints:      []*endpointv3.ClusterLoadAssignment{svCLA("a", 1000), svCLA("b", 2000)},
	}
}

func TestServerSotWByName(t *testing.T) {
	f := newFixture(t, baseResources())
	c := newSotwClient(t, f.conn(), grpcNode("client-1"))

	c.send(resourcev3.EndpointType, []string{"a"}, "", "", nil)
	r := c.recv()
	if got := sotwNames(t, r); !svEqual(got, []string{"a"}) {
		t.Fatalf("first response has %v, want [a]", got)
	}
	c.ack(r, []string{"a"})

	// An unrelated change (b), then a related one (a): the next response
	// must be the one for a, so nothing was sent for b.
	res := baseResources()
	res.Endpoints[1] = svCLA("b", 2000, 2001)
	f.publish(res)
	res = baseResources()
	res.Endpoints[1] = svCLA("b", 2000, 2001)
	res.Endpoints[0] = svCLA("a", 1000, 1001)
	f.publish(res)
	r2 := c.recv()
	if got := sotwNames(t, r2); !svEqual(got, []string{"a"}) {
		t.Fatalf("update has %v, want [a]", got)
	}
	if n := len(svUnpackCLA(t, r2.GetResources()[0]).GetEndpoints()[0].GetLbEndpoints()); n != 2 {
		t.Fatalf("update of a has %d endpoints, want 2", n)
	}
	if r2.GetVersionInfo() == r.GetVersionInfo() {
		t.Fatal("version did not change with content")
	}
	c.ack(r2, []string{"a"})

	eventually(t, func() bool {
		ps := f.srv.Proxies()
		return len(ps) == 1 && ps[0].Types[resourcev3.EndpointType].AckedVersion == r2.GetVersionInfo()
	}, "proxy status to show the acked version")
	p := f.srv.Proxies()[0]
	if p.NodeID != "client-1" || p.Kind != KindGRPC || p.UserAgent != "gRPC Go" || p.Address == "" || p.SubscribedResources != 1 {
		t.Fatalf("proxy status %+v", p)
	}
	if p.Types[resourcev3.EndpointType].AckedNonce != r2.GetNonce() {
		t.Fatalf("acked nonce %q, want %q", p.Types[resourcev3.EndpointType].AckedNonce, r2.GetNonce())
	}
	if got := metricValue(f.srv.metrics.connected.WithLabelValues("grpc")); got != 1 {
		t.Fatalf("connected grpc proxies = %v, want 1", got)
	}
	if got := metricValue(f.srv.metrics.pushes.WithLabelValues("eds")); got != 2 {
		t.Fatalf("eds pushes = %v, want 2", got)
	}
	eventually(t, func() bool { return histogramCount(f.srv.metrics.convergence) == 1 },
		"a convergence observation")
}

func TestServerSotWFullStateTypes(t *testing.T) {
	f := newFixture(t, baseResources())
	c := newSotwClient(t, f.conn(), grpcNode("client-1"))
	// CDS is full-state: a change to one subscribed cluster resends both.
	c.send(resourcev3.ClusterType, []string{"a", "b", "missing"}, "", "", nil)
	r := c.recv()
	if got := sotwNames(t, r); !svEqual(got, []string{"a", "b"}) {
		t.Fatalf("CDS has %v, want [a b]", got)
	}
	c.ack(r, []string{"a", "b", "missing"})
	res := baseResources()
	res.Clusters[0] = svCluster("a", 7)
	f.publish(res)
	r = c.recv()
	if got := sotwNames(t, r); !svEqual(got, []string{"a", "b"}) {
		t.Fatalf("CDS update has %v, want [a b]", got)
	}
	c.ack(r, []string{"a", "b", "missing"})
	// Deleting b sends the state without b.
	res.Clusters = res.Clusters[:1]
	f.publish(res)
	r = c.recv()
	if got := sotwNames(t, r); !svEqual(got, []string{"a"}) {
		t.Fatalf("CDS after delete has %v, want [a]", got)
	}
}

func TestServerReplicaReconnectNoPush(t *testing.T) {
	// Two replicas built from the same input: a client that moves from one
	// to the other with the version it holds gets nothing until a change.
	f1 := newFixture(t, baseResources())
	f2 := newFixture(t, baseResources())
	c1 := newSotwClient(t, f1.conn(), grpcNode("client-1"))
	c1.send(resourcev3.EndpointType, []string{"a", "b"}, "", "", nil)
	r := c1.recv()
	c1.ack(r, []string{"a", "b"})

	c2 := newSotwClient(t, f2.conn(), grpcNode("client-1"))
	c2.send(resourcev3.EndpointType, []string{"a", "b"}, r.GetVersionInfo(), "", nil)
	// The request must open its watch before the change, else it rightly
	// gets everything (its version is then stale).
	eventually(t, func() bool { return f2.srv.caches.endpoints.numWatches() == 1 }, "the resumed watch")
	// A change on the second replica must be the first thing it sends.
	res := baseResources()
	res.Endpoints[1] = svCLA("b", 3000)
	f2.publish(res)
	r2 := c2.recv()
	if got := sotwNames(t, r2); !svEqual(got, []string{"b"}) {
		t.Fatalf("after reconnect got %v, want only the changed [b]", got)
	}
	// The same change on the first replica yields the same version.
	f1.publish(res)
	r1 := c1.recv()
	if r1.GetVersionInfo() != r2.GetVersionInfo() {
		t.Fatalf("replicas disagree on version: %q vs %q", r1.GetVersionInfo(), r2.GetVersionInfo())
	}
}

func TestServerDeltaAddRemove(t *testing.T) {
	f := newFixture(t, baseResources())
	c := newDeltaClient(t, f.conn(), grpcNode("delta-1"))
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"a", "b"}})
	r := c.recv()
	if got := deltaNames(r); !svEqual(got, []string{"a", "b"}) {
		t.Fatalf("delta first response %v, want [a b]", got)
	}
	versions := map[string]string{}
	for _, res := range r.GetResources() {
		versions[res.GetName()] = res.GetVersion()
	}
	c.ack(r)

	res := baseResources()
	res.Endpoints = []*endpointv3.ClusterLoadAssignment{svCLA("a", 1000, 1001)}
	f.publish(res)
	r = c.recv()
	if got := deltaNames(r); !svEqual(got, []string{"a"}) {
		t.Fatalf("delta update %v, want [a]", got)
	}
	if !svEqual(r.GetRemovedResources(), []string{"b"}) {
		t.Fatalf("delta removed %v, want [b]", r.GetRemovedResources())
	}
	if r.GetResources()[0].GetVersion() == versions["a"] {
		t.Fatal("resource version did not change with content")
	}
	c.ack(r)

	res = baseResources()
	res.Endpoints[0] = svCLA("a", 1000, 1001)
	f.publish(res)
	r = c.recv()
	if got := deltaNames(r); !svEqual(got, []string{"b"}) || len(r.GetRemovedResources()) != 0 {
		t.Fatalf("delta re-add: resources %v removed %v, want [b] and none", got, r.GetRemovedResources())
	}
	if r.GetResources()[0].GetVersion() != versions["b"] {
		t.Fatal("same content, different version")
	}

	// A delta client that reconnects with its versions gets nothing.
	c2 := newDeltaClient(t, f.conn(), grpcNode("delta-2"))
	c2.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"b"},
		InitialResourceVersions: map[string]string{"b": versions["b"]}})
	eventually(t, func() bool { return f.srv.caches.endpoints.numWatches() == 1 }, "the resumed delta watch (the first client, not ACKing, has none)")
	res = baseResources()
	res.Endpoints[0] = svCLA("a", 1000, 1001)
	res.Endpoints[1] = svCLA("b", 5)
	f.publish(res)
	r = c2.recv()
	if got := deltaNames(r); !svEqual(got, []string{"b"}) || r.GetResources()[0].GetVersion() == versions["b"] {
		t.Fatalf("reconnected delta client got %v first, want only the changed b", got)
	}
}

func TestServerEnvoyGetsEnvoyListenersNeverAPIListeners(t *testing.T) {
	f := newFixture(t, baseResources())
	fn := func(_ Input, sc Sidecar) (*Resources, error) {
		res := &Resources{}
		for _, p := range sc.InboundPorts {
			name := InboundName(p.Port)
			res.EnvoyListeners = append(res.EnvoyListeners, svSocketListener(name, p.Port))
			res.Clusters = append(res.Clusters, svCluster(name, int64(p.AppPort)))
		}
		return res, nil
	}
	f.sidecar.Store(&fn)
	meta := map[string]any{MetaService: "a.ns", MetaInboundPorts: "8080:9080/HTTP"}

	for _, delta := range []bool{true, false} {
		t.Run(fmt.Sprintf("delta=%v", delta), func(t *testing.T) {
			id := fmt.Sprintf("sidecar-%v", delta)
			var lds, cds []string
			if delta {
				c := newDeltaClient(t, f.conn(), envoyNode(id, meta))
				c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType})
				r := c.recv()
				cds = deltaNames(r)
				c.ack(r)
				c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ListenerType})
				r = c.recv()
				lds = deltaNames(r)
				c.ack(r)
			} else {
				c := newSotwClient(t, f.conn(), envoyNode(id, meta))
				c.send(resourcev3.ClusterType, nil, "", "", nil)
				r := c.recv()
				cds = sotwNames(t, r)
				c.ack(r, nil)
				c.send(resourcev3.ListenerType, nil, "", "", nil)
				r = c.recv()
				lds = sotwNames(t, r)
				c.ack(r, nil)
			}
			if want := []string{"a", "b", "inbound|8080"}; !svEqual(cds, want) {
				t.Errorf("Envoy CDS %v, want %v", cds, want)
			}
			if want := []string{"inbound|8080", "outbound_http"}; !svEqual(lds, want) {
				t.Errorf("Envoy LDS %v, want %v (never an api_listener)", lds, want)
			}
			eventually(t, func() bool { return metricValue(f.srv.metrics.connected.WithLabelValues("envoy")) == 1 },
				"one connected envoy")
		})
	}

	// A gRPC node gets api_listeners by name, and never a sidecar's cluster
	// even when it asks for it.
	c := newSotwClient(t, f.conn(), grpcNode("sidecar-true"))
	c.send(resourcev3.ListenerType, []string{"a.ns", "outbound_http"}, "", "", nil)
	if got := sotwNames(t, c.recv()); !svEqual(got, []string{"a.ns"}) {
		t.Fatalf("gRPC LDS %v, want [a.ns]", got)
	}
	c.send(resourcev3.ClusterType, []string{"inbound|8080", "b"}, "", "", nil)
	if got := sotwNames(t, c.recv()); !svEqual(got, []string{"b"}) {
		t.Fatalf("gRPC CDS %v, want [b]", got)
	}
}

func TestServerSidecarLayerFollowsPublishAndDisconnect(t *testing.T) {
	f := newFixture(t, baseResources())
	var port atomic.Uint32
	port.Store(9080)
	fn := func(_ Input, sc Sidecar) (*Resources, error) {
		return &Resources{Clusters: []*clusterv3.Cluster{svCluster("inbound|8080", int64(port.Load()))}}, nil
	}
	f.sidecar.Store(&fn)
	meta := map[string]any{MetaService: "a.ns", MetaInboundPorts: "8080"}
	c := newDeltaClient(t, f.conn(), envoyNode("sc", meta))
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	r := c.recv()
	c.ack(r)
	port.Store(9090)
	f.publish(baseResources())
	r = c.recv()
	if got := deltaNames(r); !svEqual(got, []string{"inbound|8080"}) {
		t.Fatalf("sidecar update %v, want [inbound|8080]", got)
	}
	c.ack(r)
	if err := c.stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool {
		f.srv.caches.clusters.mu.Lock()
		defer f.srv.caches.clusters.mu.Unlock()
		return len(f.srv.caches.clusters.layers) == 0
	}, "the sidecar layer to go with its last stream")
}

func TestServerOnDemandServerListener(t *testing.T) {
	f := newFixture(t, baseResources(), func(o *ServerOptions) {
		o.ServerListener = func(ip string, port uint32) *listenerv3.Listener {
			return svSocketListener(ServerListenerName(ip, port), port)
		}
	})
	c := newSotwClient(t, f.conn(), grpcNode("grpc-server"))
	name := ServerListenerName("0.0.0.0", 50051)
	c.send(resourcev3.ListenerType, []string{name, ServerListenerPrefix + "not-an-address"}, "", "", nil)
	r := c.recv()
	if got := sotwNames(t, r); !svEqual(got, []string{name}) {
		t.Fatalf("on-demand LDS %v, want [%s]", got, name)
	}
	c.ack(r, []string{name})
	// It survives publishes that do not mention it.
	res := baseResources()
	res.Clusters[0] = svCluster("a", 3)
	f.publish(res)
	if !f.srv.caches.listenersGRPC.has(name) {
		t.Fatal("on-demand listener dropped by a publish")
	}
}

func TestServerTranslateErrorKeepsLastGood(t *testing.T) {
	f := newFixture(t, baseResources())
	if !f.srv.Ready() {
		t.Fatal("not ready after the first publish")
	}
	f.fail.Store(true)
	f.res.Store(&Resources{})
	f.srv.Notify()
	eventually(t, func() bool { return metricValue(f.srv.metrics.translateErrors) == 1 }, "a translate error")
	if n := f.srv.caches.endpoints.count(); n != 2 {
		t.Fatalf("%d endpoints after a failed translation, want the last good 2", n)
	}
	// Duplicate names are refused as a whole, nothing half-applied.
	f.fail.Store(false)
	res := baseResources()
	res.Clusters = append(res.Clusters, svCluster("a", 1))
	res.Endpoints = res.Endpoints[:1]
	f.res.Store(res)
	f.srv.Notify()
	eventually(t, func() bool { return metricValue(f.srv.metrics.translateErrors) == 2 }, "a second translate error")
	if n := f.srv.caches.endpoints.count(); n != 2 {
		t.Fatalf("%d endpoints after a refused translation, want the last good 2", n)
	}
}

func TestServerRejectsBadNodeMetadata(t *testing.T) {
	f := newFixture(t, baseResources())
	c := newDeltaClient(t, f.conn(), envoyNode("bad", map[string]any{MetaService: "a.ns", MetaInboundPorts: "99999"}))
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	select {
	case _, ok := <-c.resps:
		if ok {
			t.Fatal("got a response for a node with bad metadata")
		}
	case <-time.After(waitFor):
		t.Fatal("stream not closed")
	}
	if status.Code(c.err) != codes.InvalidArgument || !strings.Contains(c.err.Error(), MetaInboundPorts) {
		t.Fatalf("stream error %v, want InvalidArgument naming %s", c.err, MetaInboundPorts)
	}
}

func TestNewServerOptions(t *testing.T) {
	tests := map[string]struct {
		opts    ServerOptions
		wantErr bool
	}{
		"defaults":             {opts: ServerOptions{}},
		"negative hold-off":    {opts: ServerOptions{HoldOff: -1}, wantErr: true},
		"negative max delay":   {opts: ServerOptions{MaxDelay: -1}, wantErr: true},
		"max delay < hold-off": {opts: ServerOptions{HoldOff: time.Second, MaxDelay: time.Millisecond}, wantErr: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s, err := NewServer(tc.opts)
			if (err != nil) != tc.wantErr {
				t.Fatalf("NewServer error %v, want error %v", err, tc.wantErr)
			}
			if err == nil {
				if s.opts.HoldOff != DefaultHoldOff || s.opts.MaxDelay != DefaultMaxDelay {
					t.Fatalf("defaults %v/%v", s.opts.HoldOff, s.opts.MaxDelay)
				}
				_ = s.Close()
			}
		})
	}
	reg := prometheus.NewRegistry()
	if _, err := NewServer(ServerOptions{Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewServer(ServerOptions{Registerer: reg}); err == nil {
		t.Fatal("second server on one registry: no error")
	}
}

func statusProto(msg string) *rpcstatus.Status { return &rpcstatus.Status{Code: 3, Message: msg} }

// metricValue is the value of a collector holding one counter or gauge.
func metricValue(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 16)
	c.Collect(ch)
	close(ch)
	var sum float64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			panic(err)
		}
		sum += d.GetCounter().GetValue() + d.GetGauge().GetValue()
	}
	return sum
}

// histogramCount is the number of observations in a histogram vector.
func histogramCount(c prometheus.Collector) uint64 {
	ch := make(chan prometheus.Metric, 16)
	c.Collect(ch)
	close(ch)
	var n uint64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			panic(err)
		}
		n += d.GetHistogram().GetSampleCount()
	}
	return n
}

func TestServerListenerAddr(t *testing.T) {
	tests := map[string]struct {
		name string
		ip   string
		port uint32
		ok   bool
	}{
		"ipv4 any":        {name: ServerListenerPrefix + "0.0.0.0:50051", ip: "0.0.0.0", port: 50051, ok: true},
		"ipv6 any":        {name: ServerListenerPrefix + "[::]:8080", ip: "::", port: 8080, ok: true},
		"not a server":    {name: "svc.ns:8080"},
		"port zero":       {name: ServerListenerPrefix + "0.0.0.0:0"},
		"host name":       {name: ServerListenerPrefix + "localhost:80"},
		"mapped ipv4":     {name: ServerListenerPrefix + "[::ffff:1.2.3.4]:80"},
		"zone":            {name: ServerListenerPrefix + "[fe80::1%eth0]:80"},
		"non-canonical 6": {name: ServerListenerPrefix + "[0:0::0]:80"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			ip, port, ok := serverListenerAddr(tc.name)
			if ok != tc.ok || ip != tc.ip || port != tc.port {
				t.Fatalf("serverListenerAddr(%q) = %q, %d, %v; want %q, %d, %v", tc.name, ip, port, ok, tc.ip, tc.port, tc.ok)
			}
		})
	}
}

func FuzzServerListenerAddr(f *testing.F) {
	for _, s := range []string{"0.0.0.0:1", "[::]:65535", "[::ffff:1.2.3.4]:80", "1.2.3.4:99999", ":80", "[::1%lo]:1"} {
		f.Add(ServerListenerPrefix + s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		ip, port, ok := serverListenerAddr(name)
		if !ok {
			return
		}
		if port == 0 || ServerListenerName(ip, port) != name {
			t.Fatalf("accepted %q as %q port %d", name, ip, port)
		}
	})
}
