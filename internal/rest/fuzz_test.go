package rest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// FuzzServicePaths drives the service endpoints with arbitrary path segments
// and query values: every answer is 200, 400 or 404 with a JSON body (or ServeMux's redirect
// for an unclean path), never a
// panic.
func FuzzServicePaths(f *testing.F) {
	for _, s := range [][2]string{{"default", "greeter"}, {"Bad_NS", "x"}, {"", ""}, {"a/b", "%zz"}, {"default", "-"}} {
		f.Add(s[0], s[1])
	}
	mux := newTestMux()
	f.Fuzz(func(t *testing.T, ns, name string) {
		for _, target := range []string{
			"/api/v1/namespaces/" + url.PathEscape(ns) + "/services/" + url.PathEscape(name),
			"/api/v1/services?namespace=" + url.QueryEscape(ns),
		} {
			rec := httptest.NewRecorder()
			req, err := http.NewRequest(http.MethodGet, target, nil)
			if err != nil {
				return
			}
			mux.ServeHTTP(rec, req)
			switch rec.Code {
			case http.StatusOK, http.StatusBadRequest, http.StatusNotFound:
			case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
				// ServeMux cleans paths with empty or dot segments by redirecting.
				continue
			default:
				t.Fatalf("%s: status %d", target, rec.Code)
			}
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("%s: body is not JSON: %q", target, rec.Body.String())
			}
		}
	})
}
