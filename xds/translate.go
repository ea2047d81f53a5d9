package xds

import (
	"cmp"
	"fmt"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshplane/meshplane/registry"
)

// Translate builds the node-independent resources for a registry snapshot:
// per service port an EDS cluster and its ClusterLoadAssignment, the
// proxyless gRPC client Listeners and RouteConfigurations, the xDS-server
// Listeners of every instance's GRPC ports, and the Envoy outbound HTTP
// Listener with its RouteConfiguration (plus the tracing cluster when
// in.Tracing is set). Same input, same bytes: every slice is sorted by name
// and no map order leaks out.
//
// It is pure: it reads only in and keeps nothing between calls. It returns an
// error, and no resources, when in.Validate fails. It is Assemble over
// TranslateService of every service, which is how the Server publishes
// incrementally (translating only the services that changed).
func Translate(in Input) (*Resources, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	services := sortedServices(in.Services)
	parts := make([]*ServiceResources, 0, len(services))
	serverChain := serverFilterChain() // cloned: packing it 10,000 times costs more than all else
	for _, svc := range services {
		parts = append(parts, translateService(svc, in.Tracing, serverChain))
	}
	return Assemble(parts, in.Tracing), nil
}

// ServiceResources is one service's share of a translation: everything
// Translate builds from that service alone. Assemble joins the shares of all
// services into Resources.
type ServiceResources struct {
	// Clusters and Endpoints: per service port an EDS cluster and its
	// ClusterLoadAssignment.
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	// Listeners are the proxyless client Listeners ("name.namespace:port" and
	// "name.namespace"); Routes their RouteConfigurations.
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	// ServerListeners are the xDS-server Listeners of the instances' GRPC
	// ports. Two services may list the same IP:PORT; Assemble keeps one.
	ServerListeners []*listenerv3.Listener
	// VirtualHosts are the service's virtual hosts in the Envoy outbound
	// RouteConfiguration (they depend on the tracing configuration).
	VirtualHosts []*routev3.VirtualHost
}

// TranslateService builds one service's resources (see ServiceResources)
// for the tracing configuration tr (nil: none). It checks the service as
// Input.Validate would (field names start at "service"), but not tr, nor
// that the service is unique. Pure, like Translate:
// Assemble(TranslateService(s) for s in sorted services) equals Translate.
func TranslateService(svc registry.Service, tr *Tracing) (*ServiceResources, error) {
	if err := validateService("service", svc); err != nil {
		return nil, err
	}
	return translateService(svc, tr, serverFilterChain()), nil
}

// translateService is TranslateService without the validation; serverChain
// is cloned into every server Listener.
func translateService(svc registry.Service, tr *Tracing, serverChain *listenerv3.FilterChain) *ServiceResources {
	out := &ServiceResources{}
	host := svc.Host()
	for _, p := range svc.Ports {
		cluster := ClusterName(host, p.Port)
		out.Clusters = append(out.Clusters, edsCluster(host, p))
		out.Endpoints = append(out.Endpoints, loadAssignment(svc, p))
		name := ClientListenerName(host, p.Port)
		out.Listeners = append(out.Listeners, clientListener(name))
		out.Routes = append(out.Routes, clientRoute(name, cluster))
	}
	if def, ok := DefaultPort(svc); ok {
		out.Listeners = append(out.Listeners, clientListener(host))
		out.Routes = append(out.Routes, clientRoute(host, ClusterName(host, def.Port)))
	}
	seen := map[string]bool{}
	for _, inst := range svc.Instances {
		ip, ok := canonicalIP(inst.Address)
		if !ok {
			continue
		}
		for _, p := range inst.Ports {
			if p.Protocol != registry.ProtocolGRPC {
				continue
			}
			name := ServerListenerName(ip, p.EffectiveTargetPort())
			if !seen[name] {
				seen[name] = true
				out.ServerListeners = append(out.ServerListeners,
					serverListener(ip, p.EffectiveTargetPort(), proto.Clone(serverChain).(*listenerv3.FilterChain)))
			}
		}
	}
	out.VirtualHosts = outboundVirtualHosts(svc, tr)
	return out
}

