package xds

import (
	"slices"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestServerMetricsAndSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	f := newFixture(t, baseResources(), func(o *ServerOptions) { o.TracerProvider = tp })
	c := newSotwClient(t, f.conn(), grpcNode("m"))
	c.send("type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment", []string{"a"}, "", "", nil)
	c.recv()
	f.fail.Store(true)
	f.srv.Notify()
	eventually(t, func() bool { return metricValue(f.srv.metrics.translateErrors) == 1 }, "a translate error")

	families, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range families {
		names = append(names, mf.GetName())
	}
	for _, want := range []string{
		"meshplane_xds_connected_proxies", "meshplane_xds_pushes_total", "meshplane_xds_publish_total",
		"meshplane_xds_translate_errors_total", "meshplane_xds_publish_duration_seconds", "meshplane_xds_resources",
	} {
		if !slices.Contains(names, want) {
			t.Errorf("metric %s not gathered (have %v)", want, names)
		}
	}
	var resources float64
	for _, mf := range families {
		if mf.GetName() == "meshplane_xds_resources" {
			for _, m := range mf.GetMetric() {
				resources += m.GetGauge().GetValue()
			}
		}
	}
	if resources != 10 {
		t.Errorf("meshplane_xds_resources sums to %v, want 10", resources)
	}

	spans := rec.Ended()
	if len(spans) < 2 {
		t.Fatalf("%d spans, want one per publish (2)", len(spans))
	}
	last := spans[len(spans)-1]
	if last.Name() != "xds.publish" || last.Status().Code.String() != "Error" {
		t.Fatalf("last span %q status %v, want a failed xds.publish", last.Name(), last.Status())
	}
}
