package xds

import (
	"fmt"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/meshplane/meshplane/registry"
)

// flatCLA renders an assignment as "locality weight: addr:port/weight ..."
// lines, which keeps the table below readable.
func flatCLA(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, l := range cla.GetEndpoints() {
		s := fmt.Sprintf("%s/%s/%s w=%d p=%d:", l.GetLocality().GetRegion(), l.GetLocality().GetZone(),
			l.GetLocality().GetSubZone(), l.GetLoadBalancingWeight().GetValue(), l.GetPriority())
		for _, e := range l.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			s += fmt.Sprintf(" %s:%d/%d/%s", sa.GetAddress(), sa.GetPortValue(), e.GetLoadBalancingWeight().GetValue(), e.GetHealthStatus())
		}
		out = append(out, s)
	}
	return out
}

func TestLoadAssignment(t *testing.T) {
	grpc := registry.Port{Name: "grpc", Port: 50051, Protocol: registry.ProtocolGRPC}
	inst := func(id, addr string, w uint32, zone string, h registry.Health, ports ...registry.Port) registry.Instance {
		in := testInstance(id, addr, w, registry.Locality{Region: "r", Zone: zone})
		in.Health = h
		in.Ports = ports
		return in
	}
	tests := map[string]struct {
		instances []registry.Instance
		want      []string
	}{
		"empty": {nil, nil},
		"weights and localities": {
			[]registry.Instance{
				inst("c", "10.0.0.3", 2, "b", registry.HealthServing, grpc),
				inst("a", "10.0.0.1", 1, "a", registry.HealthServing, grpc),
				inst("b", "10.0.0.2", 1, "a", registry.HealthServing, grpc),
			},
			[]string{
				"r/a/ w=2 p=0: 10.0.0.1:50051/1/HEALTHY 10.0.0.2:50051/1/HEALTHY",
				"r/b/ w=2 p=0: 10.0.0.3:50051/2/HEALTHY",
			},
		},
		"only serving": {
			[]registry.Instance{
				inst("a", "10.0.0.1", 1, "a", registry.HealthNotServing, grpc),
				inst("b", "10.0.0.2", 1, "a", registry.HealthDraining, grpc),
				inst("c", "10.0.0.3", 3, "a", registry.HealthServing, grpc),
			},
			[]string{"r/a/ w=3 p=0: 10.0.0.3:50051/3/HEALTHY"},
		},
		"target port and weight zero": {
			[]registry.Instance{inst("a", "10.0.0.1", 0, "a", registry.HealthServing,
				registry.Port{Port: 50051, TargetPort: 6000, Protocol: registry.ProtocolGRPC})},
			[]string{"r/a/ w=1 p=0: 10.0.0.1:6000/1/HEALTHY"},
		},
		"duplicate address, smallest id wins": {
			[]registry.Instance{
				inst("z", "10.0.0.1", 9, "b", registry.HealthServing, grpc),
				inst("a", "::ffff:10.0.0.1", 4, "a", registry.HealthServing, grpc),
			},
			[]string{"r/a/ w=4 p=0: 10.0.0.1:50051/4/HEALTHY"},
		},
		"instance without the port": {
			[]registry.Instance{inst("a", "10.0.0.1", 1, "a", registry.HealthServing,
				registry.Port{Port: 80, Protocol: registry.ProtocolHTTP})},
			nil,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			svc := registry.Service{Name: "greeter", Namespace: "default", Ports: []registry.Port{grpc}, Instances: tc.instances}
			cla := loadAssignment(svc, grpc)
			if cla.GetClusterName() != "outbound|50051||greeter.default" {
				t.Errorf("cluster_name = %q", cla.GetClusterName())
			}
			got := flatCLA(cla)
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got\n%q\nwant\n%q", got, tc.want)
			}
			if err := ValidateMessage(cla); err != nil {
				t.Errorf("does not validate: %v", err)
			}
		})
	}
}