// Assemble joins per-service translations (TranslateService) into the
// node-independent Resources: their clusters, assignments, Listeners and
// routes (one server Listener per name), the Envoy outbound HTTP Listener
// and its RouteConfiguration holding every service's virtual hosts, and the
// tracing cluster when tr is set. tr must be the configuration the services
// were translated with. Every slice is sorted by name. The resources are
// shared with parts, not copied.
func Assemble(parts []*ServiceResources, tr *Tracing) *Resources {
	res := &Resources{}
	var vhosts []*routev3.VirtualHost
	seen := map[string]bool{}
	for _, p := range parts {
		res.Clusters = append(res.Clusters, p.Clusters...)
		res.Endpoints = append(res.Endpoints, p.Endpoints...)
		res.Listeners = append(res.Listeners, p.Listeners...)
		res.Routes = append(res.Routes, p.Routes...)
		for _, l := range p.ServerListeners {
			if !seen[l.GetName()] {
				seen[l.GetName()] = true
				res.Listeners = append(res.Listeners, l)
			}
		}
		vhosts = append(vhosts, p.VirtualHosts...)
	}
	res.EnvoyListeners = append(res.EnvoyListeners, outboundListener(tr))
	res.Routes = append(res.Routes, outboundRoute(vhosts))
	if tr != nil {
		res.Clusters = append(res.Clusters, tracingCluster(tr))
	}
	res.sort()
	return res
}

// TranslateSidecar builds the resources specific to one Envoy sidecar: per
// inbound port a Listener "inbound|<port>" on 0.0.0.0:<port> and a STATIC
// cluster of the same name at 127.0.0.1:<app port>. Only EnvoyListeners and
// Clusters are filled; the sidecar also gets everything Translate returns
// except Listeners (those are for proxyless gRPC). It reads only in.Tracing
// (and validates only that, so it stays cheap per connecting sidecar). Pure,
// like Translate.
func TranslateSidecar(in Input, sc Sidecar) (*Resources, error) {
	if in.Tracing != nil {
		if err := in.Tracing.validate(); err != nil {
			return nil, err
		}
	}
	if err := sc.Validate(); err != nil {
		return nil, err
	}
	host := ""
	if sc.Service != "" {
		host = registry.Service{Name: sc.Service, Namespace: sc.Namespace}.Host()
	}
	res := &Resources{}
	for _, ip := range sc.InboundPorts {
		res.EnvoyListeners = append(res.EnvoyListeners, inboundListener(ip, host, in.Tracing))
		res.Clusters = append(res.Clusters, staticCluster(InboundName(ip.Port), "127.0.0.1", ip.AppPort, isHTTP2(ip.Protocol)))
	}
	res.sort()
	return res, nil
}

// Merge returns the union of several translations (for example Translate's
// and TranslateSidecar's output for one sidecar), each slice sorted by name.
// The resources themselves are shared, not copied.
func Merge(parts ...*Resources) *Resources {
	out := &Resources{}
	for _, p := range parts {
		if p == nil {
			continue
		}
		out.Listeners = append(out.Listeners, p.Listeners...)
		out.EnvoyListeners = append(out.EnvoyListeners, p.EnvoyListeners...)
		out.Routes = append(out.Routes, p.Routes...)
		out.Clusters = append(out.Clusters, p.Clusters...)
		out.Endpoints = append(out.Endpoints, p.Endpoints...)
	}
	out.sort()
	return out
}

// sort orders every slice by resource name.
func (r *Resources) sort() {
	slices.SortStableFunc(r.Listeners, func(a, b *listenerv3.Listener) int { return cmp.Compare(a.GetName(), b.GetName()) })
	slices.SortStableFunc(r.EnvoyListeners, func(a, b *listenerv3.Listener) int { return cmp.Compare(a.GetName(), b.GetName()) })
	slices.SortStableFunc(r.Routes, func(a, b *routev3.RouteConfiguration) int { return cmp.Compare(a.GetName(), b.GetName()) })
	slices.SortStableFunc(r.Clusters, func(a, b *clusterv3.Cluster) int { return cmp.Compare(a.GetName(), b.GetName()) })
	slices.SortStableFunc(r.Endpoints, func(a, b *endpointv3.ClusterLoadAssignment) int {
		return cmp.Compare(a.GetClusterName(), b.GetClusterName())
	})
}

// sortedServices returns the services ordered by namespace, then name,
// without touching the caller's slice.
func sortedServices(in []registry.Service) []registry.Service {
	out := slices.Clone(in)
	slices.SortStableFunc(out, func(a, b registry.Service) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// anyOf packs a message deterministically, so equal resources marshal to
// equal bytes. Marshalling fails only on invalid UTF-8 in a string field;
// every string packed here is either constant or derived from names that
// Input.Validate has checked, so a failure is a translator bug.
func anyOf(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		panic(fmt.Sprintf("xds: pack %T: %v", m, err))
	}
	return a
}
