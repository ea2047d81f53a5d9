package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	registryv1 "github.com/meshplane/meshplane/api/registry/v1"
	"github.com/meshplane/meshplane/telemetry"
)

func tracerProvider(t *testing.T, endpoint, service string) *sdktrace.TracerProvider {
	t.Helper()
	exp, err := otlptracegrpc.New(t.Context(), otlptracegrpc.WithEndpoint(endpoint), otlptracegrpc.WithInsecure())
	if err != nil {
		t.Fatal(err)
	}
	return sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(attribute.String("service.name", service))),
	)
}

func httpGet(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, body
}

// TestTelemetryThroughTheControlPlane sends spans from the OpenTelemetry SDK
// to the running control plane's OTLP/gRPC port and reads the service graph
// back from its REST API and /metrics.
func TestTelemetryThroughTheControlPlane(t *testing.T) {
	cp := newControlPlane(t)
	cp.start()
	frontend := tracerProvider(t, cp.bound.OTLPGRPC, "frontend")
	checkout := tracerProvider(t, cp.bound.OTLPGRPC, "checkout")
	const calls, failures = 20, 5
	var traceID trace.TraceID
	for i := range calls {
		ctx, client := frontend.Tracer("e2e").Start(context.Background(), "POST /checkout", trace.WithSpanKind(trace.SpanKindClient))
		_, server := checkout.Tracer("e2e").Start(ctx, "POST /checkout", trace.WithSpanKind(trace.SpanKindServer))
		if i < failures {
			server.SetStatus(codes.Error, "payment declined")
			client.SetStatus(codes.Error, "502")
		}
		traceID = server.SpanContext().TraceID()
		server.End()
		client.End()
	}
	for _, tp := range []*sdktrace.TracerProvider{frontend, checkout} {
		if err := tp.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 30*time.Second, "the frontend → checkout edge", func() error {
		code, body := httpGet(t, "http://"+cp.bound.HTTP+"/api/v1/graph")
		if code != http.StatusOK {
			return fmt.Errorf("graph %d: %s", code, body)
		}
		var g telemetry.Graph
		if err := json.Unmarshal(body, &g); err != nil {
			return err
		}
		for _, e := range g.Edges {
			if e.Client == "frontend" && e.Server == "checkout" {
				if e.Requests != calls || e.Failed != failures {
					return fmt.Errorf("edge %+v, want %d requests, %d failed", e, calls, failures)
				}
				return nil
			}
		}
		return fmt.Errorf("no edge yet: %s", body)
	})
	_, metrics := httpGet(t, "http://"+cp.bound.HTTP+"/metrics")
	want := fmt.Sprintf(`traces_service_graph_request_total{client="frontend",connection_type="",failed="false",server="checkout"} %d`, calls-failures)
	if !strings.Contains(string(metrics), want) {
		t.Errorf("/metrics lacks %q", want)
	}
	code, body := httpGet(t, "http://"+cp.bound.HTTP+"/api/v1/traces/"+traceID.String())
	if code != http.StatusOK || !strings.Contains(string(body), "frontend") || !strings.Contains(string(body), "checkout") {
		t.Errorf("trace lookup: %d %s", code, body)
	}
}

// TestSelfTracing points the control plane's own tracing at its own OTLP
// intake (safe: the intake is never traced) and finds its spans for a
// registration, an xDS publish and a REST call in its trace store.
func TestSelfTracing(t *testing.T) {
	cp := newControlPlane(t)
	cp.cfg.SelfTraceEndpoint = cp.cfg.OTLPGRPCAddr
	cp.start()
	rc := registryClient(t, cp)
	if _, err := rc.Register(t.Context(), &registryv1.RegisterRequest{
		Service: "greeter", Address: "127.0.0.1",
		Ports: []*registryv1.Port{{Name: "grpc", Port: 50051, Protocol: registryv1.Protocol_PROTOCOL_GRPC}},
	}); err != nil {
		t.Fatal(err)
	}
	httpGet(t, "http://"+cp.bound.HTTP+"/api/v1/services")
	want := []string{"registry.Register", "xds.publish", "GET /api/v1/services"}
	waitFor(t, 30*time.Second, "the control plane's own spans", func() error {
		code, body := httpGet(t, "http://"+cp.bound.HTTP+"/api/v1/traces?service=meshplane-controlplane&limit=100")
		if code != http.StatusOK {
			return fmt.Errorf("traces %d: %s", code, body)
		}
		var list telemetry.TraceList
		if err := json.Unmarshal(body, &list); err != nil {
			return err
		}
		seen := map[string]bool{}
		for _, tr := range list.Traces {
			seen[tr.RootName] = true
		}
		for _, w := range want {
			if !seen[w] {
				return fmt.Errorf("no trace rooted at %q among %v", w, seen)
			}
		}
		return nil
	})
}
