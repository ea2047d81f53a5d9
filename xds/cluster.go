package xds

import (
	"net/netip"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshplane/meshplane/registry"
)

// Cluster tuning shared by every cluster the translator emits.
const (
	// connectTimeoutSeconds bounds an upstream TCP connect (Envoy only;
	// grpc-go ignores it).
	connectTimeoutSeconds = 5
	// ringSize is both the minimum and maximum ring size of the ring-hash
	// clusters. grpc-go caps rings at 4096 entries (GRPC_RING_HASH_CAP), so
	// pinning both ends makes Envoy and grpc-go build rings of the same size:
	// 4096 entries keep each endpoint's share within about 1% of its weight.
	ringSize = 4096
)

// edsCluster is the cluster for one port of a service. Its endpoints come over
// EDS (the ClusterLoadAssignment of the same name).
//
// The load-balancing policy is RING_HASH with XX_HASH and no hash policy on
// the routes: grpc-go then draws a random hash per RPC
// (internal/xds/resolver/serviceconfig.go, configSelector.generateHash) and
// picks on a ring whose entries are proportional to the endpoint weights
// (balancer/ringhash/ring.go, newRing), so EDS weights work without ORCA;
// Envoy does the same (random hash when a request has none). grpc-go's
// round_robin would ignore endpoint weights, and MAGLEV is NACKed.
func edsCluster(host string, p registry.Port) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 ClusterName(host, p.Port),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsConfigSource()},
		ConnectTimeout:       durationpb.New(connectTimeoutSeconds * 1e9),
		LbPolicy:             clusterv3.Cluster_RING_HASH,
		LbConfig: &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
			MinimumRingSize: wrapperspb.UInt64(ringSize),
			MaximumRingSize: wrapperspb.UInt64(ringSize),
			HashFunction:    clusterv3.Cluster_RingHashLbConfig_XX_HASH,
		}},
	}
	if isHTTP2(p.Protocol) {
		c.TypedExtensionProtocolOptions = http2ProtocolOptions()
	}
	return c
}

// staticCluster is a cluster with one inline endpoint: a sidecar's local
// application (always an IP) or the OTLP collector (an IP or a DNS name).
func staticCluster(name, host string, port uint32, http2 bool) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:           name,
		ConnectTimeout: durationpb.New(connectTimeoutSeconds * 1e9),
		LbPolicy:       clusterv3.Cluster_ROUND_ROBIN,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				Locality:            &corev3.Locality{},
				LoadBalancingWeight: wrapperspb.UInt32(1),
				LbEndpoints:         []*endpointv3.LbEndpoint{lbEndpoint(host, port, 1)},
			}},
		},
	}
	if _, err := netip.ParseAddr(host); err == nil {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	} else {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
		// "localhost" resolves to ::1 first on many hosts while collectors
		// often listen on IPv4 only.
		c.DnsLookupFamily = clusterv3.Cluster_V4_PREFERRED
	}
	if http2 {
		c.TypedExtensionProtocolOptions = http2ProtocolOptions()
	}
	return c
}

// http2ProtocolOptions makes Envoy speak HTTP/2 (prior knowledge) upstream,
// which gRPC needs. grpc-go ignores it.
func http2ProtocolOptions() map[string]*anypb.Any {
	opts := &upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
				},
			},
		},
	}
	return map[string]*anypb.Any{http2OptionsKey: anyOf(opts)}
}

// adsConfigSource is the config source of every RDS and EDS reference: the
// same ADS stream, API v3 (grpc-go accepts only ads or self).
func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}
