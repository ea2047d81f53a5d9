package xds

import (
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// proxyType is node id's status for one type URL on its newest stream.
func proxyType(srv *Server, id, typeURL string) (TypeStatus, bool) {
	var out TypeStatus
	found := false
	for _, p := range srv.Proxies() {
		if p.NodeID == id {
			out, found = p.Types[typeURL], true
		}
	}
	return out, found
}

// TestProxyStatusAfterResume: a proxy that reconnects with the version it
// holds, and is rightly sent nothing, shows that version as acked.
func TestProxyStatusAfterResume(t *testing.T) {
	t.Run("sotw", func(t *testing.T) {
		f1 := newFixture(t, baseResources())
		f2 := newFixture(t, baseResources())
		c1 := newSotwClient(t, f1.conn(), grpcNode("client-1"))
		c1.send(resourcev3.EndpointType, []string{"a", "b"}, "", "", nil)
		r := c1.recv()
		c1.ack(r, []string{"a", "b"})
		eventually(t, func() bool {
			st, _ := proxyType(f1.srv, "client-1", resourcev3.EndpointType)
			return st.AckedVersion == r.GetVersionInfo()
		}, "the ACK on the first replica")

		c2 := newSotwClient(t, f2.conn(), grpcNode("client-1"))
		c2.send(resourcev3.EndpointType, []string{"a", "b"}, r.GetVersionInfo(), "", nil)
		eventually(t, func() bool { return f2.srv.caches.endpoints.numWatches() == 1 }, "the resumed watch")
		if st, _ := proxyType(f2.srv, "client-1", resourcev3.EndpointType); st.AckedVersion != r.GetVersionInfo() {
			t.Fatalf("resumed proxy shows acked %q, want %q", st.AckedVersion, r.GetVersionInfo())
		}
		// A change then replaces it with what the proxy acks here.
		res := baseResources()
		res.Endpoints[1] = svCLA("b", 3000)
		f2.publish(res)
		r2 := c2.recv()
		c2.ack(r2, []string{"a", "b"})
		eventually(t, func() bool {
			st, _ := proxyType(f2.srv, "client-1", resourcev3.EndpointType)
			return st.AckedVersion == r2.GetVersionInfo() && st.AckedNonce == r2.GetNonce()
		}, "the ACK of the change")
	})
	t.Run("delta", func(t *testing.T) {
		f := newFixture(t, baseResources())
		c := newDeltaClient(t, f.conn(), grpcNode("d-1"))
		c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"a"}})
		r := c.recv()
		c.ack(r)
		initial := map[string]string{}
		for _, res := range r.GetResources() {
			initial[res.GetName()] = res.GetVersion()
		}
		c2 := newDeltaClient(t, f.conn(), grpcNode("d-2"))
		c2.send(&discoveryv3.DeltaDiscoveryRequest{
			TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"a"}, InitialResourceVersions: initial,
		})
		eventually(t, func() bool { return f.srv.caches.endpoints.numWatches() == 2 }, "the resumed watch")
		if st, _ := proxyType(f.srv, "d-2", resourcev3.EndpointType); st.AckedVersion != r.GetSystemVersionInfo() {
			t.Fatalf("resumed delta proxy shows acked %q, want %q", st.AckedVersion, r.GetSystemVersionInfo())
		}
	})
}
