package xds

import (
	"errors"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

func TestNackGuardSotW(t *testing.T) {
	tests := map[string]struct {
		ackFirst bool // the NACKed response is not the stream's first
	}{
		"first response rejected": {},
		"update rejected":         {ackFirst: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, baseResources())
			c := newSotwClient(t, f.conn(), grpcNode("nacker"))
			c.send(resourcev3.EndpointType, []string{"b"}, "", "", nil)
			rb := c.recv()
			c.ack(rb, []string{"b"})
			c.send(resourcev3.ClusterType, []string{"a"}, "", "", nil)
			r := c.recv()
			acked := ""
			if tc.ackFirst {
				c.ack(r, []string{"a"})
				acked = r.GetVersionInfo()
				res := baseResources()
				res.Clusters[0] = svCluster("a", 1)
				f.publish(res)
				r = c.recv()
			}
			rejected := r.GetVersionInfo()
			c.send(resourcev3.ClusterType, []string{"a"}, acked, r.GetNonce(), errors.New("cluster a: bad lb_policy"))
			eventually(t, func() bool {
				ps := f.srv.Proxies()
				return len(ps) == 1 && ps[0].LastNACK != nil
			}, "the NACK in proxy status")
			n := f.srv.Proxies()[0].LastNACK
			if n.TypeURL != resourcev3.ClusterType || n.Version != rejected || n.ErrorDetail != "cluster a: bad lb_policy" || n.Time.IsZero() {
				t.Fatalf("last NACK %+v, want type %s version %s", n, resourcev3.ClusterType, rejected)
			}
			if got := f.srv.Proxies()[0].Types[resourcev3.ClusterType].AckedVersion; got != acked {
				t.Fatalf("acked version %q after NACK, want %q", got, acked)
			}
			if got := metricValue(f.srv.metrics.nacks.WithLabelValues("cds")); got != 1 {
				t.Fatalf("nacks_total{cds} = %v, want 1", got)
			}

			// Publishes that do not touch cluster a: the stream gets the
			// EDS change and no resend of the rejected clusters.
			res := baseResources()
			if tc.ackFirst {
				res.Clusters[0] = svCluster("a", 1)
			}
			res.Endpoints[1] = svCLA("b", 7)
			f.publish(res)
			if got := c.recv(); got.GetTypeUrl() != resourcev3.EndpointType {
				t.Fatalf("after a NACK got %s version %s, want the EDS update (no resend)", got.GetTypeUrl(), got.GetVersionInfo())
			}
			// New content for a: sent once.
			res.Clusters[0] = svCluster("a", 9)
			f.publish(res)
			r2 := c.recv()
			if r2.GetTypeUrl() != resourcev3.ClusterType || r2.GetVersionInfo() == rejected {
				t.Fatalf("got %s version %s, want CDS with a new version", r2.GetTypeUrl(), r2.GetVersionInfo())
			}
			c.ack(r2, []string{"a"})
			eventually(t, func() bool {
				return f.srv.Proxies()[0].Types[resourcev3.ClusterType].AckedVersion == r2.GetVersionInfo()
			}, "the ACK of the new version")
			if got := metricValue(f.srv.metrics.pushes.WithLabelValues("cds")); got != float64(map[bool]int{false: 2, true: 3}[tc.ackFirst]) {
				t.Fatalf("cds pushes = %v: the rejected version was resent", got)
			}
		})
	}
}

func TestNackGuardDelta(t *testing.T) {
	f := newFixture(t, baseResources())
	c := newDeltaClient(t, f.conn(), grpcNode("delta-nacker"))
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResourceNamesSubscribe: []string{"a"}})
	r := c.recv()
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: r.GetNonce(),
		ErrorDetail: statusProto("no")})
	c.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{"b"}})
	if got := c.recv(); got.GetTypeUrl() != resourcev3.EndpointType {
		t.Fatalf("after a NACK got %s, want the EDS response (no resend)", got.GetTypeUrl())
	}
	res := baseResources()
	res.Clusters[0] = svCluster("a", 4)
	f.publish(res)
	if got := c.recv(); got.GetTypeUrl() != resourcev3.ClusterType || deltaNames(got)[0] != "a" {
		t.Fatalf("got %s %v, want the changed cluster a", got.GetTypeUrl(), deltaNames(got))
	}
	if n := f.srv.Proxies()[0].LastNACK; n == nil || n.Version != r.GetSystemVersionInfo() {
		t.Fatalf("last NACK %+v, want version %s", n, r.GetSystemVersionInfo())
	}
}
