package loadgen

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func lbe(addr string, port uint32, weight *wrapperspb.UInt32Value) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
			}}},
		}},
		HealthStatus:        corev3.HealthStatus_HEALTHY,
		LoadBalancingWeight: weight,
	}
}

func cla(name string, eps ...*endpointv3.LbEndpoint) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
		Locality: &corev3.Locality{Zone: "z"}, LoadBalancingWeight: wrapperspb.UInt32(1), LbEndpoints: eps,
	}}}
}

func mustMarshal(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestEndpointWeight(t *testing.T) {
	tests := map[string]struct {
		cla  *endpointv3.ClusterLoadAssignment
		want uint32
	}{
		"weighted":          {cla("c", lbe("10.0.0.2", 80, wrapperspb.UInt32(3)), lbe("10.0.0.1", 80, wrapperspb.UInt32(7))), 7},
		"no weight means 1": {cla("c", lbe("10.0.0.1", 80, nil)), 1},
		"absent":            {cla("c", lbe("10.0.0.2", 80, wrapperspb.UInt32(3))), 0},
		"other port":        {cla("c", lbe("10.0.0.1", 81, wrapperspb.UInt32(3))), 0},
		"empty":             {&endpointv3.ClusterLoadAssignment{ClusterName: "c"}, 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := endpointWeight(mustMarshal(t, tc.cla), "10.0.0.1", 80)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("endpointWeight = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestParseResponse(t *testing.T) {
	c0 := cla("outbound|80||a.ns", lbe("10.0.0.1", 80, wrapperspb.UInt32(2)))
	c1 := cla("outbound|80||b.ns")
	wrapped := &discoveryv3.Resource{Name: "outbound|80||b.ns", Version: "v", Resource: mustAny(t, c1)}
	resp := &discoveryv3.DiscoveryResponse{
		VersionInfo: "v1",
		Resources:   []*anypb.Any{mustAny(t, c0), mustAny(t, wrapped), mustAny(t, &discoveryv3.Resource{Name: "gone"})},
		TypeUrl:     typeEndpoint,
		Nonce:       "n1",
		Canary:      true,
	}
	var r response
	if err := parseResponse(mustMarshal(t, resp), &r); err != nil {
		t.Fatal(err)
	}
	if string(r.version) != "v1" || string(r.nonce) != "n1" || string(r.typeURL) != typeEndpoint {
		t.Errorf("version, nonce, type = %q, %q, %q", r.version, r.nonce, r.typeURL)
	}
	var names []string
	for _, res := range r.resources {
		n, err := resourceName(res)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, string(n))
	}
	if diff := cmp.Diff([]string{"outbound|80||a.ns", "outbound|80||b.ns"}, names); diff != "" {
		t.Errorf("resource names (-want +got):\n%s", diff)
	}
}

func TestClusterEDS(t *testing.T) {
	tests := map[string]struct {
		cluster *clusterv3.Cluster
		eds     bool
	}{
		"eds":    {&clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}}, true},
		"static": {&clusterv3.Cluster{Name: "c", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}, false},
		"unset":  {&clusterv3.Cluster{Name: "c"}, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			n, eds, err := clusterEDS(mustMarshal(t, tc.cluster))
			if err != nil || string(n) != "c" || eds != tc.eds {
				t.Errorf("clusterEDS = %q, %v, %v; want \"c\", %v", n, eds, err, tc.eds)
			}
		})
	}
}

func TestRequestTemplate(t *testing.T) {
	node := &corev3.Node{Id: "n", UserAgentName: "gRPC Go"}
	tmpl := newRequestTemplate(typeEndpoint, []string{"a", "b"})
	tests := map[string]struct {
		node           *corev3.Node
		version, nonce string
	}{
		"first request": {node: node},
		"ack":           {version: "v2", nonce: "n7"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var nodeBytes []byte
			if tc.node != nil {
				nodeBytes = mustMarshal(t, tc.node)
			}
			var got discoveryv3.DiscoveryRequest
			if err := proto.Unmarshal(tmpl.request(nodeBytes, []byte(tc.version), []byte(tc.nonce)), &got); err != nil {
				t.Fatal(err)
			}
			want := &discoveryv3.DiscoveryRequest{
				VersionInfo: tc.version, Node: tc.node, ResourceNames: []string{"a", "b"},
				TypeUrl: typeEndpoint, ResponseNonce: tc.nonce,
			}
			if diff := cmp.Diff(want, &got, protocmp.Transform()); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseResponseTruncated(t *testing.T) {
	b := mustMarshal(t, &discoveryv3.DiscoveryResponse{VersionInfo: "v1", Resources: []*anypb.Any{mustAny(t, cla("c"))}})
	var r response
	if err := parseResponse(b[:len(b)-1], &r); err == nil {
		t.Error("parseResponse of a truncated message: want an error")
	}
}

// FuzzParseResponse feeds arbitrary bytes through everything the generator
// reads from the server: it must return an error, never panic.
func FuzzParseResponse(f *testing.F) {
	f.Add(mustMarshal(f, &discoveryv3.DiscoveryResponse{
		VersionInfo: "v1", TypeUrl: typeEndpoint, Nonce: "1",
		Resources: []*anypb.Any{mustAny(f, cla("c", lbe("10.0.0.1", 80, wrapperspb.UInt32(4))))},
	}))
	f.Add([]byte{0x12, 0x05, 0x0a, 0x01})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var r response
		if err := parseResponse(b, &r); err != nil {
			return
		}
		for _, res := range r.resources {
			_, _ = resourceName(res)
			_, _ = endpointWeight(res, "10.0.0.1", 80)
			_, _, _ = clusterEDS(res)
		}
	})
}
