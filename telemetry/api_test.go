package telemetry

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/meshplane/meshplane/internal/rest"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

func TestAPIBadRequests(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start(t)
	tests := map[string]struct {
		path   string
		status int
		field  string
	}{
		"window not a duration": {"/api/v1/graph?window=five", 400, "window"},
		"window too long":       {"/api/v1/graph?window=2h", 400, "window"},
		"window too short":      {"/api/v1/graph?window=1ms", 400, "window"},
		"traceID not hex":       {"/api/v1/traces/xyz", 400, "traceID"},
		"traceID too short":     {"/api/v1/traces/abcd", 400, "traceID"},
		"traceID all zero":      {"/api/v1/traces/00000000000000000000000000000000", 400, "traceID"},
		"unknown trace":         {"/api/v1/traces/0af7651916cd43dd8448eb211c80319c", 404, "traceID"},
		"minDuration bad":       {"/api/v1/traces?minDuration=soon", 400, "minDuration"},
		"minDuration negative":  {"/api/v1/traces?minDuration=-1s", 400, "minDuration"},
		"error not bool":        {"/api/v1/traces?error=maybe", 400, "error"},
		"limit zero":            {"/api/v1/traces?limit=0", 400, "limit"},
		"limit too big":         {"/api/v1/traces?limit=100000", 400, "limit"},
		"limit not int":         {"/api/v1/traces?limit=ten", 400, "limit"},
		"service too long":      {"/api/v1/traces?service=" + strings.Repeat("a", 300), 400, "service"},
		"valid list":            {"/api/v1/traces?service=a&minDuration=1ms&error=false&limit=5", 200, ""},
		"valid graph":           {"/api/v1/graph?window=30s", 200, ""},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			resp, err := http.Get(h.api.URL + tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == 200 {
				return
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("Content-Type %q", ct)
			}
			var p rest.Problem
			if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
				t.Fatal(err)
			}
			if p.Field != tc.field || p.Status != tc.status || p.Detail == "" {
				t.Errorf("problem %+v, want field %q", p, tc.field)
			}
		})
	}
}

// TestOTLPHTTPErrors covers the OTLP/HTTP error answers: each comes with a google.rpc.Status body in the
// request's encoding, and malformed payloads are counted.
func TestOTLPHTTPErrors(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBatchBytes = 64 << 10
	h := newHarness(t, cfg)
	h.start(t)
	valid, _ := proto.Marshal(pairRequest("a", "b", 2, 1, 0))
	var bomb bytes.Buffer
	zw := gzip.NewWriter(&bomb)
	_, _ = zw.Write(make([]byte, 1<<20)) // 1 MiB of zeros, a few KiB compressed
	_ = zw.Close()
	var gz bytes.Buffer
	zw = gzip.NewWriter(&gz)
	_, _ = zw.Write(valid)
	_ = zw.Close()
	partial := pairRequest("a", "b", 4, 1, 0)
	partial.ResourceSpans[0].ScopeSpans[0].Spans[0].SpanId = nil
	partialBody, _ := proto.Marshal(partial)

	tests := map[string]struct {
		ct, enc  string
		body     []byte
		status   int
		code     codes.Code
		rejected int64
	}{
		"protobuf ok":       {ctProtobuf, "", valid, 200, codes.OK, 0},
		"gzip ok":           {ctProtobuf, "gzip", gz.Bytes(), 200, codes.OK, 0},
		"partial success":   {ctProtobuf, "", partialBody, 200, codes.OK, 1},
		"garbage protobuf":  {ctProtobuf, "", []byte{0x0a, 0xff, 0xff}, 400, codes.InvalidArgument, 0},
		"garbage json":      {ctJSON, "", []byte(`{"resourceSpans":[{`), 400, codes.InvalidArgument, 0},
		"json bad hex id":   {ctJSON, "", []byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz"}]}]}]}`), 400, codes.InvalidArgument, 0},
		"json ok":           {ctJSON, "", []byte(`{"resourceSpans":[]}`), 200, codes.OK, 0},
		"too large":         {ctProtobuf, "", make([]byte, 128<<10), 413, codes.ResourceExhausted, 0},
		"gzip bomb":         {ctProtobuf, "gzip", bomb.Bytes(), 413, codes.ResourceExhausted, 0},
		"bad gzip":          {ctProtobuf, "gzip", []byte("not gzip"), 400, codes.InvalidArgument, 0},
		"unknown encoding":  {ctProtobuf, "br", valid, 400, codes.InvalidArgument, 0},
		"unsupported media": {"text/plain", "", valid, 415, codes.InvalidArgument, 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, "http://"+h.tel.OTLPHTTPAddr()+"/v1/traces", bytes.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.ct)
			if tc.enc != "" {
				req.Header.Set("Content-Encoding", tc.enc)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var buf bytes.Buffer
			_, _ = buf.ReadFrom(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, buf.String())
			}
			isJSON := tc.ct == ctJSON
			if tc.status != 200 {
				var st spb.Status
				if err := unmarshalAs(isJSON, buf.Bytes(), &st); err != nil {
					t.Fatalf("status body: %v", err)
				}
				if codes.Code(st.Code) != tc.code || st.Message == "" {
					t.Errorf("status %v", &st)
				}
				return
			}
			rejected := partialRejected(t, isJSON, buf.Bytes())
			if rejected != tc.rejected {
				t.Errorf("rejected %d, want %d", rejected, tc.rejected)
			}
		})
	}
	fams := h.scrape(t)
	if v, _ := metricValue(fams, "meshplane_telemetry_malformed_requests_total", map[string]string{"transport": "http"}); v < 4 {
		t.Errorf("malformed requests counted %v, want >= 4", v)
	}
}

