package rest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/meshplane/meshplane/registry"
)

type fixedSnapshot registry.Snapshot

func (f fixedSnapshot) Snapshot() registry.Snapshot { return registry.Snapshot(f) }

func newTestMux() *http.ServeMux {
	port := []registry.Port{{Name: "grpc", Port: 8080, Protocol: registry.ProtocolGRPC}}
	snap := registry.BuildSnapshot(7, []registry.Instance{
		{ID: "a", Service: "greeter", Namespace: "default", Address: "10.0.0.1", Ports: port, Weight: 1, Health: registry.HealthServing},
		{ID: "b", Service: "greeter", Namespace: "default", Address: "10.0.0.2", Ports: port, Weight: 1, Health: registry.HealthDraining},
		{ID: "c", Service: "billing", Namespace: "payments", Address: "10.0.0.3", Ports: port, Weight: 1, Health: registry.HealthServing},
	})
	mux := http.NewServeMux()
	(&Handlers{Registry: fixedSnapshot(snap), Proxies: func() any { return []string{"node-1"} }}).Register(mux)
	return mux
}

func get(t *testing.T, mux http.Handler, path string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	mux.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec
}

func TestListServices(t *testing.T) {
	mux := newTestMux()
	rec := get(t, mux, "/api/v1/services")
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d", rec.Code)
	}
	var list ServiceList
	if err := json.Unmarshal(rec.Body.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	if list.Revision != 7 || len(list.Services) != 2 {
		t.Fatalf("got %+v", list)
	}
	g := list.Services[0]
	if g.Namespace != "default" || g.Name != "greeter" || g.Instances != 2 || g.Serving != 1 {
		t.Fatalf("greeter summary %+v", g)
	}
	rec = get(t, mux, "/api/v1/services?namespace=payments")
	_ = json.Unmarshal(rec.Body.Bytes(), &list)
	if len(list.Services) != 1 || list.Services[0].Name != "billing" {
		t.Fatalf("namespace filter: %+v", list)
	}
}

func TestGetService(t *testing.T) {
	mux := newTestMux()
	rec := get(t, mux, "/api/v1/namespaces/default/services/greeter")
	var svc registry.Service
	if err := json.Unmarshal(rec.Body.Bytes(), &svc); err != nil || rec.Code != http.StatusOK {
		t.Fatalf("status %d err %v", rec.Code, err)
	}
	if len(svc.Instances) != 2 || svc.Instances[1].Health != registry.HealthDraining {
		t.Fatalf("got %+v", svc)
	}
}

func TestErrorsAreProblems(t *testing.T) {
	mux := newTestMux()
	tests := map[string]struct {
		path   string
		status int
		field  string
	}{
		"unknown service":     {"/api/v1/namespaces/default/services/absent", http.StatusNotFound, "name"},
		"bad namespace":       {"/api/v1/namespaces/Bad_NS/services/greeter", http.StatusBadRequest, "ns"},
		"bad name":            {"/api/v1/namespaces/default/services/-x-", http.StatusBadRequest, "name"},
		"bad namespace query": {"/api/v1/services?namespace=UPPER", http.StatusBadRequest, "namespace"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			rec := get(t, mux, tc.path)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d", rec.Code, tc.status)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("content type %q", ct)
			}
			var p Problem
			if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
				t.Fatal(err)
			}
			if p.Field != tc.field || p.Status != tc.status || p.Detail == "" {
				t.Fatalf("problem %+v, want field %q", p, tc.field)
			}
		})
	}
}

func TestProxies(t *testing.T) {
	rec := get(t, newTestMux(), "/api/v1/proxies")
	var body struct{ Proxies []string }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || len(body.Proxies) != 1 {
		t.Fatalf("got %s (%v)", rec.Body.String(), err)
	}
}
