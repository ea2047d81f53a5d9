package xds

import (
	"cmp"
	"net"
	"slices"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshplane/meshplane/registry"
)

// loadAssignment is the ClusterLoadAssignment for one port of a service: its
// SERVING instances that expose the port, grouped by locality (sorted by
// region, zone, sub-zone), each endpoint at the instance's address and
// target port with the instance's weight, at priority 0.
//
// Every locality gets a locality (possibly all-empty) and a weight equal to
// the sum of its endpoints' weights: grpc-go NACKs a nil locality and silently
// drops a locality of weight 0. With the sum, grpc-go's normalised
// (locality share × endpoint share) weight equals the endpoint's share of the
// whole cluster, so per-endpoint weights hold across localities.
//
// Instances registered with a DNS host name instead of an IP are left out:
// Envoy NACKs host names in EDS, and the clusters are shared with Envoy.
//
// Two instances on the same address and port (a re-registration under a new
// ID while the old lease lives) would be NACKed by grpc-go as duplicates; the
// instance with the smallest ID wins.
func loadAssignment(svc registry.Service, port registry.Port) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: ClusterName(svc.Host(), port.Port)}
	instances := slices.Clone(svc.Instances)
	slices.SortStableFunc(instances, func(a, b registry.Instance) int { return cmp.Compare(a.ID, b.ID) })

	byLocality := map[registry.Locality]*endpointv3.LocalityLbEndpoints{}
	seen := map[string]bool{}
	for _, in := range instances {
		if in.Health != registry.HealthServing {
			continue
		}
		ip, ok := canonicalIP(in.Address)
		if !ok {
			continue
		}
		target, ok := instancePort(in, port.Port)
		if !ok {
			continue
		}
		key := net.JoinHostPort(ip, strconv.FormatUint(uint64(target), 10))
		if seen[key] {
			continue
		}
		seen[key] = true
		w := instanceWeight(in)
		lle := byLocality[in.Locality]
		if lle == nil {
			lle = &endpointv3.LocalityLbEndpoints{
				Locality: &corev3.Locality{
					Region:  in.Locality.Region,
					Zone:    in.Locality.Zone,
					SubZone: in.Locality.SubZone,
				},
				LoadBalancingWeight: wrapperspb.UInt32(0),
			}
			byLocality[in.Locality] = lle
		}
		lle.LbEndpoints = append(lle.LbEndpoints, lbEndpoint(ip, target, w))
		lle.LoadBalancingWeight.Value += w
	}
	localities := make([]registry.Locality, 0, len(byLocality))
	for l := range byLocality {
		localities = append(localities, l)
	}
	slices.SortFunc(localities, func(a, b registry.Locality) int {
		return cmp.Or(cmp.Compare(a.Region, b.Region), cmp.Compare(a.Zone, b.Zone), cmp.Compare(a.SubZone, b.SubZone))
	})
	for _, l := range localities {
		cla.Endpoints = append(cla.Endpoints, byLocality[l])
	}
	return cla
}

// instancePort finds the instance's own entry for a service port and returns
// the port it listens on.
func instancePort(in registry.Instance, port uint32) (uint32, bool) {
	for _, p := range in.Ports {
		if p.Port == port {
			return p.EffectiveTargetPort(), true
		}
	}
	return 0, false
}

// instanceWeight is the instance's weight; 0 means 1.
func instanceWeight(in registry.Instance) uint32 {
	if in.Weight == 0 {
		return 1
	}
	return in.Weight
}

// lbEndpoint is one HEALTHY endpoint at host:port with a weight.
func lbEndpoint(host string, port, weight uint32) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: socketAddress(host, port),
		}},
		HealthStatus:        corev3.HealthStatus_HEALTHY,
		LoadBalancingWeight: wrapperspb.UInt32(weight),
	}
}

// socketAddress is a TCP socket address.
func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}
