package xds

import (
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"github.com/meshplane/meshplane/registry"
)

// clientListener is the Listener a proxyless gRPC client asks for when it
// dials xds:///<name>: an api_listener whose HTTP connection manager loads the
// RouteConfiguration of the same name over ADS, router filter last. Never
// sent to Envoy, which rejects api_listener over LDS.
func clientListener(name string) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: name,
		}},
		HttpFilters: []*hcmv3.HttpFilter{routerFilter()},
	}
	return &listenerv3.Listener{
		Name:        name,
		ApiListener: &listenerv3.ApiListener{ApiListener: anyOf(hcm)},
	}
}

// ServerListener is the Listener an xDS-enabled gRPC server (gRFC A36)
// listening on ip:port asks for, named ServerListenerName(ip, port): its
// address is that socket address and its one filter chain accepts every RPC
// (inline route configuration, non_forwarding_action, router filter). The ADS
// server also uses it to answer a server listening on 0.0.0.0 or [::], whose
// address is in no registration.
func ServerListener(ip string, port uint32) *listenerv3.Listener {
	return serverListener(ip, port, serverFilterChain())
}

// serverListener is ServerListener with a given filter chain, so Translate
// can build the (identical) chain once and clone it for every server.
func serverListener(ip string, port uint32, chain *listenerv3.FilterChain) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:             ServerListenerName(ip, port),
		Address:          socketAddress(ip, port),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		FilterChains:     []*listenerv3.FilterChain{chain},
	}
}

// serverFilterChain accepts every RPC: an HTTP connection manager with an
// inline route configuration (non_forwarding_action) and the router filter.
func serverFilterChain() *listenerv3.FilterChain {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix:     "grpc_server",
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: serverRoute()},
		HttpFilters:    []*hcmv3.HttpFilter{routerFilter()},
	}
	return &listenerv3.FilterChain{
		Name:    "grpc_server",
		Filters: []*listenerv3.Filter{hcmFilter(hcm)},
	}
}

// outboundListener is every Envoy sidecar's outbound HTTP listener on
// 0.0.0.0:OutboundHTTPPort: an HTTP connection manager (HTTP/1.1 and h2c,
// so gRPC too) loading RouteConfiguration OutboundHTTPListenerName over ADS.
func outboundListener(tr *Tracing) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: OutboundHTTPListenerName,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: OutboundHTTPListenerName,
		}},
		HttpFilters: []*hcmv3.HttpFilter{routerFilter()},
	}
	if tr != nil {
		// Per-service percentages are route-level overrides in outboundRoute.
		hcm.Tracing = hcmTracing(tr, "", tr.SamplingPercent)
	}
	return &listenerv3.Listener{
		Name:             OutboundHTTPListenerName,
		Address:          socketAddress("0.0.0.0", OutboundHTTPPort),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains: []*listenerv3.FilterChain{{
			Name:    OutboundHTTPListenerName,
			Filters: []*listenerv3.Filter{hcmFilter(hcm)},
		}},
	}
}

// inboundListener is a sidecar's Listener for one mesh port on
// 0.0.0.0:<port>, forwarding to the local application cluster of the same
// name: an HTTP connection manager with an inline route configuration, or a
// TCP proxy for TCP ports. host is the local service ("name.namespace", may
// be empty); it names the server spans.
func inboundListener(ip InboundPort, host string, tr *Tracing) *listenerv3.Listener {
	name := InboundName(ip.Port)
	stat := "inbound_" + strconv.FormatUint(uint64(ip.Port), 10)
	var filter *listenerv3.Filter
	if ip.Protocol == registry.ProtocolTCP {
		filter = &listenerv3.Filter{
			Name: tcpProxyName,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(&tcpproxyv3.TcpProxy{
				StatPrefix:       stat,
				ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: name},
			})},
		}
	} else {
		hcm := &hcmv3.HttpConnectionManager{
			StatPrefix:     stat,
			CodecType:      hcmv3.HttpConnectionManager_AUTO,
			RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: inboundRoute(ip)},
			HttpFilters:    []*hcmv3.HttpFilter{routerFilter()},
		}
		if tr != nil {
			hcm.Tracing = hcmTracing(tr, host, samplingPercent(tr, host))
		}
		filter = hcmFilter(hcm)
	}
	return &listenerv3.Listener{
		Name:             name,
		Address:          socketAddress("0.0.0.0", ip.Port),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		FilterChains: []*listenerv3.FilterChain{{
			Name:    name,
			Filters: []*listenerv3.Filter{filter},
		}},
	}
}

// hcmFilter wraps an HTTP connection manager as a network filter.
func hcmFilter(hcm *hcmv3.HttpConnectionManager) *listenerv3.Filter {
	return &listenerv3.Filter{
		Name:       hcmFilterName,
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: anyOf(hcm)},
	}
}

// routerFilter is the terminal HTTP filter; gRPC requires it last.
func routerFilter() *hcmv3.HttpFilter {
	return &hcmv3.HttpFilter{
		Name:       routerFilterName,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: anyOf(&routerv3.Router{})},
	}
}
