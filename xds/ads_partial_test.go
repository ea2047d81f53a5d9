package xds

import (
	"errors"
	"fmt"
	"sort"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// manyEndpoints is baseResources plus n clusters c0… with their endpoints;
// port[i], if set, replaces c<i>'s endpoint port.
func manyEndpoints(n int, port map[int]uint32) (*Resources, []string) {
	res := baseResources()
	names := []string{"a", "b"}
	for i := range n {
		name := fmt.Sprintf("c%d", i)
		p := uint32(3000 + i)
		if q, ok := port[i]; ok {
			p = q
		}
		res.Clusters = append(res.Clusters, svCluster(name, 0))
		res.Endpoints = append(res.Endpoints, svCLA(name, p))
		names = append(names, name)
	}
	sort.Strings(names)
	return res, names
}

// heldState applies a SotW EDS response to what a client holds: the
// resources it names replace the held ones, the others are kept.
func heldState(t *testing.T, held map[string][]byte, r *discoveryv3.DiscoveryResponse) {
	t.Helper()
	for _, a := range r.GetResources() {
		cla := svUnpackCLA(t, a)
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(cla)
		if err != nil {
			t.Fatal(err)
		}
		held[cla.GetClusterName()] = b
	}
}

// TestADSPartialEDSPush checks on the wire that a SotW EDS push after a
// one-endpoint change carries that one ClusterLoadAssignment, for a client
// subscribing to every name (Envoy-like) and for a wildcard one, and that
// what the client then holds, and the version, equal a fresh full response.
func TestADSPartialEDSPush(t *testing.T) {
	const n = 40 // more than sameNames checks without a set
	for _, tc := range []struct {
		name string
		sub  func(names []string) []string
	}{
		{"every name", func(names []string) []string { return names }},
		{"wildcard", func([]string) []string { return []string{"*"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, names := manyEndpoints(n, nil)
			f := newFixture(t, res)
			sub := tc.sub(names)
			c := newSotwClient(t, f.conn(), envoyNode("envoy-1", nil))
			c.send(resourcev3.EndpointType, sub, "", "", nil)
			r := c.recv()
			if got := sotwNames(t, r); !svEqual(got, names) {
				t.Fatalf("first response has %v, want %v", got, names)
			}
			held := map[string][]byte{}
			heldState(t, held, r)
			c.ack(r, sub)

			for round, i := range []int{3, 3, 7} {
				res, _ = manyEndpoints(n, map[int]uint32{i: uint32(9000 + round)})
				if round == 2 {
					res.Endpoints[len(res.Endpoints)-1] = svCLA(fmt.Sprintf("c%d", n-1), 9100) // two changes
				}
				f.publish(res)
				r = c.recv()
				want := []string{fmt.Sprintf("c%d", i)}
				if round == 2 { // c3 back at its first port, c7 and the last one changed
					want = []string{"c3", "c7", fmt.Sprintf("c%d", n-1)}
					sort.Strings(want)
				}
				if got := sotwNames(t, r); !svEqual(got, want) {
					t.Fatalf("round %d: push has %v, want %v", round, got, want)
				}
				heldState(t, held, r)
				c.ack(r, sub)
			}

			// A fresh client subscribing the same way gets the full state:
			// the same version, the same resources as the first one holds.
			fresh := newSotwClient(t, f.conn(), envoyNode("envoy-2", nil))
			fresh.send(resourcev3.EndpointType, sub, "", "", nil)
			full := fresh.recv()
			if full.GetVersionInfo() != r.GetVersionInfo() {
				t.Fatalf("partial push version %s, full response %s", r.GetVersionInfo(), full.GetVersionInfo())
			}
			want := map[string][]byte{}
			heldState(t, want, full)
			if len(want) != len(held) {
				t.Fatalf("client holds %d resources, full response has %d", len(held), len(want))
			}
			for name, b := range want {
				if !proto.Equal(unmarshalCLA(t, held[name]), unmarshalCLA(t, b)) {
					t.Fatalf("client holds %s differently from a full response", name)
				}
			}
		})
	}
}

func unmarshalCLA(t *testing.T, b []byte) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	c := &endpointv3.ClusterLoadAssignment{}
	if err := proto.Unmarshal(b, c); err != nil {
		t.Fatal(err)
	}
	return c
}

// TestADSPartialPushNACK checks the NACK guard with partial pushes: a NACKed
// one-resource push is not resent, the next change of another resource
// pushes only that one (its version counting the rejected resource as
// held), and a new version of the rejected resource is pushed.
func TestADSPartialPushNACK(t *testing.T) {
	res, names := manyEndpoints(5, nil)
	f := newFixture(t, res)
	c := newSotwClient(t, f.conn(), grpcNode("client-1"))
	c.send(resourcev3.EndpointType, names, "", "", nil)
	r := c.recv()
	c.ack(r, names)

	res, _ = manyEndpoints(5, map[int]uint32{1: 9001})
	f.publish(res)
	bad := c.recv()
	if got := sotwNames(t, bad); !svEqual(got, []string{"c1"}) {
		t.Fatalf("push has %v, want [c1]", got)
	}
	before := metricValue(f.srv.metrics.nacks.WithLabelValues("eds"))
	c.send(resourcev3.EndpointType, names, r.GetVersionInfo(), bad.GetNonce(), errors.New("rejected"))
	eventually(t, func() bool { return metricValue(f.srv.metrics.nacks.WithLabelValues("eds")) > before }, "the NACK counted")

	// Another resource changes: only it is pushed, c1 is not resent.
	res, _ = manyEndpoints(5, map[int]uint32{1: 9001, 2: 9002})
	f.publish(res)
	r = c.recv()
	if got := sotwNames(t, r); !svEqual(got, []string{"c2"}) {
		t.Fatalf("push after the NACK has %v, want only [c2]", got)
	}
	fresh := newSotwClient(t, f.conn(), grpcNode("client-2"))
	fresh.send(resourcev3.EndpointType, names, "", "", nil)
	if full := fresh.recv(); full.GetVersionInfo() != r.GetVersionInfo() {
		t.Fatalf("version %s after the NACK, full state %s", r.GetVersionInfo(), full.GetVersionInfo())
	}
	c.ack(r, names)

	// A new version of the rejected resource is pushed.
	res, _ = manyEndpoints(5, map[int]uint32{1: 9011, 2: 9002})
	f.publish(res)
	r = c.recv()
	if got := sotwNames(t, r); !svEqual(got, []string{"c1"}) {
		t.Fatalf("push of the new c1 has %v, want [c1]", got)
	}
	select {
	case extra := <-c.resps:
		t.Fatalf("unexpected response %v", sotwNames(t, extra))
	default:
	}
}

// TestADSPartialRemoval checks that removing a subscribed EDS resource sends
// nothing (SotW cannot express it), and the next push's version leaves it
// out, as a full response's does.
func TestADSPartialRemoval(t *testing.T) {
	res, names := manyEndpoints(3, nil)
	f := newFixture(t, res)
	c := newSotwClient(t, f.conn(), grpcNode("client-1"))
	c.send(resourcev3.EndpointType, names, "", "", nil)
	r := c.recv()
	c.ack(r, names)

	res, _ = manyEndpoints(3, nil)
	res.Clusters = res.Clusters[:len(res.Clusters)-1] // c2 goes
	res.Endpoints = res.Endpoints[:len(res.Endpoints)-1]
	f.publish(res)
	res2 := &Resources{Listeners: res.Listeners, EnvoyListeners: res.EnvoyListeners, Routes: res.Routes,
		Clusters: append([]*clusterv3.Cluster(nil), res.Clusters...), Endpoints: append([]*endpointv3.ClusterLoadAssignment(nil), res.Endpoints...)}
	res2.Endpoints[2] = svCLA("c0", 9000)
	f.publish(res2)
	r = c.recv()
	if got := sotwNames(t, r); !svEqual(got, []string{"c0"}) {
		t.Fatalf("push has %v, want [c0] (nothing for the removal)", got)
	}
	fresh := newSotwClient(t, f.conn(), grpcNode("client-2"))
	fresh.send(resourcev3.EndpointType, names, "", "", nil)
	if full := fresh.recv(); full.GetVersionInfo() != r.GetVersionInfo() {
		t.Fatalf("version %s, full state %s", r.GetVersionInfo(), full.GetVersionInfo())
	}
}
