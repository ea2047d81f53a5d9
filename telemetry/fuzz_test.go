package telemetry

import (
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func countSpans(req *coltracepb.ExportTraceServiceRequest) int {
	n := 0
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			n += len(ss.GetSpans())
		}
	}
	return n
}

func protoSeeds(f *testing.F) {
	valid, _ := proto.Marshal(pairRequest("a", "b", 4, 1, 2))
	f.Add(valid)
	f.Add([]byte{})
	f.Add(valid[:len(valid)/2])
	f.Add([]byte{0x0a, 0x05, 0x12, 0x03, 0x12, 0x01, 0x00})
	f.Add([]byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{0x08, 0x01, 0x0b, 0x0c})
	bad := pairRequest("a", "b", 2, 1, 0)
	bad.ResourceSpans[0].ScopeSpans[0].Spans[0].TraceId = []byte{1, 2, 3}
	b, _ := proto.Marshal(bad)
	f.Add(b)
}

// FuzzDecodeProto checks the hand-written scanner against proto.Unmarshal: it never panics, it accepts exactly
// what the reference decoder accepts, and it accounts for every span (decoded or rejected as partial success).
func FuzzDecodeProto(f *testing.F) {
	protoSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		d := decoder{peerKeys: Defaults().peerAttributes()}
		res, err := d.decode(data, nil)
		var ref coltracepb.ExportTraceServiceRequest
		refErr := proto.Unmarshal(data, &ref)
		if (err == nil) != (refErr == nil) {
			t.Fatalf("scanner error %v, proto.Unmarshal error %v", err, refErr)
		}
		if refErr == nil {
			if got, want := len(res.spans)+res.rejected, countSpans(&ref); got != want {
				t.Fatalf("scanner saw %d spans, proto.Unmarshal %d", got, want)
			}
		}
	})
}

// FuzzDecodeJSON feeds OTLP/JSON through jsonToProto and the scanner: no panic, and an accepted document always
// yields a request the scanner accepts.
func FuzzDecodeJSON(f *testing.F) {
	f.Add([]byte(`{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"a"}}]},` +
		`"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",` +
		`"parentSpanId":"eee19b7ec3c1b173","name":"x","kind":2,"startTimeUnixNano":"1544712660000000000",` +
		`"endTimeUnixNano":"1544712661000000000","status":{"code":"STATUS_CODE_ERROR"}}]}]}]}`))
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz","spanId":"00"}]}]}]}`))
	f.Add([]byte(`{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_CLIENT","unknownField":1}]}]}]}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"resourceSpans":`))
	f.Add([]byte(`{} {}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		pb, err := jsonToProto(data)
		if err != nil {
			return
		}
		d := decoder{peerKeys: Defaults().peerAttributes()}
		if _, err := d.decode(pb, nil); err != nil {
			t.Fatalf("jsonToProto produced a request the scanner refuses: %v", err)
		}
	})
}
