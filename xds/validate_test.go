package xds

import (
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshplane/meshplane/registry"
)

// validFixture is a small translation that passes Validate: one gRPC
// service, an Envoy sidecar for it with tracing, everything merged.
func validFixture(t *testing.T) *Resources {
	t.Helper()
	in := Input{
		Services: []registry.Service{testService("greeter", "default",
			[]registry.Port{{Name: "grpc", Port: 50051, Protocol: registry.ProtocolGRPC}},
			testInstance("a", "10.0.0.1", 1, registry.Locality{Zone: "a"}),
			testInstance("b", "10.0.0.2", 2, registry.Locality{Zone: "b"}),
		)},
		Tracing: &Tracing{CollectorHost: "127.0.0.1", CollectorPort: 4317, SamplingPercent: 1},
	}
	shared, err := Translate(in)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := TranslateSidecar(in, Sidecar{Service: "greeter", Namespace: "default", InboundPorts: []InboundPort{
		{Port: 50051, AppPort: 50052, Protocol: registry.ProtocolGRPC},
		{Port: 5432, AppPort: 5433, Protocol: registry.ProtocolTCP},
	}})
	if err != nil {
		t.Fatal(err)
	}
	res := Merge(shared, sc)
	if err := Validate(res); err != nil {
		t.Fatalf("fixture does not validate: %v", err)
	}
	return res
}

func testService(name, ns string, ports []registry.Port, instances ...registry.Instance) registry.Service {
	for i := range instances {
		instances[i].Service, instances[i].Namespace = name, ns
		if instances[i].Ports == nil {
			instances[i].Ports = ports
		}
	}
	return registry.Service{Name: name, Namespace: ns, Ports: ports, Instances: instances}
}

func testInstance(id, addr string, weight uint32, loc registry.Locality) registry.Instance {
	return registry.Instance{ID: id, Address: addr, Weight: weight, Locality: loc, Health: registry.HealthServing}
}

func findListener(t *testing.T, ls []*listenerv3.Listener, name string) *listenerv3.Listener {
	t.Helper()
	for _, l := range ls {
		if l.GetName() == name {
			return l
		}
	}
	t.Fatalf("no listener %q", name)
	return nil
}

func findRoute(t *testing.T, res *Resources, name string) *routev3.RouteConfiguration {
	t.Helper()
	for _, r := range res.Routes {
		if r.GetName() == name {
			return r
		}
	}
	t.Fatalf("no route %q", name)
	return nil
}

func findCluster(t *testing.T, res *Resources, name string) *clusterv3.Cluster {
	t.Helper()
	for _, c := range res.Clusters {
		if c.GetName() == name {
			return c
		}
	}
	t.Fatalf("no cluster %q", name)
	return nil
}

func findCLA(t *testing.T, res *Resources, name string) *endpointv3.ClusterLoadAssignment {
	t.Helper()
	for _, e := range res.Endpoints {
		if e.GetClusterName() == name {
			return e
		}
	}
	t.Fatalf("no assignment %q", name)
	return nil
}

// editAny unpacks an Any, lets edit change the message and packs it back.
func editAny[T proto.Message](t *testing.T, a *anypb.Any, edit func(T)) {
	t.Helper()
	m, err := a.UnmarshalNew()
	if err != nil {
		t.Fatal(err)
	}
	edit(m.(T))
	if err := a.MarshalFrom(m); err != nil {
		t.Fatal(err)
	}
}

func clientHCM(t *testing.T, res *Resources, name string, edit func(*hcmv3.HttpConnectionManager)) {
	t.Helper()
	editAny(t, findListener(t, res.Listeners, name).GetApiListener().GetApiListener(), edit)
}

const greeterCluster = "outbound|50051||greeter.default"

