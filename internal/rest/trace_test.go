package rest

import (
	"net/http"
	"net/http/httptest"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestTracedNamesSpansByRoute(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	mux := newTestMux()
	mux.HandleFunc("GET /metrics", func(http.ResponseWriter, *http.Request) {})
	h := Traced(tp, mux)
	for _, path := range []string{"/api/v1/namespaces/default/services/greeter", "/api/v1/namespaces/default/services/absent", "/metrics"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, path, nil))
	}
	spans := rec.Ended()
	if len(spans) != 2 {
		t.Fatalf("got %d spans, want 2 (the /metrics scrape is not traced)", len(spans))
	}
	for i, wantStatus := range []int64{200, 404} {
		s := spans[i]
		if s.Name() != "GET /api/v1/namespaces/{ns}/services/{name}" {
			t.Errorf("span %d name %q", i, s.Name())
		}
		var got int64
		for _, a := range s.Attributes() {
			if a.Key == "http.response.status_code" {
				got = a.Value.AsInt64()
			}
		}
		if got != wantStatus {
			t.Errorf("span %d status attribute %d, want %d", i, got, wantStatus)
		}
	}
}
