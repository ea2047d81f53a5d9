package telemetry

import (
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

type spanSpec struct {
	service     string
	kind        tracepb.Span_SpanKind
	trace, span byte
	parent      byte // 0 = root
	err         bool
	attrs       []*commonpb.KeyValue
}

// decodeSpecs encodes specs as one request per span and decodes them with the scanner.
func decodeSpecs(t *testing.T, cfg Config, specs ...spanSpec) []spanRec {
	t.Helper()
	var out []spanRec
	for _, s := range specs {
		sp := &tracepb.Span{
			TraceId: append(make([]byte, 15), s.trace), SpanId: append(make([]byte, 7), s.span),
			Name: "op", Kind: s.kind, StartTimeUnixNano: 1000, EndTimeUnixNano: 3_000_000 + 1000, Attributes: s.attrs,
		}
		if s.parent != 0 {
			sp.ParentSpanId = append(make([]byte, 7), s.parent)
		}
		if s.err {
			sp.Status = &tracepb.Status{Code: tracepb.Status_STATUS_CODE_ERROR}
		}
		req := &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{{
			Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{strAttr("service.name", s.service)}},
			ScopeSpans: []*tracepb.ScopeSpans{{Spans: []*tracepb.Span{sp}}},
		}}}
		b, err := proto.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		d := decoder{peerKeys: cfg.peerAttributes()}
		res, err := d.decode(b, nil)
		if err != nil || len(res.spans) != 1 {
			t.Fatalf("decode: %v (%d spans)", err, len(res.spans))
		}
		out = append(out, res.spans...)
	}
	return out
}

func edgeCounts(a *aggregator) map[edgeKey]uint64 {
	out := map[edgeKey]uint64{}
	for k, s := range a.edges {
		out[k] = s.total
	}
	return out
}

func TestServiceGraphPairing(t *testing.T) {
	const (
		client   = tracepb.Span_SPAN_KIND_CLIENT
		server   = tracepb.Span_SPAN_KIND_SERVER
		producer = tracepb.Span_SPAN_KIND_PRODUCER
		consumer = tracepb.Span_SPAN_KIND_CONSUMER
	)
	tests := map[string]struct {
		specs   []spanSpec
		before  map[edgeKey]uint64 // right after consuming
		after   map[edgeKey]uint64 // after PairingWait
		expired uint64
	}{
		"client and server pair": {
			specs:  []spanSpec{{"fe", client, 1, 2, 1, false, nil}, {"be", server, 1, 3, 2, true, nil}},
			before: map[edgeKey]uint64{{"fe", "be", connUnknown, true}: 1},
			after:  map[edgeKey]uint64{{"fe", "be", connUnknown, true}: 1},
		},
		"server before client": {
			specs:  []spanSpec{{"be", server, 1, 3, 2, false, nil}, {"fe", client, 1, 2, 1, false, nil}},
			before: map[edgeKey]uint64{{"fe", "be", connUnknown, false}: 1},
			after:  map[edgeKey]uint64{{"fe", "be", connUnknown, false}: 1},
		},
		"producer and consumer": {
			specs:  []spanSpec{{"orders", producer, 1, 2, 0, false, nil}, {"mailer", consumer, 1, 3, 2, false, nil}},
			before: map[edgeKey]uint64{{"orders", "mailer", connMessaging, false}: 1},
			after:  map[edgeKey]uint64{{"orders", "mailer", connMessaging, false}: 1},
		},
		"database call completes at once": {
			specs:  []spanSpec{{"orders", client, 1, 2, 0, false, []*commonpb.KeyValue{strAttr("db.name", "ordersdb"), strAttr("db.system", "postgresql")}}},
			before: map[edgeKey]uint64{{"orders", "ordersdb", connDatabase, false}: 1},
			after:  map[edgeKey]uint64{{"orders", "ordersdb", connDatabase, false}: 1},
		},
		"uninstrumented peer becomes a virtual node": {
			specs:   []spanSpec{{"fe", client, 1, 2, 1, false, []*commonpb.KeyValue{strAttr("server.address", "api.example.com"), strAttr("peer.service", "stripe")}}},
			before:  map[edgeKey]uint64{},
			after:   map[edgeKey]uint64{{"fe", "stripe", connVirtualNode, false}: 1},
			expired: 1,
		},
		"server.address names the peer when nothing better": {
			specs:   []spanSpec{{"fe", client, 1, 2, 1, false, []*commonpb.KeyValue{strAttr("server.address", "api.example.com")}}},
			before:  map[edgeKey]uint64{},
			after:   map[edgeKey]uint64{{"fe", "api.example.com", connVirtualNode, false}: 1},
			expired: 1,
		},
		"peer without attributes is unknown": {
			specs:   []spanSpec{{"fe", client, 1, 2, 1, true, nil}},
			before:  map[edgeKey]uint64{},
			after:   map[edgeKey]uint64{{"fe", "unknown", connVirtualNode, true}: 1},
			expired: 1,
		},
		"root server span is called by user": {
			specs:   []spanSpec{{"fe", server, 1, 2, 0, false, nil}},
			before:  map[edgeKey]uint64{},
			after:   map[edgeKey]uint64{{"user", "fe", connVirtualNode, false}: 1},
			expired: 1,
		},
		"server span with a missing non-root parent is dropped": {
			specs:   []spanSpec{{"be", server, 1, 3, 2, false, nil}},
			before:  map[edgeKey]uint64{},
			after:   map[edgeKey]uint64{},
			expired: 1,
		},
		"internal spans make no edge": {
			specs:  []spanSpec{{"fe", tracepb.Span_SPAN_KIND_INTERNAL, 1, 2, 0, false, nil}},
			before: map[edgeKey]uint64{},
			after:  map[edgeKey]uint64{},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			cfg := testConfig()
			a := newAggregator(cfg)
			now := time.Unix(1_700_000_000, 0)
			a.consume(decodeSpecs(t, cfg, tc.specs...), now)
			if got := edgeCounts(a); !equalCounts(got, tc.before) {
				t.Errorf("before expiry: %v, want %v", got, tc.before)
			}
			a.expire(now.Add(cfg.PairingWait))
			if got := edgeCounts(a); !equalCounts(got, tc.after) {
				t.Errorf("after expiry: %v, want %v", got, tc.after)
			}
			if a.stats.expiredEdges != tc.expired {
				t.Errorf("expired %d, want %d", a.stats.expiredEdges, tc.expired)
			}
			if a.pending.len() != 0 {
				t.Errorf("%d edges still pending", a.pending.len())
			}
		})
	}
}

