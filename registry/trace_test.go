package registry_test

import (
	"testing"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/meshplane/meshplane/registry"
)

func TestRegisterAndDeregisterSpans(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { _ = tp.Shutdown(ctxT(t)) })
	e := newEnv(t, registry.StoreOptions{TracerProvider: tp})
	ctx := ctxT(t)
	res, err := e.store.Register(ctx, inst("traced", "10.5.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.store.Register(ctx, inst("Bad", "10.5.0.1")); err == nil {
		t.Fatal("invalid registration accepted")
	}
	if _, err := e.store.Deregister(ctx, "default", "traced", res.ID); err != nil {
		t.Fatal(err)
	}
	spans := rec.Ended()
	if len(spans) != 3 {
		t.Fatalf("%d spans, want 3", len(spans))
	}
	want := []struct {
		name string
		code otelcodes.Code
	}{{"registry.Register", otelcodes.Unset}, {"registry.Register", otelcodes.Error}, {"registry.Deregister", otelcodes.Unset}}
	for i, s := range spans {
		if s.Name() != want[i].name || s.Status().Code != want[i].code {
			t.Errorf("span %d = %s (%v), want %s (%v)", i, s.Name(), s.Status().Code, want[i].name, want[i].code)
		}
	}
	attrs := map[attribute.Key]attribute.Value{}
	for _, kv := range spans[0].Attributes() {
		attrs[kv.Key] = kv.Value
	}
	if attrs["meshplane.service"].AsString() != "traced" || attrs["meshplane.instance_id"].AsString() != res.ID || !attrs["meshplane.created"].AsBool() {
		t.Errorf("Register span attributes = %v", spans[0].Attributes())
	}
}
