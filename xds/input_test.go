package xds

import (
	"math"
	"strings"
	"testing"

	"github.com/meshplane/meshplane/registry"
)

func validInput() Input {
	ports := []registry.Port{{Name: "grpc", Port: 50051, Protocol: registry.ProtocolGRPC}}
	return Input{
		Services: []registry.Service{testService("greeter", "default", ports,
			testInstance("a", "10.0.0.1", 1, registry.Locality{}))},
		Tracing: &Tracing{CollectorHost: "collector.local", CollectorPort: 4317, SamplingPercent: 50,
			ServiceSamplingPercent: map[string]float64{"greeter.default": 100}},
	}
}

func TestInputValidate(t *testing.T) {
	if err := validInput().Validate(); err != nil {
		t.Fatalf("valid input rejected: %v", err)
	}
	hostname := validInput()
	hostname.Services[0].Instances[0].Address = "greeter-0.example.com"
	if err := hostname.Validate(); err != nil {
		t.Fatalf("host name address (the registry accepts them) rejected: %v", err)
	}
	svc := func(in *Input) *registry.Service { return &in.Services[0] }
	inst := func(in *Input) *registry.Instance { return &in.Services[0].Instances[0] }
	tests := map[string]struct {
		edit func(in *Input)
		want string
	}{
		"bad name":           {func(in *Input) { svc(in).Name = "Greeter" }, "services[0].name"},
		"empty namespace":    {func(in *Input) { svc(in).Namespace = "" }, "services[0].namespace"},
		"label with dash":    {func(in *Input) { svc(in).Name = "-x" }, "services[0].name"},
		"duplicate service":  {func(in *Input) { in.Services = append(in.Services, in.Services[0]) }, "services[1]: duplicate service"},
		"port zero":          {func(in *Input) { svc(in).Ports[0].Port = 0 }, "services[0].ports[0].port"},
		"port too big":       {func(in *Input) { svc(in).Ports = []registry.Port{{Port: 70000, Protocol: "GRPC"}} }, "services[0].ports[0].port"},
		"duplicate port":     {func(in *Input) { svc(in).Ports = append(svc(in).Ports, svc(in).Ports[0]) }, "services[0].ports[1].port: duplicate"},
		"unknown protocol":   {func(in *Input) { svc(in).Ports = []registry.Port{{Port: 1, Protocol: "UDP"}} }, "services[0].ports[0].protocol"},
		"bad port name":      {func(in *Input) { svc(in).Ports = []registry.Port{{Name: "G_RPC", Port: 1, Protocol: "GRPC"}} }, "services[0].ports[0].name"},
		"target port big":    {func(in *Input) { inst(in).Ports = []registry.Port{{Port: 50051, TargetPort: 65536, Protocol: "GRPC"}} }, "instances[0].ports[0].targetPort"},
		"instance port gone": {func(in *Input) { inst(in).Ports = []registry.Port{{Port: 1, Protocol: "GRPC"}} }, "instances[0].ports[0].port: 1 is not a port"},
		"empty id":           {func(in *Input) { inst(in).ID = "" }, "instances[0].id"},
		"duplicate id": {func(in *Input) {
			svc(in).Instances = append(svc(in).Instances, svc(in).Instances[0])
		}, "instances[1].id: duplicate"},
		"wrong service":   {func(in *Input) { inst(in).Service = "other" }, "instances[0]: instance of other.default"},
		"bad host":        {func(in *Input) { inst(in).Address = "greeter_local" }, "instances[0].address"},
		"zone in address": {func(in *Input) { inst(in).Address = "fe80::1%eth0" }, "instances[0].address"},
		"weight too big":  {func(in *Input) { inst(in).Weight = 1001 }, "instances[0].weight"},
		"unknown health":  {func(in *Input) { inst(in).Health = "" }, "instances[0].health"},
		"bad utf8":        {func(in *Input) { inst(in).Locality.Zone = "\xff" }, "instances[0].locality.zone"},
		"collector host":  {func(in *Input) { in.Tracing.CollectorHost = "bad host" }, "tracing.collectorHost"},
		"collector port":  {func(in *Input) { in.Tracing.CollectorPort = 0 }, "tracing.collectorPort"},
		"sampling NaN":    {func(in *Input) { in.Tracing.SamplingPercent = math.NaN() }, "tracing.samplingPercent"},
		"sampling 101":    {func(in *Input) { in.Tracing.SamplingPercent = 101 }, "tracing.samplingPercent"},
		"override key": {func(in *Input) {
			in.Tracing.ServiceSamplingPercent = map[string]float64{"greeter": 1}
		}, `tracing.serviceSamplingPercent["greeter"]`},
		"override value": {func(in *Input) {
			in.Tracing.ServiceSamplingPercent = map[string]float64{"greeter.default": -1}
		}, `tracing.serviceSamplingPercent["greeter.default"]`},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			in := validInput()
			tc.edit(&in)
			err := in.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.want)
			}
			if !strings.HasPrefix(err.Error(), "xds: input: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestSidecarValidate(t *testing.T) {
	ok := Sidecar{Service: "greeter", Namespace: "default", InboundPorts: []InboundPort{{Port: 80, AppPort: 8080, Protocol: "HTTP"}}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid sidecar rejected: %v", err)
	}
	if err := (Sidecar{}).Validate(); err != nil {
		t.Fatalf("egress-only sidecar rejected: %v", err)
	}
	tests := map[string]struct {
		sc   Sidecar
		want string
	}{
		"namespace without service": {Sidecar{Namespace: "default"}, "sidecar: service"},
		"bad namespace":             {Sidecar{Service: "a", Namespace: "B"}, "sidecar: namespace"},
		"port zero":                 {Sidecar{InboundPorts: []InboundPort{{Port: 0, AppPort: 1, Protocol: "HTTP"}}}, "inboundPorts[0].port"},
		"outbound port":             {Sidecar{InboundPorts: []InboundPort{{Port: 15001, AppPort: 1, Protocol: "HTTP"}}}, "outbound listener's port"},
		"duplicate port": {Sidecar{InboundPorts: []InboundPort{
			{Port: 80, AppPort: 1, Protocol: "HTTP"}, {Port: 80, AppPort: 2, Protocol: "HTTP"},
		}}, "inboundPorts[1].port: duplicate"},
		"app port big":     {Sidecar{InboundPorts: []InboundPort{{Port: 80, AppPort: 65536, Protocol: "HTTP"}}}, "inboundPorts[0].appPort"},
		"unknown protocol": {Sidecar{InboundPorts: []InboundPort{{Port: 80, AppPort: 1, Protocol: "SCTP"}}}, "inboundPorts[0].protocol"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.sc.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}
