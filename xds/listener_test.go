package xds

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"

	"github.com/meshplane/meshplane/registry"
)

func unpackHCM(t *testing.T, l *listenerv3.Listener) *hcmv3.HttpConnectionManager {
	t.Helper()
	a := l.GetApiListener().GetApiListener()
	if a == nil {
		a = l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig()
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		t.Fatal(err)
	}
	hcm, ok := m.(*hcmv3.HttpConnectionManager)
	if !ok {
		t.Fatalf("listener %q carries %T, not an HTTP connection manager", l.GetName(), m)
	}
	return hcm
}

func TestListeners(t *testing.T) {
	tr := &Tracing{CollectorHost: "127.0.0.1", CollectorPort: 4317, SamplingPercent: 5,
		ServiceSamplingPercent: map[string]float64{"greeter.default": 50}}
	tests := map[string]struct {
		l           *listenerv3.Listener
		name        string
		addr        string // "" = api_listener, no address
		port        uint32
		rds         string // "" = inline route configuration
		wantTracing float64
		dir         corev3.TrafficDirection
	}{
		"proxyless client": {
			l: clientListener("greeter.default:50051"), name: "greeter.default:50051", rds: "greeter.default:50051", wantTracing: -1,
		},
		"xds server": {
			l: ServerListener("10.0.0.1", 50051), name: "grpc/server?xds.resource.listening_address=10.0.0.1:50051",
			addr: "10.0.0.1", port: 50051, wantTracing: -1, dir: corev3.TrafficDirection_INBOUND,
		},
		"xds server v6": {
			l: ServerListener("::1", 50051), name: "grpc/server?xds.resource.listening_address=[::1]:50051",
			addr: "::1", port: 50051, wantTracing: -1, dir: corev3.TrafficDirection_INBOUND,
		},
		"envoy outbound": {
			l: outboundListener(nil), name: "outbound_http", addr: "0.0.0.0", port: 15001, rds: "outbound_http",
			wantTracing: -1, dir: corev3.TrafficDirection_OUTBOUND,
		},
		"envoy outbound traced": {
			l: outboundListener(tr), name: "outbound_http", addr: "0.0.0.0", port: 15001, rds: "outbound_http",
			wantTracing: 5, dir: corev3.TrafficDirection_OUTBOUND,
		},
		"envoy inbound traced": {
			l:    inboundListener(InboundPort{Port: 8080, AppPort: 8081, Protocol: registry.ProtocolHTTP}, "greeter.default", tr),
			name: "inbound|8080", addr: "0.0.0.0", port: 8080, wantTracing: 50, dir: corev3.TrafficDirection_INBOUND,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			l := tc.l
			if l.GetName() != tc.name {
				t.Errorf("name %q, want %q", l.GetName(), tc.name)
			}
			sa := l.GetAddress().GetSocketAddress()
			if sa.GetAddress() != tc.addr || sa.GetPortValue() != tc.port {
				t.Errorf("address %v, want %s:%d", sa, tc.addr, tc.port)
			}
			if l.GetTrafficDirection() != tc.dir {
				t.Errorf("traffic_direction %v, want %v", l.GetTrafficDirection(), tc.dir)
			}
			hcm := unpackHCM(t, l)
			if got := hcm.GetRds().GetRouteConfigName(); got != tc.rds {
				t.Errorf("rds %q, want %q", got, tc.rds)
			}
			if tc.rds == "" && hcm.GetRouteConfig() == nil {
				t.Error("neither RDS nor an inline route configuration")
			}
			if f := hcm.GetHttpFilters(); len(f) == 0 || f[len(f)-1].GetName() != routerFilterName {
				t.Errorf("router filter not last: %v", f)
			}
			switch {
			case tc.wantTracing < 0 && hcm.GetTracing() != nil:
				t.Error("unexpected tracing")
			case tc.wantTracing >= 0 && hcm.GetTracing().GetRandomSampling().GetValue() != tc.wantTracing:
				t.Errorf("tracing %v, want random sampling %v", hcm.GetTracing(), tc.wantTracing)
			}
			if err := ValidateMessage(l); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestInboundTCPListener(t *testing.T) {
	l := inboundListener(InboundPort{Port: 5432, AppPort: 15432, Protocol: registry.ProtocolTCP}, "", nil)
	m, err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalNew()
	if err != nil {
		t.Fatal(err)
	}
	p, ok := m.(*tcpproxyv3.TcpProxy)
	if !ok || p.GetCluster() != "inbound|5432" {
		t.Fatalf("filter %T %v, want a TCP proxy to inbound|5432", m, m)
	}
	if err := ValidateMessage(l); err != nil {
		t.Error(err)
	}
}

func TestServerListenerRoute(t *testing.T) {
	rc := unpackHCM(t, ServerListener("10.0.0.1", 1)).GetRouteConfig()
	vh := rc.GetVirtualHosts()
	if len(vh) != 1 || len(vh[0].GetDomains()) != 1 || vh[0].GetDomains()[0] != "*" {
		t.Fatalf("virtual hosts %v, want one with domain *", vh)
	}
	if vh[0].GetRoutes()[0].GetNonForwardingAction() == nil {
		t.Fatal("server route is not a non_forwarding_action")
	}
}
