package xds

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/meshplane/meshplane/registry"
)

func TestEDSCluster(t *testing.T) {
	tests := map[string]struct {
		proto     registry.Protocol
		wantHTTP2 bool
	}{
		"grpc":  {registry.ProtocolGRPC, true},
		"http2": {registry.ProtocolHTTP2, true},
		"http":  {registry.ProtocolHTTP, false},
		"tcp":   {registry.ProtocolTCP, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := edsCluster("greeter.default", registry.Port{Port: 80, Protocol: tc.proto})
			if c.GetName() != "outbound|80||greeter.default" || c.GetType() != clusterv3.Cluster_EDS {
				t.Errorf("name %q type %v", c.GetName(), c.GetType())
			}
			if c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
				t.Error("eds_config is not ads")
			}
			// Weighted endpoints for grpc-go need ring hash with XX_HASH.
			rh := c.GetRingHashLbConfig()
			if c.GetLbPolicy() != clusterv3.Cluster_RING_HASH || rh.GetHashFunction() != clusterv3.Cluster_RingHashLbConfig_XX_HASH ||
				rh.GetMinimumRingSize().GetValue() != ringSize || rh.GetMaximumRingSize().GetValue() != ringSize {
				t.Errorf("lb %v config %v", c.GetLbPolicy(), rh)
			}
			if _, got := c.GetTypedExtensionProtocolOptions()[http2OptionsKey]; got != tc.wantHTTP2 {
				t.Errorf("HTTP/2 options present = %v, want %v", got, tc.wantHTTP2)
			}
			if err := ValidateMessage(c); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestStaticCluster(t *testing.T) {
	tests := map[string]struct {
		host string
		want clusterv3.Cluster_DiscoveryType
	}{
		"ip":       {"127.0.0.1", clusterv3.Cluster_STATIC},
		"ipv6":     {"::1", clusterv3.Cluster_STATIC},
		"dns name": {"collector.observability", clusterv3.Cluster_STRICT_DNS},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := staticCluster("x", tc.host, 4317, true)
			if c.GetType() != tc.want {
				t.Errorf("type %v, want %v", c.GetType(), tc.want)
			}
			sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
			if sa.GetAddress() != tc.host || sa.GetPortValue() != 4317 {
				t.Errorf("endpoint %v", sa)
			}
			if err := ValidateMessage(c); err != nil {
				t.Error(err)
			}
		})
	}
}
