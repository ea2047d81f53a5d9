package telemetry

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// isIDField reports the JSON keys whose values OTLP/JSON encodes as hex strings, where protojson's mapping of
// bytes fields would expect base64 (OTLP specification, "JSON Protobuf Encoding"). Both the lowerCamelCase names
// the spec requires and the original field names protojson also accepts are covered.
func isIDField(k string) bool {
	switch k {
	case "traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id":
		return true
	}
	return false
}

// jsonToProto converts an OTLP/JSON ExportTraceServiceRequest into its protobuf encoding, so both encodings share
// one decoding, aggregation and forwarding path. Enum values may be integers or names and 64-bit integers numbers
// or strings (protojson accepts both); unknown fields are ignored, as the specification requires of receivers.
func jsonToProto(body []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, malformed("json: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, malformed("json: trailing data after the request object")
	}
	if _, ok := doc.(map[string]any); !ok {
		return nil, malformed("json: the request must be an object")
	}
	if err := hexIDsToBase64(doc); err != nil {
		return nil, err
	}
	norm, err := json.Marshal(doc)
	if err != nil {
		return nil, malformed("json: %v", err)
	}
	var req coltracepb.ExportTraceServiceRequest
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(norm, &req); err != nil {
		return nil, malformed("json: %v", err)
	}
	out, err := proto.Marshal(&req)
	if err != nil {
		return nil, malformed("json: %v", err)
	}
	return out, nil
}

func hexIDsToBase64(v any) error {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if s, ok := e.(string); ok && isIDField(k) {
				raw, err := hex.DecodeString(s)
				if err != nil {
					return malformed("json: %s %q is not hex: %v", k, s, err)
				}
				t[k] = base64.StdEncoding.EncodeToString(raw)
				continue
			}
			if err := hexIDsToBase64(e); err != nil {
				return err
			}
		}
	case []any:
		for _, e := range t {
			if err := hexIDsToBase64(e); err != nil {
				return err
			}
		}
	}
	return nil
}
