package xds

import (
	"testing"

	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
)

func TestHCMTracing(t *testing.T) {
	tr := &Tracing{CollectorHost: "127.0.0.1", CollectorPort: 4317, SamplingPercent: 10,
		ServiceSamplingPercent: map[string]float64{"a.b": 0}}
	tests := map[string]struct {
		service      string
		wantPercent  float64
		wantDetector bool
	}{
		"shared outbound": {"", 10, true},
		"named service":   {"x.y", 10, false},
		"override to 0":   {"a.b", 0, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			h := hcmTracing(tr, tc.service, samplingPercent(tr, tc.service))
			if h.GetProvider().GetName() != otelTracerName || h.GetRandomSampling().GetValue() != tc.wantPercent {
				t.Errorf("provider %q sampling %v", h.GetProvider().GetName(), h.GetRandomSampling())
			}
			m, err := h.GetProvider().GetTypedConfig().UnmarshalNew()
			if err != nil {
				t.Fatal(err)
			}
			cfg := m.(*tracev3.OpenTelemetryConfig)
			if cfg.GetGrpcService().GetEnvoyGrpc().GetClusterName() != TracingClusterName || cfg.GetServiceName() != tc.service {
				t.Errorf("config %v", cfg)
			}
			if got := len(cfg.GetResourceDetectors()) == 1; got != tc.wantDetector {
				t.Errorf("environment detector present = %v, want %v", got, tc.wantDetector)
			}
			if err := ValidateMessage(h); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestRouteTracing(t *testing.T) {
	for p, want := range map[float64]uint32{0: 0, 0.0001: 1, 12.5: 125000, 100: 1000000} {
		if got := routeTracing(p).GetRandomSampling().GetNumerator(); got != want {
			t.Errorf("routeTracing(%v) numerator %d, want %d", p, got, want)
		}
	}
}

func TestTracingCluster(t *testing.T) {
	res, err := Translate(Input{Tracing: &Tracing{CollectorHost: "127.0.0.1", CollectorPort: 4317}})
	if err != nil {
		t.Fatal(err)
	}
	if c := findCluster(t, res, TracingClusterName); c.GetTypedExtensionProtocolOptions()[http2OptionsKey] == nil {
		t.Error("OTLP/gRPC cluster without HTTP/2")
	}
	res, err = Translate(Input{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Clusters) != 0 {
		t.Errorf("clusters without tracing: %v", res.Clusters)
	}
}
