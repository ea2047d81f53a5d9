package xds

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/meshplane/meshplane/registry"
)

// Input is everything the translator reads: one immutable, serialisable value.
// Translate reads nothing else, which is what makes golden tests trivial.
type Input struct {
	// Services is the registry snapshot's services, sorted by namespace, name.
	Services []registry.Service `json:"services"`
	// Tracing configures Envoy sidecars' HTTP tracing; nil means no tracing.
	Tracing *Tracing `json:"tracing,omitempty"`
}

// Tracing is the mesh-wide tracing configuration sent to Envoy sidecars: an
// OpenTelemetry tracer in every HTTP connection manager, exporting over OTLP/gRPC
// to the control plane's OTLP intake.
type Tracing struct {
	// CollectorHost and CollectorPort are the OTLP/gRPC intake Envoy exports to.
	CollectorHost string `json:"collectorHost"`
	CollectorPort uint32 `json:"collectorPort"`
	// SamplingPercent is the mesh-wide random sampling percentage, 0..100.
	SamplingPercent float64 `json:"samplingPercent"`
	// ServiceSamplingPercent overrides SamplingPercent per "name.namespace".
	ServiceSamplingPercent map[string]float64 `json:"serviceSamplingPercent,omitempty"`
}

// Sidecar describes the Envoy sidecar a node-specific translation is for: the
// service it fronts, read from the node's metadata.
type Sidecar struct {
	// Service and Namespace name the local service this sidecar fronts; empty
	// for an egress-only sidecar (no inbound listener).
	Service   string `json:"service,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	// InboundPorts maps each mesh port to the local application port it is
	// forwarded to (127.0.0.1:port).
	InboundPorts []InboundPort `json:"inboundPorts,omitempty"`
}

// InboundPort is one port a sidecar accepts inbound traffic on and the local
// application port it forwards to.
type InboundPort struct {
	Port     uint32            `json:"port"`
	AppPort  uint32            `json:"appPort"`
	Protocol registry.Protocol `json:"protocol"`
}

// Resources is a translation's output, each slice sorted by resource name.
//
// Translate fills every field with node-independent resources, shared by all
// data planes. TranslateSidecar fills only Listeners and Clusters, with the
// resources specific to one Envoy sidecar (inbound listener, local app cluster).
type Resources struct {
	// Listeners are the proxyless gRPC Listeners: client api_listeners named
	// "name.namespace" and "name.namespace:port", and xDS-server Listeners named
	// "grpc/server?xds.resource.listening_address=IP:PORT". Envoy must never get
	// these (it rejects api_listener over LDS).
	Listeners []*listenerv3.Listener
	// EnvoyListeners are the Listeners every Envoy sidecar gets (the outbound
	// HTTP listener); node-specific ones come from TranslateSidecar.
	EnvoyListeners []*listenerv3.Listener
	// Routes serve both gRPC clients and Envoy; names never collide.
	Routes []*routev3.RouteConfiguration
	// Clusters and Endpoints serve both gRPC clients and Envoy.
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
}
