package telemetry

import (
	"context"
	"fmt"
	"testing"

	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

func TestNewTracerProviderOff(t *testing.T) {
	tp, shutdown, err := NewTracerProvider(context.Background(), TracerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tp.(noop.TracerProvider); !ok {
		t.Errorf("provider %T, want noop", tp)
	}
	if err := shutdown(context.Background()); err != nil {
		t.Error(err)
	}
	if _, _, err := NewTracerProvider(context.Background(), TracerConfig{Endpoint: "127.0.0.1:1", SampleRatio: 2}); err == nil {
		t.Error("SampleRatio 2 accepted")
	}
}

// TestSelfTracing exports the control plane's own spans into its own receiver: they are aggregated like any
// service's, and receiving them creates no further spans (the intake is not traced).
func TestSelfTracing(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start(t)
	ctx := context.Background()
	tp, shutdown, err := NewTracerProvider(ctx, TracerConfig{Endpoint: h.tel.OTLPGRPCAddr()})
	if err != nil {
		t.Fatal(err)
	}
	_, span := tp.Tracer("test").Start(ctx, "reconcile", trace.WithSpanKind(trace.SpanKindInternal))
	span.End()
	if err := shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	labels := spanLabels("meshplane-controlplane", "reconcile", "SPAN_KIND_INTERNAL", "STATUS_CODE_UNSET")
	eventually(t, "self span aggregated", func() (bool, string) {
		v, _ := metricValue(h.scrape(t), "traces_span_metrics_calls_total", labels)
		return v == 1, fmt.Sprint(v)
	})
	if v, _ := metricValue(h.scrape(t), "meshplane_telemetry_aggregated_spans_total", map[string]string{}); v != 1 {
		t.Errorf("aggregated %v spans, want exactly the one exported", v)
	}
}