func unmarshalAs(isJSON bool, b []byte, m proto.Message) error {
	if isJSON {
		return protojson.Unmarshal(b, m)
	}
	return proto.Unmarshal(b, m)
}

func partialRejected(t *testing.T, isJSON bool, b []byte) int64 {
	t.Helper()
	var resp coltracepb.ExportTraceServiceResponse
	if err := unmarshalAs(isJSON, b, &resp); err != nil {
		t.Fatalf("response body: %v", err)
	}
	return resp.GetPartialSuccess().GetRejectedSpans()
}

// TestOTLPJSONMapping posts the OTLP specification's JSON shape (hex ids, enum names and numbers, int64 as
// strings, an unknown field) and reads the span back through the trace API.
func TestOTLPJSONMapping(t *testing.T) {
	h := newHarness(t, testConfig())
	h.start(t)
	doc := `{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}}]},
	  "scopeSpans":[{"scope":{"name":"manual"},"spans":[
	    {"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173",
	     "name":"GetCart","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1544712660000000000",
	     "endTimeUnixNano":1544712661000000000,"attributes":[{"key":"http.status_code","value":{"intValue":"500"}}],
	     "status":{"code":2,"message":"boom"},"someFutureField":{"x":1}}]}]}]}`
	resp, err := http.Post("http://"+h.tel.OTLPHTTPAddr()+"/v1/traces", ctJSON, strings.NewReader(doc))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != ctJSON {
		t.Fatalf("status %d (%s): %s", resp.StatusCode, resp.Header.Get("Content-Type"), buf.String())
	}
	var tr Trace
	eventually(t, "JSON span stored", func() (bool, string) {
		code := h.getJSON(t, "/api/v1/traces/5b8efff798038103d269b633813fc60c", &tr)
		return code == 200, fmt.Sprint(code)
	})
	if len(tr.Spans) != 1 {
		t.Fatalf("spans %+v", tr.Spans)
	}
	s := tr.Spans[0]
	if s.SpanID != "eee19b7ec3c1b174" || s.ParentSpanID != "eee19b7ec3c1b173" || s.Kind != "SPAN_KIND_SERVER" ||
		s.StatusCode != "STATUS_CODE_ERROR" || s.DurationMs != 1000 || s.Service != "cart" || s.Attributes["http.status_code"] != float64(500) {
		t.Errorf("span %+v", s)
	}
}
