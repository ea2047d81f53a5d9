package telemetry

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// FuzzAPIQueries drives the graph and trace endpoints with arbitrary query
// values and trace ids: every answer is 200, 400 or 404 with a JSON body,
// never a panic or a 5xx.
func FuzzAPIQueries(f *testing.F) {
	f.Add("5m", "checkout", "250ms", "true", "10", "4bf92f3577b34da6a3ce929d0e0e4736")
	f.Add("-1s", "", "x", "maybe", "0", "zz")
	f.Add("9999h", "a", "-5ms", "", "100000000000000000000", "00000000000000000000000000000000")
	cfg := Defaults()
	cfg.OTLPGRPCAddr, cfg.OTLPHTTPAddr = "", ""
	tel, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
	if err != nil {
		f.Fatal(err)
	}
	mux := http.NewServeMux()
	tel.RegisterRoutes(mux)
	f.Fuzz(func(t *testing.T, window, service, minDuration, isErr, limit, traceID string) {
		q := url.Values{"service": {service}, "minDuration": {minDuration}, "error": {isErr}, "limit": {limit}}
		for _, target := range []string{
			"/api/v1/graph?" + url.Values{"window": {window}}.Encode(),
			"/api/v1/traces?" + q.Encode(),
			"/api/v1/traces/" + url.PathEscape(traceID),
		} {
			req, err := http.NewRequest(http.MethodGet, target, nil)
			if err != nil {
				return
			}
			rec := httptest.NewRecorder()
			mux.ServeHTTP(rec, req)
			switch rec.Code {
			case http.StatusOK, http.StatusBadRequest, http.StatusNotFound:
			case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
				continue // ServeMux cleaning an unclean path
			default:
				t.Fatalf("%s: status %d", target, rec.Code)
			}
			if rec.Code != http.StatusNotFound || rec.Header().Get("Content-Type") == "application/problem+json" {
				if !json.Valid(rec.Body.Bytes()) {
					t.Fatalf("%s: body is not JSON: %q", target, rec.Body.String())
				}
			}
		}
	})
}
