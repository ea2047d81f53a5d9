package xds

import (
	"fmt"
	"strings"
	"unicode/utf8"

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
// data planes. TranslateSidecar fills only EnvoyListeners and Clusters, with
// the resources specific to one Envoy sidecar (inbound listeners, local app
// clusters). Validate checks references across the slices, so validate a
// sidecar's resources merged with the shared ones (Merge).
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

// MaxWeight is the largest instance weight Input.Validate accepts.
const MaxWeight = 1000

// Validate checks everything Translate relies on: DNS-label names, unique
// services, ports in 1..65535 and unique per service and instance, known
// protocols and health states, addresses that are IPs (without zone) or DNS
// host names, weights ≤ MaxWeight, valid UTF-8 in every emitted string, and a
// sane tracing configuration. It accepts everything registry.NormalizeInstance
// accepts, so one registration cannot stop translation for the whole mesh.
// The error names the offending field, e.g. services[2].instances[0].address.
func (in Input) Validate() error {
	seen := map[string]bool{}
	for i, svc := range in.Services {
		f := fmt.Sprintf("services[%d]", i)
		if err := validateService(f, svc); err != nil {
			return err
		}
		if seen[svc.Host()] {
			return fmt.Errorf("xds: input: %s: duplicate service %q", f, svc.Host())
		}
		seen[svc.Host()] = true
	}
	if in.Tracing != nil {
		if err := in.Tracing.validate(); err != nil {
			return err
		}
	}
	return nil
}

// validateService checks one service alone (everything but uniqueness); f
// is its field path in errors, e.g. services[2].
func validateService(f string, svc registry.Service) error {
	if err := validateLabel(svc.Name); err != nil {
		return fmt.Errorf("xds: input: %s.name: %w", f, err)
	}
	if err := validateLabel(svc.Namespace); err != nil {
		return fmt.Errorf("xds: input: %s.namespace: %w", f, err)
	}
	if err := validatePorts(f+".ports", svc.Ports); err != nil {
		return err
	}
	svcPorts := map[uint32]bool{}
	for _, p := range svc.Ports {
		svcPorts[p.Port] = true
	}
	ids := map[string]bool{}
	for j, inst := range svc.Instances {
		if err := validateInstance(fmt.Sprintf("%s.instances[%d]", f, j), svc, inst, svcPorts, ids); err != nil {
			return err
		}
	}
	return nil
}

func validateInstance(f string, svc registry.Service, inst registry.Instance, svcPorts map[uint32]bool, ids map[string]bool) error {
	switch {
	case inst.ID == "" || !utf8.ValidString(inst.ID):
		return fmt.Errorf("xds: input: %s.id: must be non-empty UTF-8", f)
	case ids[inst.ID]:
		return fmt.Errorf("xds: input: %s.id: duplicate id %q", f, inst.ID)
	case inst.Service != svc.Name || inst.Namespace != svc.Namespace:
		return fmt.Errorf("xds: input: %s: instance of %s.%s listed under service %s", f, inst.Service, inst.Namespace, svc.Host())
	case inst.Weight > MaxWeight:
		return fmt.Errorf("xds: input: %s.weight: %d is above %d", f, inst.Weight, MaxWeight)
	}
	ids[inst.ID] = true
	// The registry accepts DNS host names too; Translate leaves such
	// instances out of EDS (Envoy requires IPs there) instead of failing.
	if err := validateHost(inst.Address); err != nil {
		return fmt.Errorf("xds: input: %s.address: %w", f, err)
	}
	switch inst.Health {
	case registry.HealthServing, registry.HealthNotServing, registry.HealthDraining:
	default:
		return fmt.Errorf("xds: input: %s.health: unknown health %q", f, inst.Health)
	}
	for _, l := range [...]struct{ name, v string }{
		{"region", inst.Locality.Region}, {"zone", inst.Locality.Zone}, {"subZone", inst.Locality.SubZone},
	} {
		if !utf8.ValidString(l.v) || len(l.v) > 253 {
			return fmt.Errorf("xds: input: %s.locality.%s: must be UTF-8, at most 253 bytes", f, l.name)
		}
	}
	if err := validatePorts(f+".ports", inst.Ports); err != nil {
		return err
	}
	for k, p := range inst.Ports {
		if !svcPorts[p.Port] {
			return fmt.Errorf("xds: input: %s.ports[%d].port: %d is not a port of service %s", f, k, p.Port, svc.Host())
		}
	}
	return nil
}

// validatePorts checks a port list: numbers in range and unique, known
// protocols, names that are DNS labels when given.
func validatePorts(f string, ports []registry.Port) error {
	seen := map[uint32]bool{}
	for i, p := range ports {
		pf := fmt.Sprintf("%s[%d]", f, i)
		switch {
		case p.Port == 0 || p.Port > 65535:
			return fmt.Errorf("xds: input: %s.port: %d is outside 1..65535", pf, p.Port)
		case p.TargetPort > 65535:
			return fmt.Errorf("xds: input: %s.targetPort: %d is outside 0..65535", pf, p.TargetPort)
		case seen[p.Port]:
			return fmt.Errorf("xds: input: %s.port: duplicate port %d", pf, p.Port)
		case !validProtocol(p.Protocol):
			return fmt.Errorf("xds: input: %s.protocol: unknown protocol %q", pf, p.Protocol)
		}
		if p.Name != "" {
			if err := validateLabel(p.Name); err != nil {
				return fmt.Errorf("xds: input: %s.name: %w", pf, err)
			}
		}
		seen[p.Port] = true
	}
	return nil
}

func (t *Tracing) validate() error {
	if err := validateHost(t.CollectorHost); err != nil {
		return fmt.Errorf("xds: input: tracing.collectorHost: %w", err)
	}
	if t.CollectorPort == 0 || t.CollectorPort > 65535 {
		return fmt.Errorf("xds: input: tracing.collectorPort: %d is outside 1..65535", t.CollectorPort)
	}
	if !validPercent(t.SamplingPercent) {
		return fmt.Errorf("xds: input: tracing.samplingPercent: %v is outside 0..100", t.SamplingPercent)
	}
	for host, p := range t.ServiceSamplingPercent {
		name, ns, ok := strings.Cut(host, ".")
		if !ok || validateLabel(name) != nil || validateLabel(ns) != nil {
			return fmt.Errorf("xds: input: tracing.serviceSamplingPercent[%q]: key must be name.namespace", host)
		}
		if !validPercent(p) {
			return fmt.Errorf("xds: input: tracing.serviceSamplingPercent[%q]: %v is outside 0..100", host, p)
		}
	}
	return nil
}

// Validate checks a sidecar description: service and namespace both empty or
// both DNS labels; inbound ports and app ports in 1..65535, mesh ports
// unique and not OutboundHTTPPort; known protocols.
func (sc Sidecar) Validate() error {
	if sc.Service != "" || sc.Namespace != "" {
		if err := validateLabel(sc.Service); err != nil {
			return fmt.Errorf("xds: sidecar: service: %w", err)
		}
		if err := validateLabel(sc.Namespace); err != nil {
			return fmt.Errorf("xds: sidecar: namespace: %w", err)
		}
	}
	seen := map[uint32]bool{}
	for i, p := range sc.InboundPorts {
		f := fmt.Sprintf("xds: sidecar: inboundPorts[%d]", i)
		switch {
		case p.Port == 0 || p.Port > 65535:
			return fmt.Errorf("%s.port: %d is outside 1..65535", f, p.Port)
		case p.Port == OutboundHTTPPort:
			return fmt.Errorf("%s.port: %d is the outbound listener's port", f, p.Port)
		case seen[p.Port]:
			return fmt.Errorf("%s.port: duplicate port %d", f, p.Port)
		case p.AppPort == 0 || p.AppPort > 65535:
			return fmt.Errorf("%s.appPort: %d is outside 1..65535", f, p.AppPort)
		case !validProtocol(p.Protocol):
			return fmt.Errorf("%s.protocol: unknown protocol %q", f, p.Protocol)
		}
		seen[p.Port] = true
	}
	return nil
}

func validProtocol(p registry.Protocol) bool {
	switch p {
	case registry.ProtocolGRPC, registry.ProtocolHTTP, registry.ProtocolHTTP2, registry.ProtocolTCP:
		return true
	}
	return false
}

func validPercent(p float64) bool { return p >= 0 && p <= 100 } // false for NaN

// validateLabel checks an RFC 1123 DNS label: 1..63 of [a-z0-9-], starting
// and ending with a letter or digit.
func validateLabel(s string) error {
	if s == "" || len(s) > 63 {
		return fmt.Errorf("%q must be 1..63 characters", s)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return fmt.Errorf("%q is not a DNS label (lowercase letters, digits, inner '-')", s)
		}
	}
	return nil
}

// validateHost accepts an IP address or a DNS name of labels.
func validateHost(s string) error {
	if _, ok := canonicalIP(s); ok {
		return nil
	}
	if s == "" || len(s) > 253 {
		return fmt.Errorf("%q is neither an IP address nor a DNS name", s)
	}
	for _, l := range strings.Split(strings.ToLower(s), ".") {
		if validateLabel(l) != nil {
			return fmt.Errorf("%q is neither an IP address nor a DNS name", s)
		}
	}
	return nil
}
