package xds

import (
	"fmt"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/meshplane/meshplane/registry"
)

func TestClientRoute(t *testing.T) {
	rc := clientRoute("greeter.default", "outbound|50051||greeter.default")
	vh := rc.GetVirtualHosts()
	if rc.GetName() != "greeter.default" || len(vh) != 1 || fmt.Sprint(vh[0].GetDomains()) != "[greeter.default]" {
		t.Fatalf("route %v: want one vhost with exactly the dialled name as domain", rc)
	}
	r := vh[0].GetRoutes()[0]
	if r.GetMatch().GetPrefix() != "/" || r.GetRoute().GetCluster() != "outbound|50051||greeter.default" {
		t.Fatalf("route %v", r)
	}
	if r.GetRoute().GetTimeout() != nil {
		t.Error("proxyless route carries a timeout")
	}
}

func TestOutboundRoute(t *testing.T) {
	p := func(n uint32, proto registry.Protocol) registry.Port { return registry.Port{Port: n, Protocol: proto} }
	services := []registry.Service{
		{Name: "shop", Namespace: "prod", Ports: []registry.Port{p(5432, "TCP"), p(8080, "HTTP"), p(9090, "GRPC")}},
		{Name: "shop", Namespace: "staging", Ports: []registry.Port{p(80, "HTTP")}},
		{Name: "db", Namespace: "prod", Ports: []registry.Port{p(5432, "TCP")}},
	}
	tr := &Tracing{SamplingPercent: 1, ServiceSamplingPercent: map[string]float64{"shop.staging": 12.5}}
	rc := outboundRouteOf(services, tr)
	type vhost struct {
		domains, cluster, timeout string
		sampling                  uint32
	}
	want := map[string]vhost{
		"shop.prod:8080":  {"[shop.prod:8080]", "outbound|8080||shop.prod", "<nil>", 10000},
		"shop.prod:9090":  {"[shop.prod shop.prod:9090]", "outbound|9090||shop.prod", "0s", 10000},
		"shop.staging:80": {"[shop.staging shop.staging:80]", "outbound|80||shop.staging", "<nil>", 125000},
	}
	got := map[string]vhost{}
	var order []string
	for _, vh := range rc.GetVirtualHosts() {
		r := vh.GetRoutes()[0]
		timeout := "<nil>"
		if d := r.GetRoute().GetTimeout(); d != nil {
			timeout = d.AsDuration().String()
		}
		got[vh.GetName()] = vhost{fmt.Sprint(vh.GetDomains()), r.GetRoute().GetCluster(), timeout, r.GetTracing().GetRandomSampling().GetNumerator()}
		order = append(order, vh.GetName())
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("virtual hosts\n got %v\nwant %v", got, want)
	}
	if fmt.Sprint(order) != "[shop.prod:8080 shop.prod:9090 shop.staging:80]" {
		t.Errorf("virtual hosts not sorted: %v", order)
	}
	if err := ValidateMessage(rc); err != nil {
		t.Error(err)
	}
	if rc := outboundRouteOf(services, nil); rc.GetVirtualHosts()[0].GetRoutes()[0].GetTracing() != nil {
		t.Error("route tracing without Input.Tracing")
	}
}

// outboundRouteOf is the outbound RouteConfiguration of services.
func outboundRouteOf(services []registry.Service, tr *Tracing) *routev3.RouteConfiguration {
	var vhosts []*routev3.VirtualHost
	for _, svc := range services {
		vhosts = append(vhosts, outboundVirtualHosts(svc, tr)...)
	}
	return outboundRoute(vhosts)
}
