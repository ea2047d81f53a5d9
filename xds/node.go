package xds

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/meshplane/meshplane/registry"
)

// Node metadata keys a data plane sets in its bootstrap (node.metadata) to
// tell the control plane what it is. Copy this block to docs/xds.md.
//
//	MESHPLANE_KIND           "sidecar" (an Envoy sidecar) or "grpc" (a proxyless
//	                         gRPC client or server). Optional: a node whose
//	                         user_agent_name is "envoy" is a sidecar, any other
//	                         node is proxyless gRPC.
//	MESHPLANE_SERVICE        "name.namespace" of the local service a sidecar
//	                         fronts ("name" alone means namespace "default").
//	                         Empty or absent: an egress-only sidecar.
//	MESHPLANE_INBOUND_PORTS  comma-separated "PORT[:APP_PORT][/PROTOCOL]": the
//	                         mesh ports the sidecar accepts inbound traffic on,
//	                         the local application port each is forwarded to
//	                         (127.0.0.1:APP_PORT, default PORT) and the protocol
//	                         (GRPC, HTTP, HTTP2 or TCP; default: the
//	                         registered service port's protocol, else HTTP).
//	                         Requires MESHPLANE_SERVICE.
//
// Values may be strings or, for MESHPLANE_INBOUND_PORTS, a list of strings.
const (
	MetaKind         = "MESHPLANE_KIND"
	MetaService      = "MESHPLANE_SERVICE"
	MetaInboundPorts = "MESHPLANE_INBOUND_PORTS"
)

// NodeKind is the kind of data plane behind an xDS stream.
type NodeKind string

// Kinds of data plane.
const (
	// KindEnvoy is an Envoy sidecar: wildcard LDS/CDS, never api_listeners.
	KindEnvoy NodeKind = "envoy"
	// KindGRPC is a proxyless gRPC client or xDS-enabled gRPC server: it
	// subscribes to every type by name.
	KindGRPC NodeKind = "grpc"
)

// maxInboundPorts bounds MESHPLANE_INBOUND_PORTS so a hostile node cannot
// make the server build thousands of listeners for it.
const maxInboundPorts = 64

// NodeInfo is what the control plane reads from an xDS node.
type NodeInfo struct {
	ID        string   `json:"nodeId"`
	Kind      NodeKind `json:"kind"`
	UserAgent string   `json:"userAgent"`
	// Sidecar is the node's sidecar description; meaningful only for
	// KindEnvoy. InboundPorts with an empty Protocol take the registered
	// service port's protocol at translation time.
	Sidecar Sidecar `json:"sidecar,omitzero"`
}

// nodeKind classifies a node without parsing the rest of its metadata; the
// cache mux calls it on every request.
func nodeKind(n *corev3.Node) NodeKind {
	if v := n.GetMetadata().GetFields()[MetaKind]; v != nil {
		switch strings.ToLower(v.GetStringValue()) {
		case "sidecar", "envoy":
			return KindEnvoy
		case "grpc", "proxyless":
			return KindGRPC
		}
	}
	if strings.EqualFold(n.GetUserAgentName(), "envoy") {
		return KindEnvoy
	}
	return KindGRPC
}

