package xds

import (
	"net"
	"net/netip"
	"strconv"

	"github.com/meshplane/meshplane/registry"
)

// Well-known resource names and ports. Data planes and docs/xds.md rely on
// them; changing one is a contract change.
const (
	// OutboundHTTPListenerName names both the Envoy outbound HTTP Listener and
	// the RouteConfiguration it loads over RDS.
	OutboundHTTPListenerName = "outbound_http"
	// OutboundHTTPPort is where every Envoy sidecar accepts outbound HTTP and
	// gRPC traffic from its application (0.0.0.0:15001).
	OutboundHTTPPort uint32 = 15001
	// TracingClusterName is the Envoy cluster pointing at the OTLP/gRPC
	// collector; it exists only when Input.Tracing is set.
	TracingClusterName = "meshplane_otlp"
	// ServerListenerPrefix starts the name of every xDS-enabled gRPC server's
	// Listener (gRFC A36); the bootstrap's server_listener_resource_name_template
	// must be ServerListenerPrefix + "%s".
	ServerListenerPrefix = "grpc/server?xds.resource.listening_address="

	// routerFilterName and hcmFilterName are the canonical extension names.
	routerFilterName = "envoy.filters.http.router"
	hcmFilterName    = "envoy.filters.network.http_connection_manager"
	tcpProxyName     = "envoy.filters.network.tcp_proxy"
	otelTracerName   = "envoy.tracers.opentelemetry"
	envDetectorName  = "envoy.tracers.opentelemetry.resource_detectors.environment"
	http2OptionsKey  = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	inboundPrefix    = "inbound|"
)

// ClusterName is the name of the EDS cluster (and its ClusterLoadAssignment)
// for one port of a service, host being "name.namespace":
// "outbound|<port>||<host>", the convention Istio made familiar.
func ClusterName(host string, port uint32) string {
	return "outbound|" + strconv.FormatUint(uint64(port), 10) + "||" + host
}

// ClientListenerName is the Listener (and RouteConfiguration) name a proxyless
// gRPC client asks for when it dials xds:///host:port.
func ClientListenerName(host string, port uint32) string {
	return net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))
}

// ServerListenerName is the Listener name an xDS-enabled gRPC server listening
// on ip:port asks for. IPv6 addresses are bracketed, as net.Listener.Addr
// prints them.
func ServerListenerName(ip string, port uint32) string {
	return ServerListenerPrefix + net.JoinHostPort(ip, strconv.FormatUint(uint64(port), 10))
}

// InboundName names a sidecar's inbound Listener, its inline route
// configuration and the local application cluster for one mesh port.
func InboundName(port uint32) string {
	return inboundPrefix + strconv.FormatUint(uint64(port), 10)
}

// DefaultPort is the port xds:///name.namespace (no port) resolves to: the
// lowest-numbered GRPC port, else the lowest port. ok is false when the
// service has no ports.
func DefaultPort(svc registry.Service) (port registry.Port, ok bool) {
	for _, p := range svc.Ports {
		if p.Protocol == registry.ProtocolGRPC && (!ok || p.Port < port.Port) {
			port, ok = p, true
		}
	}
	if ok {
		return port, true
	}
	for _, p := range svc.Ports {
		if !ok || p.Port < port.Port {
			port, ok = p, true
		}
	}
	return port, ok
}

// isHTTP2 reports whether a port's upstream speaks HTTP/2 (gRPC included).
func isHTTP2(p registry.Protocol) bool {
	return p == registry.ProtocolGRPC || p == registry.ProtocolHTTP2
}

// canonicalIP parses an IP address and prints it the way Go's net package
// prints a listener's address (IPv4-mapped IPv6 unmapped, IPv6 compressed),
// so a gRPC server's requested Listener name matches the one built here.
func canonicalIP(s string) (string, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return "", false
	}
	return a.Unmap().String(), true
}
