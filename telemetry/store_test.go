package telemetry

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
)

func decodedPairs(t *testing.T, n int, seed uint64) []spanRec {
	t.Helper()
	b, err := proto.Marshal(pairRequest("fe", "be", n, seed, 3))
	if err != nil {
		t.Fatal(err)
	}
	d := decoder{peerKeys: testConfig().peerAttributes()}
	res, err := d.decode(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res.spans
}

func TestTraceStoreEviction(t *testing.T) {
	tests := map[string]struct {
		maxSpans  int
		maxBytes  int64
		add       int // spans, in pairs of one trace each
		wantSpans int
	}{
		"fits":           {maxSpans: 100, maxBytes: 1 << 20, add: 50, wantSpans: 50},
		"span bound":     {maxSpans: 40, maxBytes: 1 << 20, add: 100, wantSpans: 40},
		"byte bound":     {maxSpans: 10_000, maxBytes: 4096, add: 400},
		"tiny byte ring": {maxSpans: 10_000, maxBytes: 700, add: 60},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			s := newTraceStore(tc.maxSpans, tc.maxBytes)
			spans := decodedPairs(t, tc.add, 1)
			for i := 0; i < len(spans); i += 7 { // several batches
				s.add(spans[i:min(i+7, len(spans))])
			}
			st := s.snapshotStats()
			if st.spans > tc.maxSpans || st.bytes > s.capBytes() || s.capBytes() > tc.maxBytes {
				t.Fatalf("store holds %d spans / %d bytes (cap %d), bounds %d / %d", st.spans, st.bytes, s.capBytes(), tc.maxSpans, tc.maxBytes)
			}
			if tc.wantSpans > 0 && st.spans != tc.wantSpans {
				t.Errorf("spans %d, want %d", st.spans, tc.wantSpans)
			}
			if got := uint64(st.spans) + st.evictedSpans + st.skippedSpans; got != uint64(len(spans)) {
				t.Errorf("stored %d + evicted %d + skipped %d != added %d", st.spans, st.evictedSpans, st.skippedSpans, len(spans))
			}
			// Every live span is reachable from its trace, and evicted ones are not.
			reach := 0
			s.mu.Lock()
			for id := range s.index {
				s.traceLocked(id, func(x *storedSpan) {
					svc, raw := s.recordLocked(x)
					if string(svc) != "fe" && string(svc) != "be" || len(raw) == 0 {
						t.Errorf("bad record %q", svc)
					}
					reach++
				})
			}
			if len(s.index) != st.traces {
				t.Errorf("index has %d traces, stats %d", len(s.index), st.traces)
			}
			s.mu.Unlock()
			if reach != st.spans {
				t.Errorf("reachable spans %d, stored %d", reach, st.spans)
			}
			// The newest span's trace is there and decodes; complete when nothing was evicted.
			last := spans[len(spans)-1]
			tr, ok := s.trace(last.traceID)
			want := 1
			if st.evictedSpans == 0 {
				want = 2
			}
			if !ok || len(tr.Spans) < want || tr.Spans[0].Name == "" {
				t.Errorf("newest trace: ok=%v %+v", ok, tr)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := map[string]struct {
		mutate func(*Config)
		field  string
	}{
		"defaults":         {func(*Config) {}, ""},
		"bad grpc addr":    {func(c *Config) { c.OTLPGRPCAddr = "nope" }, "OTLPGRPCAddr"},
		"zero queue":       {func(c *Config) { c.QueueSpans = 0 }, "QueueSpans"},
		"zero queue bytes": {func(c *Config) { c.QueueBytes = 0 }, "QueueBytes"},
		"zero batch":       {func(c *Config) { c.MaxBatchBytes = 0 }, "MaxBatchBytes"},
		"zero wait":        {func(c *Config) { c.PairingWait = 0 }, "PairingWait"},
		"zero pending":     {func(c *Config) { c.PairingMaxPending = 0 }, "PairingMaxPending"},
		"zero edges":       {func(c *Config) { c.MaxEdgeSeries = 0 }, "MaxEdgeSeries"},
		"zero span series": {func(c *Config) { c.MaxSpanSeries = 0 }, "MaxSpanSeries"},
		"short window":     {func(c *Config) { c.GraphWindow = time.Second }, "GraphWindow"},
		"negative store":   {func(c *Config) { c.TraceStoreSpans = -1 }, "TraceStoreSpans"},
		"store no bytes":   {func(c *Config) { c.TraceStoreBytes = 0 }, "TraceStoreBytes"},
		"store off":        {func(c *Config) { c.TraceStoreSpans, c.TraceStoreBytes = 0, 0 }, ""},
		"forward bad addr": {func(c *Config) { c.ForwardEndpoint = "x" }, "ForwardEndpoint"},
		"forward no queue": {func(c *Config) { c.ForwardEndpoint, c.ForwardQueueSpans = "h:1", 0 }, "ForwardQueueSpans"},
		"negative retry":   {func(c *Config) { c.RetryAfter = -time.Second }, "RetryAfter"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			c := Defaults()
			tc.mutate(&c)
			err := c.Validate()
			if tc.field == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error %v, want one naming %s", err, tc.field)
			}
		})
	}
}

// TestTraceStoreEvictionOverHTTP fills a small store through the receiver: evictions show on /metrics, the oldest
// trace is gone (404) and the newest is served.
func TestTraceStoreEvictionOverHTTP(t *testing.T) {
	cfg := testConfig()
	cfg.TraceStoreSpans = 50
	h := newHarness(t, cfg)
	h.start(t)
	req := pairRequest("fe", "be", 100, 1, 0) // 50 traces of 2 spans
	body, _ := proto.Marshal(req)
	resp, err := http.Post("http://"+h.tel.OTLPHTTPAddr()+"/v1/traces", ctProtobuf, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	eventually(t, "evictions on /metrics", func() (bool, string) {
		fams := h.scrape(t)
		ev, _ := metricValue(fams, "meshplane_telemetry_trace_store_evicted_spans_total", map[string]string{})
		held, _ := metricValue(fams, "meshplane_telemetry_trace_store_spans", map[string]string{})
		return ev == 50 && held == 50, fmt.Sprintf("evicted %v held %v", ev, held)
	})
	// Client spans come first in the request, so the first traces lost their client span but keep the server one;
	// the stored spans are the 50 server spans.
	spans := req.ResourceSpans[1].ScopeSpans[0].Spans
	var tr Trace
	if code := h.getJSON(t, "/api/v1/traces/"+hex.EncodeToString(spans[49].TraceId), &tr); code != 200 || len(tr.Spans) != 1 || tr.Spans[0].Service != "be" {
		t.Errorf("newest trace: status %d, %+v", code, tr)
	}
	var list TraceList
	h.getJSON(t, "/api/v1/traces?limit=1000", &list)
	if len(list.Traces) != 50 {
		t.Errorf("listed %d traces, want 50", len(list.Traces))
	}
	h2 := newHarness(t, cfg) // a store that never saw the trace answers 404
	if code := h2.getJSON(t, "/api/v1/traces/"+hex.EncodeToString(spans[0].TraceId), nil); code != 404 {
		t.Errorf("unknown trace: status %d", code)
	}
}
