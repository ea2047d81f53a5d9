package telemetry

import (
	"encoding/binary"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

func strAttr(k, v string) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_StringValue{StringValue: v}}}
}

func ids(seed uint64) (traceID, spanID []byte) {
	traceID = make([]byte, 16)
	spanID = make([]byte, 8)
	binary.BigEndian.PutUint64(traceID[:8], seed|1<<63)
	binary.BigEndian.PutUint64(traceID[8:], seed)
	binary.BigEndian.PutUint64(spanID, seed|1<<62)
	return traceID, spanID
}

// pairRequest builds a request with n/2 client spans of service client and n/2 matching server spans of service
// server (each pair in its own trace), numbered from seed; every failEvery-th pair fails (0 = none).
func pairRequest(client, server string, n int, seed uint64, failEvery int) *coltracepb.ExportTraceServiceRequest {
	var cs, ss []*tracepb.Span
	for i := range n / 2 {
		s := seed + uint64(i)
		tid, csid := ids(s)
		_, ssid := ids(s + 1<<40)
		st := &tracepb.Status{}
		if failEvery > 0 && i%failEvery == 0 {
			st.Code = tracepb.Status_STATUS_CODE_ERROR
		}
		start := uint64(1_700_000_000_000_000_000) + s*1000
		cs = append(cs, &tracepb.Span{
			TraceId: tid, SpanId: csid, ParentSpanId: ssid[:0], Name: "call " + server,
			Kind: tracepb.Span_SPAN_KIND_CLIENT, StartTimeUnixNano: start, EndTimeUnixNano: start + 5_000_000,
			Attributes: []*commonpb.KeyValue{strAttr("peer.service", server), strAttr("http.method", "GET")},
			Status:     st,
		})
		ss = append(ss, &tracepb.Span{
			TraceId: tid, SpanId: ssid, ParentSpanId: csid, Name: "handle",
			Kind: tracepb.Span_SPAN_KIND_SERVER, StartTimeUnixNano: start + 1_000_000, EndTimeUnixNano: start + 4_000_000,
			Attributes: []*commonpb.KeyValue{strAttr("http.route", "/x")},
			Status:     st,
		})
	}
	rs := func(svc string, spans []*tracepb.Span) *tracepb.ResourceSpans {
		return &tracepb.ResourceSpans{
			Resource:   &resourcepb.Resource{Attributes: []*commonpb.KeyValue{strAttr("service.name", svc)}},
			ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "test"}, Spans: spans}},
		}
	}
	return &coltracepb.ExportTraceServiceRequest{ResourceSpans: []*tracepb.ResourceSpans{rs(client, cs), rs(server, ss)}}
}
