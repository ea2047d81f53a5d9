package xds

import (
	"cmp"
	"slices"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshplane/meshplane/registry"
)

// clientRoute is the RouteConfiguration of a proxyless gRPC client Listener:
// one virtual host whose only domain is what the client dialled (the
// Listener name, e.g. "greeter.default" or "greeter.default:50051"), all
// paths to the cluster.
func clientRoute(name, cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: []string{name},
			Routes:  []*routev3.Route{clusterRoute(cluster, nil)},
		}},
	}
}

// clusterRoute sends every path to one cluster. timeout nil keeps Envoy's
// default (15 s); gRPC ports pass zero, which disables it so long-lived
// streams survive.
func clusterRoute(cluster string, timeout *durationpb.Duration) *routev3.Route {
	return &routev3.Route{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
			Timeout:          timeout,
		}},
	}
}

// envoyRouteTimeout is the route timeout for a port on an Envoy listener.
func envoyRouteTimeout(p registry.Protocol) *durationpb.Duration {
	if isHTTP2(p) {
		return durationpb.New(0)
	}
	return nil
}

// serverRoute is the inline RouteConfiguration of an xDS-enabled gRPC
// server: every RPC accepted (non_forwarding_action), vhost domain "*".
func serverRoute() *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name: "grpc_server",
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    "grpc_server",
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
			}},
		}},
	}
}

// outboundRoute is the RouteConfiguration behind every Envoy sidecar's
// outbound HTTP listener: every service's virtual hosts
// (outboundVirtualHosts), sorted by name.
func outboundRoute(vhosts []*routev3.VirtualHost) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: OutboundHTTPListenerName, VirtualHosts: slices.Clone(vhosts)}
	slices.SortFunc(rc.VirtualHosts, func(a, b *routev3.VirtualHost) int { return cmp.Compare(a.Name, b.Name) })
	return rc
}

// outboundVirtualHosts are one service's virtual hosts in the outbound
// RouteConfiguration: one per HTTP, HTTP2 and GRPC service port, named
// "name.namespace:port" with that domain, plus "name.namespace" on the
// service's default port. Shorter forms ("name") are left out on purpose:
// the same name in two namespaces would give two virtual hosts the same
// domain, and Envoy rejects the whole RouteConfiguration for that.
func outboundVirtualHosts(svc registry.Service, tr *Tracing) []*routev3.VirtualHost {
	var out []*routev3.VirtualHost
	host := svc.Host()
	def, _ := DefaultPort(svc)
	for _, p := range svc.Ports {
		if p.Protocol == registry.ProtocolTCP {
			continue
		}
		name := ClientListenerName(host, p.Port)
		domains := []string{name}
		if p.Port == def.Port {
			domains = append(domains, host)
		}
		slices.Sort(domains)
		r := clusterRoute(ClusterName(host, p.Port), envoyRouteTimeout(p.Protocol))
		if tr != nil {
			r.Tracing = routeTracing(samplingPercent(tr, host))
		}
		out = append(out, &routev3.VirtualHost{
			Name:    name,
			Domains: domains,
			Routes:  []*routev3.Route{r},
		})
	}
	return out
}

// inboundRoute is the inline RouteConfiguration of a sidecar's inbound
// listener: everything to the local application cluster.
func inboundRoute(ip InboundPort) *routev3.RouteConfiguration {
	name := InboundName(ip.Port)
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: []string{"*"},
			Routes:  []*routev3.Route{clusterRoute(name, envoyRouteTimeout(ip.Protocol))},
		}},
	}
}