func equalCounts(a, b map[edgeKey]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestCardinalityLimits(t *testing.T) {
	cfg := testConfig()
	cfg.MaxEdgeSeries = 2
	cfg.MaxSpanSeries = 3
	cfg.PairingMaxPending = 4
	a := newAggregator(cfg)
	now := time.Unix(1_700_000_000, 0)
	var specs []spanSpec
	for i, svc := range []string{"a", "b", "c", "d"} {
		tr := byte(i + 1)
		specs = append(specs, spanSpec{svc, tracepb.Span_SPAN_KIND_CLIENT, tr, 2, 1, false, nil},
			spanSpec{"srv", tracepb.Span_SPAN_KIND_SERVER, tr, 3, 2, false, nil})
	}
	a.consume(decodeSpecs(t, cfg, specs...), now)
	if len(a.edges) != 2 || a.edgeOverflow == nil || a.edgeOverflow.total != 2 || a.stats.edgeOverflow != 2 {
		t.Errorf("edges %d, overflow %+v, counted %d", len(a.edges), a.edgeOverflow, a.stats.edgeOverflow)
	}
	// span series: (a,op,CLIENT,UNSET), (srv,op,SERVER,UNSET), (b,op,CLIENT,UNSET); c and d overflow.
	if a.spanSeries != 3 || a.spanOverflow == nil || a.spanOverflow.hist.count != 2 || a.stats.spanOverflowSpans != 2 {
		t.Errorf("span series %d, overflow %+v", a.spanSeries, a.spanOverflow)
	}

	// Five unpaired client spans with room for four pending: one is dropped and counted.
	var lone []spanSpec
	for i := range 5 {
		lone = append(lone, spanSpec{"a", tracepb.Span_SPAN_KIND_CLIENT, byte(10 + i), 2, 1, false, nil})
	}
	a.consume(decodeSpecs(t, cfg, lone...), now)
	if a.pending.len() != 4 || a.stats.droppedPairing != 1 {
		t.Errorf("pending %d, dropped %d", a.pending.len(), a.stats.droppedPairing)
	}
}

func TestQuantile(t *testing.T) {
	a := newAggregator(testConfig())
	var h [numBuckets + 1]uint64
	if q := quantile(&a.secBounds, &h, 0.5); q != 0 {
		t.Errorf("empty: %v", q)
	}
	h[5] = 100 // all in (0.01, 0.05]
	if q := quantile(&a.secBounds, &h, 0.5); q < 0.029 || q > 0.031 {
		t.Errorf("p50 = %v, want 0.03", q)
	}
	h[numBuckets] = 1000
	if q := quantile(&a.secBounds, &h, 0.99); q != 15 {
		t.Errorf("p99 in +Inf = %v, want 15", q)
	}
}

// TestCollectSkipsInvalidLabels feeds the aggregator a service name that is not UTF-8 (the scanner refuses those,
// this bypasses it): the scrape must still succeed with the valid series.
func TestCollectSkipsInvalidLabels(t *testing.T) {
	h := newHarness(t, testConfig())
	spans := decodeSpecs(t, testConfig(), spanSpec{"ok", tracepb.Span_SPAN_KIND_SERVER, 1, 2, 0, false, nil})
	bad := spans[0]
	bad.service = []byte{0xff, 0xfe}
	h.tel.agg.consume(append(spans, bad), time.Unix(1_700_000_000, 0))
	fams, err := h.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	found := false
	for _, f := range fams {
		if f.GetName() == "traces_span_metrics_calls_total" {
			found = len(f.GetMetric()) == 1
		}
	}
	if !found {
		t.Error("valid span series missing or invalid one present")
	}
}
