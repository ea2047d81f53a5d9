package telemetry

import (
	"context"
	"fmt"
	"testing"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
)

// provider builds a TracerProvider for one service exporting with a real OTLP exporter.
func provider(t *testing.T, service string, exp sdktrace.SpanExporter) *sdktrace.TracerProvider {
	t.Helper()
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(service))),
	)
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	return tp
}

// TestServiceChain drives frontend → checkout → payments with three SDK TracerProviders (gRPC+gzip, HTTP/protobuf and
// HTTP/gzip exporters), context propagated through W3C trace-context headers, and checks the graph, /metrics and
// the trace store.
func TestServiceChain(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start(t)
	ctx := context.Background()

	feExp, err := otlptracegrpc.New(ctx, otlptracegrpc.WithEndpoint(h.tel.OTLPGRPCAddr()), otlptracegrpc.WithInsecure(),
		otlptracegrpc.WithCompressor("gzip"))
	if err != nil {
		t.Fatal(err)
	}
	coExp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(h.tel.OTLPHTTPAddr()), otlptracehttp.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	paExp, err := otlptracehttp.New(ctx, otlptracehttp.WithEndpoint(h.tel.OTLPHTTPAddr()), otlptracehttp.WithInsecure(),
		otlptracehttp.WithCompression(otlptracehttp.GzipCompression))
	if err != nil {
		t.Fatal(err)
	}
	fe, co, pa := provider(t, "frontend", feExp), provider(t, "checkout", coExp), provider(t, "payments", paExp)
	prop := propagation.TraceContext{}

	const calls, failEvery = 20, 4
	wantFailed := 0
	var traceIDs []trace.TraceID
	payments := func(carrier propagation.MapCarrier, fail bool) {
		ctx := prop.Extract(context.Background(), carrier)
		_, span := pa.Tracer("payments").Start(ctx, "Charge", trace.WithSpanKind(trace.SpanKindServer))
		if fail {
			span.SetStatus(codes.Error, "card declined")
		}
		span.End()
	}
	checkout := func(carrier propagation.MapCarrier, fail bool) {
		ctx := prop.Extract(context.Background(), carrier)
		ctx, srv := co.Tracer("checkout").Start(ctx, "PlaceOrder", trace.WithSpanKind(trace.SpanKindServer))
		cctx, cli := co.Tracer("checkout").Start(ctx, "payments.Charge", trace.WithSpanKind(trace.SpanKindClient))
		out := propagation.MapCarrier{}
		prop.Inject(cctx, out)
		payments(out, fail)
		if fail {
			cli.SetStatus(codes.Error, "payment failed")
			srv.SetStatus(codes.Error, "payment failed")
		}
		cli.End()
		srv.End()
	}
	for i := range calls {
		fail := i%failEvery == 0
		if fail {
			wantFailed++
		}
		ctx, root := fe.Tracer("frontend").Start(context.Background(), "GET /checkout", trace.WithSpanKind(trace.SpanKindServer))
		cctx, cli := fe.Tracer("frontend").Start(ctx, "checkout.PlaceOrder", trace.WithSpanKind(trace.SpanKindClient),
			trace.WithAttributes(semconv.PeerService("checkout")))
		out := propagation.MapCarrier{}
		prop.Inject(cctx, out)
		checkout(out, fail)
		if fail {
			cli.SetStatus(codes.Error, "checkout failed")
		}
		cli.End()
		root.End()
		traceIDs = append(traceIDs, root.SpanContext().TraceID())
	}
	for _, tp := range []*sdktrace.TracerProvider{pa, co, fe} {
		if err := tp.ForceFlush(ctx); err != nil {
			t.Fatalf("flush: %v", err)
		}
	}

	type edgeWant struct {
		client, server string
		requests, fail uint64
	}
	wants := []edgeWant{
		{"frontend", "checkout", calls, uint64(wantFailed)},
		{"checkout", "payments", calls, uint64(wantFailed)},
		{"user", "frontend", calls, 0}, // root server spans become virtual-node edges after PairingWait
	}
	eventually(t, "graph edges", func() (bool, string) {
		var g Graph
		if code := h.getJSON(t, "/api/v1/graph?window=5m", &g); code != 200 {
			return false, fmt.Sprintf("status %d", code)
		}
		for _, w := range wants {
			found := false
			for _, e := range g.Edges {
				if e.Client == w.client && e.Server == w.server {
					found = e.Requests == w.requests && e.Failed == w.fail
				}
			}
			if !found {
				return false, fmt.Sprintf("%+v", g.Edges)
			}
		}
		return true, ""
	})

	var g Graph
	h.getJSON(t, "/api/v1/graph", &g)
	if len(g.Edges) != 3 {
		t.Errorf("graph has %d edges, want 3: %+v", len(g.Edges), g.Edges)
	}
	for _, n := range g.Nodes {
		if n.Virtual != (n.ID == "user") {
			t.Errorf("node %s virtual=%v", n.ID, n.Virtual)
		}
	}

	fams := h.scrape(t)
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"traces_service_graph_request_total", edgeLabels("frontend", "checkout", "", "false"), calls - float64(wantFailed)},
		{"traces_service_graph_request_total", edgeLabels("frontend", "checkout", "", "true"), float64(wantFailed)},
		{"traces_service_graph_request_failed_total", edgeLabels("checkout", "payments", "", "true"), float64(wantFailed)},
		{"traces_service_graph_request_server_seconds", edgeLabels("checkout", "payments", "", "false"), calls - float64(wantFailed)},
		{"traces_service_graph_request_client_seconds", edgeLabels("checkout", "payments", "", "true"), float64(wantFailed)},
		{"traces_service_graph_request_total", edgeLabels("user", "frontend", "virtual_node", "false"), calls},
		{"traces_span_metrics_calls_total", spanLabels("payments", "Charge", "SPAN_KIND_SERVER", "STATUS_CODE_ERROR"), float64(wantFailed)},
		{"traces_span_metrics_calls_total", spanLabels("payments", "Charge", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET"), calls - float64(wantFailed)},
		{"traces_span_metrics_duration_milliseconds", spanLabels("frontend", "GET /checkout", "SPAN_KIND_SERVER", "STATUS_CODE_UNSET"), calls},
		{"traces_span_metrics_calls_total", spanLabels("checkout", "payments.Charge", "SPAN_KIND_CLIENT", "STATUS_CODE_ERROR"), float64(wantFailed)},
		{"meshplane_telemetry_aggregated_spans_total", map[string]string{}, 5 * calls},
	}
	for _, c := range checks {
		got, ok := metricValue(fams, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}

	var tr Trace
	id := traceIDs[0]
	if code := h.getJSON(t, "/api/v1/traces/"+id.String(), &tr); code != 200 {
		t.Fatalf("trace lookup: status %d", code)
	}
	if len(tr.Spans) != 5 {
		t.Fatalf("trace has %d spans, want 5: %+v", len(tr.Spans), tr.Spans)
	}
	services := map[string]int{}
	for _, s := range tr.Spans {
		services[s.Service]++
		if s.TraceID != id.String() {
			t.Errorf("span %s has trace id %s", s.SpanID, s.TraceID)
		}
	}
	if services["frontend"] != 2 || services["checkout"] != 2 || services["payments"] != 1 {
		t.Errorf("spans per service = %v", services)
	}

	var list TraceList
	h.getJSON(t, "/api/v1/traces?service=payments&error=true&limit=100", &list)
	if len(list.Traces) != wantFailed {
		t.Errorf("failed traces through payments = %d, want %d", len(list.Traces), wantFailed)
	}
	for _, s := range list.Traces {
		if s.RootService != "frontend" || s.RootName != "GET /checkout" || s.SpanCount != 5 || s.ErrorCount == 0 {
			t.Errorf("summary %+v", s)
		}
	}
}

func edgeLabels(client, server, conn, failed string) map[string]string {
	return map[string]string{"client": client, "server": server, "connection_type": conn, "failed": failed}
}

func spanLabels(svc, name, kind, status string) map[string]string {
	return map[string]string{"service_name": svc, "span_name": name, "span_kind": kind, "status_code": status}
}
