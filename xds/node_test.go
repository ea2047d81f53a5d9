package xds

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshplane/meshplane/registry"
)

func TestParseNode(t *testing.T) {
	tests := map[string]struct {
		node    *corev3.Node
		want    NodeInfo
		wantErr string // substring; "" means no error
	}{
		"nil node": {node: nil, want: NodeInfo{Kind: KindGRPC}},
		"grpc client": {
			node: grpcNode("c1"),
			want: NodeInfo{ID: "c1", Kind: KindGRPC, UserAgent: "gRPC Go"},
		},
		"envoy by user agent, egress only": {
			node: envoyNode("e1", nil),
			want: NodeInfo{ID: "e1", Kind: KindEnvoy, UserAgent: "envoy"},
		},
		"sidecar by metadata with ports": {
			node: &corev3.Node{Id: "e2", Metadata: svStruct(map[string]any{
				MetaKind: "sidecar", MetaService: "api.shop", MetaInboundPorts: "8080:9080, 9090/grpc",
			})},
			want: NodeInfo{ID: "e2", Kind: KindEnvoy, Sidecar: Sidecar{Service: "api", Namespace: "shop", InboundPorts: []InboundPort{
				{Port: 8080, AppPort: 9080}, {Port: 9090, AppPort: 9090, Protocol: registry.ProtocolGRPC},
			}}},
		},
		"ports as a list, default namespace": {
			node: envoyNode("e3", map[string]any{MetaService: "api", MetaInboundPorts: []any{"80/http"}}),
			want: NodeInfo{ID: "e3", Kind: KindEnvoy, UserAgent: "envoy", Sidecar: Sidecar{Service: "api", Namespace: "default",
				InboundPorts: []InboundPort{{Port: 80, AppPort: 80, Protocol: registry.ProtocolHTTP}}}},
		},
		"grpc kind overrides envoy user agent": {
			node: envoyNode("g", map[string]any{MetaKind: "grpc", MetaInboundPorts: "x"}),
			want: NodeInfo{ID: "g", Kind: KindGRPC, UserAgent: "envoy"},
		},
		"envoy without id":   {node: envoyNode("", nil), wantErr: "node id"},
		"unknown kind":       {node: envoyNode("x", map[string]any{MetaKind: "router"}), wantErr: MetaKind},
		"bad service":        {node: envoyNode("x", map[string]any{MetaService: "Api.shop"}), wantErr: MetaService},
		"bad namespace":      {node: envoyNode("x", map[string]any{MetaService: "api.-shop"}), wantErr: MetaService},
		"ports need service": {node: envoyNode("x", map[string]any{MetaInboundPorts: "80"}), wantErr: MetaService},
		"port out of range":  {node: envoyNode("x", map[string]any{MetaService: "a", MetaInboundPorts: "70000"}), wantErr: MetaInboundPorts},
		"port zero":          {node: envoyNode("x", map[string]any{MetaService: "a", MetaInboundPorts: "0"}), wantErr: MetaInboundPorts},
		"bad app port":       {node: envoyNode("x", map[string]any{MetaService: "a", MetaInboundPorts: "80:"}), wantErr: "app port"},
		"bad protocol":       {node: envoyNode("x", map[string]any{MetaService: "a", MetaInboundPorts: "80/udp"}), wantErr: "protocol"},
		"duplicate port":     {node: envoyNode("x", map[string]any{MetaService: "a", MetaInboundPorts: "80,80:81"}), wantErr: "twice"},
		"outbound port":      {node: envoyNode("x", map[string]any{MetaService: "a", MetaInboundPorts: "15001"}), wantErr: "outbound"},
		"too many ports":     {node: envoyNode("x", map[string]any{MetaService: "a", MetaInboundPorts: manyPorts(65)}), wantErr: "at most"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseNode(tc.node)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseNode error %v, want one mentioning %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Fatalf("ParseNode (-want +got):\n%s", diff)
			}
		})
	}
}

func TestSidecarForFillsProtocols(t *testing.T) {
	in := Input{Services: []registry.Service{{Name: "api", Namespace: "shop", Ports: []registry.Port{{Port: 9090, Protocol: registry.ProtocolGRPC}}}}}
	sc := Sidecar{Service: "api", Namespace: "shop", InboundPorts: []InboundPort{{Port: 9090, AppPort: 1}, {Port: 80, AppPort: 2}, {Port: 81, AppPort: 3, Protocol: registry.ProtocolTCP}}}
	got := sidecarFor(sc, in)
	want := []registry.Protocol{registry.ProtocolGRPC, registry.ProtocolHTTP, registry.ProtocolTCP}
	for i, p := range got.InboundPorts {
		if p.Protocol != want[i] {
			t.Errorf("port %d protocol %q, want %q", p.Port, p.Protocol, want[i])
		}
	}
	if sc.InboundPorts[0].Protocol != "" {
		t.Fatal("sidecarFor modified its argument")
	}
	if err := got.Validate(); err != nil {
		t.Fatalf("completed sidecar does not validate: %v", err)
	}
}

func FuzzParseNode(f *testing.F) {
	f.Add("envoy", "sidecar", "api.shop", "8080:9080/HTTP,9090")
	f.Add("gRPC Go", "", "", "")
	f.Add("envoy", "", "a", "1:65535/grpc")
	f.Add("envoy", "grpc", "..", ":::/")
	f.Add("x", "SIDECAR", "a.b.c", "80,80")
	f.Fuzz(func(t *testing.T, ua, kind, svc, ports string) {
		meta := map[string]any{}
		if kind != "" {
			meta[MetaKind] = kind
		}
		if svc != "" {
			meta[MetaService] = svc
		}
		if ports != "" {
			meta[MetaInboundPorts] = ports
		}
		m, err := structpb.NewStruct(meta)
		if err != nil {
			t.Skip("not valid UTF-8 for a protobuf string")
		}
		info, err := ParseNode(&corev3.Node{Id: "n", UserAgentName: ua, Metadata: m})
		if err != nil {
			return
		}
		if info.Kind != KindEnvoy && info.Kind != KindGRPC {
			t.Fatalf("kind %q", info.Kind)
		}
		// Whatever parses must be a sidecar the translator accepts once its
		// protocols are filled in.
		if err := sidecarFor(info.Sidecar, Input{}).Validate(); err != nil {
			t.Fatalf("ParseNode accepted %q/%q but the sidecar is invalid: %v", svc, ports, err)
		}
	})
}

func svStruct(m map[string]any) *structpb.Struct {
	s, err := structpb.NewStruct(m)
	if err != nil {
		panic(err)
	}
	return s
}

func manyPorts(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(strings.Repeat("1", 1) + string(rune('0'+i/10)) + string(rune('0'+i%10)) + "0")
	}
	return b.String()
}