func TestValidateRules(t *testing.T) {
	tests := map[string]struct {
		breakIt func(t *testing.T, res *Resources)
		want    []string // substrings of the error
	}{
		"maglev": {
			func(t *testing.T, res *Resources) {
				c := findCluster(t, res, greeterCluster)
				c.LbPolicy, c.LbConfig = clusterv3.Cluster_MAGLEV, nil
			},
			[]string{`cluster "outbound|50051||greeter.default"`, "lb_policy", "MAGLEV"},
		},
		"ring hash murmur": {
			func(t *testing.T, res *Resources) {
				findCluster(t, res, greeterCluster).GetRingHashLbConfig().HashFunction = clusterv3.Cluster_RingHashLbConfig_MURMUR_HASH_2
			},
			[]string{"ring_hash_lb_config.hash_function", "XX_HASH"},
		},
		"ring sizes inverted": {
			func(t *testing.T, res *Resources) {
				findCluster(t, res, greeterCluster).GetRingHashLbConfig().MinimumRingSize = wrapperspb.UInt64(8192)
			},
			[]string{"minimum_ring_size 8192 above maximum_ring_size"},
		},
		"eds not over ads": {
			func(t *testing.T, res *Resources) {
				findCluster(t, res, greeterCluster).GetEdsClusterConfig().EdsConfig = &corev3.ConfigSource{
					ConfigSourceSpecifier: &corev3.ConfigSource_Path{Path: "/x"},
				}
			},
			[]string{"eds_cluster_config.eds_config", "ads"},
		},
		"eds cluster without assignment": {
			func(t *testing.T, res *Resources) { res.Endpoints = nil },
			[]string{`cluster "outbound|50051||greeter.default"`, `ClusterLoadAssignment "outbound|50051||greeter.default" does not exist`},
		},
		"locality missing": {
			func(t *testing.T, res *Resources) { findCLA(t, res, greeterCluster).Endpoints[0].Locality = nil },
			[]string{`endpoints "outbound|50051||greeter.default"`, "endpoints[0].locality", "missing"},
		},
		"locality weight zero": {
			func(t *testing.T, res *Resources) {
				findCLA(t, res, greeterCluster).Endpoints[1].LoadBalancingWeight = nil
			},
			[]string{"endpoints[1].load_balancing_weight", "≥ 1"},
		},
		"duplicate locality": {
			func(t *testing.T, res *Resources) {
				cla := findCLA(t, res, greeterCluster)
				cla.Endpoints[1].Locality = proto.Clone(cla.Endpoints[0].Locality).(*corev3.Locality)
			},
			[]string{"endpoints[1].locality", "duplicate locality in priority 0"},
		},
		"priority gap": {
			func(t *testing.T, res *Resources) { findCLA(t, res, greeterCluster).Endpoints[1].Priority = 2 },
			[]string{"priorities not contiguous: 1 missing"},
		},
		"duplicate endpoint address": {
			func(t *testing.T, res *Resources) {
				cla := findCLA(t, res, greeterCluster)
				cla.Endpoints[1].LbEndpoints[0].GetEndpoint().Address = socketAddress("10.0.0.1", 50051)
			},
			[]string{"endpoints[1].lb_endpoints[0].endpoint.address", "duplicate endpoint address 10.0.0.1:50051"},
		},
		"endpoint weight zero": {
			func(t *testing.T, res *Resources) {
				findCLA(t, res, greeterCluster).Endpoints[0].LbEndpoints[0].LoadBalancingWeight = wrapperspb.UInt32(0)
			},
			[]string{"endpoints[0].lb_endpoints[0].load_balancing_weight"},
		},
		"inline assignment without locality": {
			func(t *testing.T, res *Resources) {
				findCluster(t, res, "inbound|50051").GetLoadAssignment().Endpoints[0].Locality = nil
			},
			[]string{`cluster "inbound|50051"`, "load_assignment.endpoints[0].locality"},
		},
		"router not last": {
			func(t *testing.T, res *Resources) {
				clientHCM(t, res, "greeter.default", func(h *hcmv3.HttpConnectionManager) {
					h.HttpFilters = append(h.HttpFilters, &hcmv3.HttpFilter{Name: "envoy.filters.http.fault"})
				})
			},
			[]string{`listener "greeter.default"`, "api_listener.api_listener(envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager).http_filters", "router"},
		},
		"rds not over ads": {
			func(t *testing.T, res *Resources) {
				clientHCM(t, res, "greeter.default", func(h *hcmv3.HttpConnectionManager) {
					h.GetRds().ConfigSource = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Path{Path: "/x"}}
				})
			},
			[]string{"rds.config_source", "ads"},
		},
		"rds name without route": {
			func(t *testing.T, res *Resources) {
				clientHCM(t, res, "greeter.default:50051", func(h *hcmv3.HttpConnectionManager) {
					h.GetRds().RouteConfigName = "nope"
				})
			},
			[]string{`listener "greeter.default:50051"`, "rds.route_config_name", `RouteConfiguration "nope" does not exist`},
		},
		"envoy rds without route": {
			func(t *testing.T, res *Resources) {
				var kept []*routev3.RouteConfiguration
				for _, r := range res.Routes {
					if r.GetName() != OutboundHTTPListenerName {
						kept = append(kept, r)
					}
				}
				res.Routes = kept
			},
			[]string{`envoy listener "outbound_http"`, `RouteConfiguration "outbound_http" does not exist`},
		},
		"route to missing cluster": {
			func(t *testing.T, res *Resources) {
				findRoute(t, res, "greeter.default").VirtualHosts[0].Routes[0].GetRoute().ClusterSpecifier =
					&routev3.RouteAction_Cluster{Cluster: "ghost"}
			},
			[]string{`route "greeter.default"`, "virtual_hosts[0].routes[0].route.cluster", `cluster "ghost" does not exist`},
		},
		"inline route to missing cluster": {
			func(t *testing.T, res *Resources) {
				var kept []*clusterv3.Cluster
				for _, c := range res.Clusters {
					if c.GetName() != "inbound|50051" {
						kept = append(kept, c)
					}
				}
				res.Clusters = kept
			},
			[]string{`envoy listener "inbound|50051"`, "route_config.virtual_hosts[0].routes[0].route.cluster", `cluster "inbound|50051" does not exist`},
		},
		"tcp proxy to missing cluster": {
			func(t *testing.T, res *Resources) {
				editAny(t, findListener(t, res.EnvoyListeners, "inbound|5432").FilterChains[0].Filters[0].GetTypedConfig(),
					func(p *tcpproxyv3.TcpProxy) { p.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: "ghost"} })
			},
			[]string{`envoy listener "inbound|5432"`, "(envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy).cluster", `"ghost" does not exist`},
		},
		"tracing cluster missing": {
			func(t *testing.T, res *Resources) {
				var kept []*clusterv3.Cluster
				for _, c := range res.Clusters {
					if c.GetName() != TracingClusterName {
						kept = append(kept, c)
					}
				}
				res.Clusters = kept
			},
			[]string{"tracing.provider.typed_config(envoy.config.trace.v3.OpenTelemetryConfig).grpc_service.envoy_grpc.cluster_name", `cluster "meshplane_otlp" does not exist`},
		},
		"retry zero": {
			func(t *testing.T, res *Resources) {
				findRoute(t, res, "greeter.default").VirtualHosts[0].Routes[0].GetRoute().RetryPolicy = &routev3.RetryPolicy{
					RetryOn: "unavailable", NumRetries: wrapperspb.UInt32(0),
				}
			},
			[]string{"routes[0].route.retry_policy.num_retries", "0 is rejected by gRPC"},
		},
		"ValidateAll inside an Any": {
			func(t *testing.T, res *Resources) {
				clientHCM(t, res, "greeter.default", func(h *hcmv3.HttpConnectionManager) { h.StatPrefix = "" })
			},
			[]string{"api_listener.api_listener(envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager)", "StatPrefix"},
		},
		"ValidateAll inside nested Anys": {
			func(t *testing.T, res *Resources) {
				editAny(t, findListener(t, res.EnvoyListeners, "inbound|50051").FilterChains[0].Filters[0].GetTypedConfig(),
					func(h *hcmv3.HttpConnectionManager) {
						editAny(t, h.GetTracing().GetProvider().GetTypedConfig(), func(o *tracev3.OpenTelemetryConfig) {
							o.GetGrpcService().GetEnvoyGrpc().ClusterName = ""
						})
					})
			},
			[]string{`envoy listener "inbound|50051"`, "(envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager).tracing.provider.typed_config(envoy.config.trace.v3.OpenTelemetryConfig)", "ClusterName"},
		},
		"ValidateAll top level": {
			func(t *testing.T, res *Resources) { findRoute(t, res, "greeter.default").VirtualHosts[0].Domains = nil },
			[]string{`route "greeter.default"`, "Domains"},
		},
		"unknown Any type": {
			func(t *testing.T, res *Resources) {
				findListener(t, res.Listeners, "greeter.default").GetApiListener().ApiListener =
					&anypb.Any{TypeUrl: "type.googleapis.com/no.such.Type"}
			},
			[]string{"api_listener.api_listener", "unpack type.googleapis.com/no.such.Type"},
		},
		"duplicate name": {
			func(t *testing.T, res *Resources) {
				res.Clusters = append(res.Clusters, proto.Clone(res.Clusters[0]).(*clusterv3.Cluster))
			},
			[]string{"cluster", "duplicate name"},
		},
		"empty name": {
			func(t *testing.T, res *Resources) {
				res.Routes = append(res.Routes, &routev3.RouteConfiguration{})
			},
			[]string{"route #", "empty name"},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			res := validFixture(t)
			tc.breakIt(t, res)
			err := Validate(res)
			if err == nil {
				t.Fatal("Validate accepted a broken resource")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestValidateMessage(t *testing.T) {
	if err := ValidateMessage(ServerListener("10.0.0.1", 50051)); err != nil {
		t.Fatalf("ServerListener does not validate: %v", err)
	}
	bad := ServerListener("10.0.0.1", 50051)
	editAny(t, bad.FilterChains[0].Filters[0].GetTypedConfig(), func(h *hcmv3.HttpConnectionManager) {
		h.GetRouteConfig().VirtualHosts[0].Routes[0].Match = nil
	})
	err := ValidateMessage(bad)
	if err == nil || !strings.Contains(err.Error(), `envoy.config.listener.v3.Listener "grpc/server?xds.resource.listening_address=10.0.0.1:50051"`) ||
		!strings.Contains(err.Error(), "Route.Match: value is required") {
		t.Fatalf("ValidateMessage = %v, want an error naming the listener and Route.Match", err)
	}
	// A lone message has nothing to resolve references against.
	if err := ValidateMessage(clientListener("x.y")); err != nil {
		t.Fatalf("ValidateMessage checked references: %v", err)
	}
	if err := Validate(nil); err == nil {
		t.Fatal("Validate(nil) = nil")
	}
}

func TestValidateCapsErrors(t *testing.T) {
	res := &Resources{}
	for i := 0; i < 50; i++ {
		res.Routes = append(res.Routes, &routev3.RouteConfiguration{})
	}
	err := Validate(res)
	if err == nil || !strings.Contains(err.Error(), "more problems") {
		t.Fatalf("Validate = %v, want a capped list", err)
	}
}

// Identical packed messages are checked once; each resource carrying one
// must still get its own, correctly named, error.
func TestValidateRepeatedAny(t *testing.T) {
	res := &Resources{}
	for _, ip := range []string{"10.0.0.1", "10.0.0.2"} {
		l := ServerListener(ip, 50051)
		editAny(t, l.FilterChains[0].Filters[0].GetTypedConfig(), func(h *hcmv3.HttpConnectionManager) { h.StatPrefix = "" })
		res.Listeners = append(res.Listeners, l)
	}
	err := Validate(res)
	if err == nil {
		t.Fatal("Validate accepted listeners without stat_prefix")
	}
	for _, want := range []string{
		`listener "grpc/server?xds.resource.listening_address=10.0.0.1:50051": filter_chains[0].filters[0].typed_config(envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager)`,
		`listener "grpc/server?xds.resource.listening_address=10.0.0.2:50051": filter_chains[0].filters[0].typed_config(envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager)`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
}
