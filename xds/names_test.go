package xds

import (
	"testing"

	"github.com/meshplane/meshplane/registry"
)

func TestNames(t *testing.T) {
	tests := map[string]struct{ got, want string }{
		"cluster":            {ClusterName("greeter.default", 50051), "outbound|50051||greeter.default"},
		"client listener":    {ClientListenerName("greeter.default", 8080), "greeter.default:8080"},
		"server listener v4": {ServerListenerName("10.0.0.1", 50051), "grpc/server?xds.resource.listening_address=10.0.0.1:50051"},
		"server listener v6": {ServerListenerName("::1", 50051), "grpc/server?xds.resource.listening_address=[::1]:50051"},
		"inbound":            {InboundName(8080), "inbound|8080"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

func TestDefaultPort(t *testing.T) {
	p := func(n uint32, proto registry.Protocol) registry.Port { return registry.Port{Port: n, Protocol: proto} }
	tests := map[string]struct {
		ports  []registry.Port
		want   uint32
		wantOK bool
	}{
		"no ports":                 {nil, 0, false},
		"lowest grpc wins":         {[]registry.Port{p(80, "HTTP"), p(9090, "GRPC"), p(9000, "GRPC")}, 9000, true},
		"lowest port without grpc": {[]registry.Port{p(8080, "HTTP"), p(5432, "TCP")}, 5432, true},
		"http2 is not grpc":        {[]registry.Port{p(80, "HTTP2"), p(90, "GRPC")}, 90, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := DefaultPort(registry.Service{Ports: tc.ports})
			if ok != tc.wantOK || got.Port != tc.want {
				t.Errorf("DefaultPort = %d, %v; want %d, %v", got.Port, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestCanonicalIP(t *testing.T) {
	tests := map[string]struct {
		in, want string
		ok       bool
	}{
		"v4":          {"10.0.0.1", "10.0.0.1", true},
		"v6 expanded": {"2001:db8:0:0::7", "2001:db8::7", true},
		"v4 mapped":   {"::ffff:10.0.0.1", "10.0.0.1", true},
		"zone":        {"fe80::1%eth0", "", false},
		"hostname":    {"example.com", "", false},
		"empty":       {"", "", false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, ok := canonicalIP(tc.in)
			if got != tc.want || ok != tc.ok {
				t.Errorf("canonicalIP(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}