// ParseNode reads a node's kind and, for an Envoy sidecar, the service and
// inbound ports from its metadata (see MetaKind). The error names the
// offending metadata key.
func ParseNode(n *corev3.Node) (NodeInfo, error) {
	info := NodeInfo{ID: n.GetId(), UserAgent: n.GetUserAgentName(), Kind: nodeKind(n)}
	fields := n.GetMetadata().GetFields()
	if v := fields[MetaKind]; v != nil {
		switch strings.ToLower(v.GetStringValue()) {
		case "sidecar", "envoy", "grpc", "proxyless":
		default:
			return info, fmt.Errorf("xds: node metadata %s: %q is not sidecar or grpc", MetaKind, v.GetStringValue())
		}
	}
	if info.Kind != KindEnvoy {
		return info, nil
	}
	if info.ID == "" {
		// Sidecar resources are kept per node ID.
		return info, errors.New("xds: node id: empty; an Envoy sidecar needs one (--service-node or node.id)")
	}
	if v := fields[MetaService]; v != nil && v.GetStringValue() != "" {
		name, ns, err := parseServiceRef(v.GetStringValue())
		if err != nil {
			return info, fmt.Errorf("xds: node metadata %s: %w", MetaService, err)
		}
		info.Sidecar.Service, info.Sidecar.Namespace = name, ns
	}
	v := fields[MetaInboundPorts]
	if v == nil {
		return info, nil
	}
	var specs []string
	if l := v.GetListValue(); l != nil {
		for _, e := range l.GetValues() {
			specs = append(specs, e.GetStringValue())
		}
	} else {
		for s := range strings.SplitSeq(v.GetStringValue(), ",") {
			if s = strings.TrimSpace(s); s != "" {
				specs = append(specs, s)
			}
		}
	}
	if len(specs) == 0 {
		return info, nil
	}
	if info.Sidecar.Service == "" {
		return info, fmt.Errorf("xds: node metadata %s: inbound ports need %s", MetaInboundPorts, MetaService)
	}
	if len(specs) > maxInboundPorts {
		return info, fmt.Errorf("xds: node metadata %s: %d ports, at most %d", MetaInboundPorts, len(specs), maxInboundPorts)
	}
	seen := map[uint32]bool{}
	for _, s := range specs {
		ip, err := parseInboundPort(s)
		if err != nil {
			return info, fmt.Errorf("xds: node metadata %s: %q: %w", MetaInboundPorts, s, err)
		}
		if ip.Port == OutboundHTTPPort {
			return info, fmt.Errorf("xds: node metadata %s: port %d is the outbound listener's port", MetaInboundPorts, ip.Port)
		}
		if seen[ip.Port] {
			return info, fmt.Errorf("xds: node metadata %s: port %d listed twice", MetaInboundPorts, ip.Port)
		}
		seen[ip.Port] = true
		info.Sidecar.InboundPorts = append(info.Sidecar.InboundPorts, ip)
	}
	return info, nil
}

// parseServiceRef splits "name.namespace" (namespace defaults to "default").
func parseServiceRef(s string) (name, ns string, err error) {
	name, ns, found := strings.Cut(s, ".")
	if !found {
		ns = "default"
	}
	if !isDNSLabel(name) {
		return "", "", fmt.Errorf("service name %q is not a DNS label", name)
	}
	if !isDNSLabel(ns) {
		return "", "", fmt.Errorf("namespace %q is not a DNS label", ns)
	}
	return name, ns, nil
}

// isDNSLabel reports whether s is an RFC 1123 label: 1–63 of [a-z0-9-], not
// starting or ending with '-'.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// parseInboundPort parses "PORT[:APP_PORT][/PROTOCOL]".
func parseInboundPort(s string) (InboundPort, error) {
	var ip InboundPort
	s, proto, hasProto := strings.Cut(s, "/")
	if hasProto {
		switch p := registry.Protocol(strings.ToUpper(proto)); p {
		case registry.ProtocolGRPC, registry.ProtocolHTTP, registry.ProtocolHTTP2, registry.ProtocolTCP:
			ip.Protocol = p
		default:
			return ip, fmt.Errorf("protocol %q is not GRPC, HTTP, HTTP2 or TCP", proto)
		}
	}
	port, app, hasApp := strings.Cut(s, ":")
	p, err := parsePort(port)
	if err != nil {
		return ip, fmt.Errorf("port: %w", err)
	}
	ip.Port, ip.AppPort = p, p
	if hasApp {
		if ip.AppPort, err = parsePort(app); err != nil {
			return ip, fmt.Errorf("app port: %w", err)
		}
	}
	return ip, nil
}

func parsePort(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port number 1-65535", s)
	}
	return uint32(n), nil
}

// sidecarFor completes a node's sidecar description against the input: an
// inbound port without a protocol takes the registered service port's
// protocol, else HTTP.
func sidecarFor(sc Sidecar, in Input) Sidecar {
	out := sc
	out.InboundPorts = make([]InboundPort, len(sc.InboundPorts))
	copy(out.InboundPorts, sc.InboundPorts)
	for i := range out.InboundPorts {
		ip := &out.InboundPorts[i]
		if ip.Protocol != "" {
			continue
		}
		ip.Protocol = registry.ProtocolHTTP
		for _, svc := range in.Services {
			if svc.Name != sc.Service || svc.Namespace != sc.Namespace {
				continue
			}
			for _, p := range svc.Ports {
				if p.Port == ip.Port && p.Protocol != "" {
					ip.Protocol = p.Protocol
				}
			}
		}
	}
	return out
}
