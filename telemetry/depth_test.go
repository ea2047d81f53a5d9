package telemetry

import (
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// nestedRequest builds a request whose one span has an attribute value nested n arrays deep.
func nestedRequest(n int) []byte {
	v := protowire.AppendTag(nil, 1, protowire.BytesType) // AnyValue{string_value: "x"}
	v = protowire.AppendBytes(v, []byte("x"))
	for range n {
		arr := protowire.AppendTag(nil, 1, protowire.BytesType) // ArrayValue{values: [v]}
		arr = protowire.AppendBytes(arr, v)
		v = protowire.AppendTag(nil, 5, protowire.BytesType) // AnyValue{array_value: arr}
		v = protowire.AppendBytes(v, arr)
	}
	kv := protowire.AppendTag(nil, 2, protowire.BytesType)
	kv = protowire.AppendBytes(kv, v)
	base, _ := proto.Marshal(pairRequest("a", "b", 2, 1, 0))
	var req coltracepb.ExportTraceServiceRequest
	_ = proto.Unmarshal(base, &req)
	span, _ := proto.Marshal(req.ResourceSpans[0].ScopeSpans[0].Spans[0])
	span = protowire.AppendTag(span, 9, protowire.BytesType)
	span = protowire.AppendBytes(span, kv)
	ss := protowire.AppendTag(nil, 2, protowire.BytesType)
	ss = protowire.AppendBytes(ss, span)
	rs := protowire.AppendTag(nil, 2, protowire.BytesType)
	rs = protowire.AppendBytes(rs, ss)
	out := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendBytes(out, rs)
}

// TestRecursionLimitMatchesProto checks that the scanner refuses nesting exactly where proto.Unmarshal does.
func TestRecursionLimitMatchesProto(t *testing.T) {
	for _, n := range []int{10, 4990, 4995, 4996, 4997, 4998, 4999, 5000, 5001, 6000} {
		b := nestedRequest(n)
		var ref coltracepb.ExportTraceServiceRequest
		refErr := proto.Unmarshal(b, &ref)
		d := decoder{peerKeys: testConfig().peerAttributes()}
		_, err := d.decode(b, nil)
		if (err == nil) != (refErr == nil) {
			t.Errorf("depth %d: scanner error %v, proto.Unmarshal error %v", n, err, refErr)
		}
	}
}
