package telemetry

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"strconv"

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
// The hex ids are rewritten to base64 in a single streaming pass over the tokens, so the document is never held
// as a tree of Go values.
func jsonToProto(body []byte) ([]byte, error) {
	norm, err := hexIDsToBase64(body)
	if err != nil {
		return nil, err
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

// hexIDsToBase64 re-emits the JSON document token by token, replacing the value of every id field (see
// isIDField) by the base64 of its hex. It also checks the document is one JSON object and nothing else.
func hexIDsToBase64(body []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	out := bytes.NewBuffer(make([]byte, 0, len(body)+len(body)/8))
	type frame struct {
		object bool // inside {} (else [])
		n      int  // values (or keys) written so far
	}
	var stack []frame
	idKey := false // the last key written names an id field
	for depth := 0; ; {
		tok, err := dec.Token()
		if err == io.EOF {
			if depth != 0 || out.Len() == 0 {
				return nil, malformed("json: unexpected end of document")
			}
			return out.Bytes(), nil
		}
		if err != nil {
			return nil, malformed("json: %v", err)
		}
		if len(stack) == 0 && out.Len() > 0 {
			return nil, malformed("json: trailing data after the request object")
		}
		isKey := len(stack) > 0 && stack[len(stack)-1].object && stack[len(stack)-1].n%2 == 0
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:len(stack)-1]
			depth--
			out.WriteByte(byte(d))
			continue
		}
		if len(stack) > 0 {
			top := &stack[len(stack)-1]
			switch {
			case top.object && top.n%2 == 1:
				out.WriteByte(':')
			case top.n > 0:
				out.WriteByte(',')
			}
			top.n++
		} else if d, ok := tok.(json.Delim); !ok || d != '{' {
			return nil, malformed("json: the request must be an object")
		}
		switch t := tok.(type) {
		case json.Delim:
			stack = append(stack, frame{object: t == '{'})
			depth++
			out.WriteByte(byte(t))
			idKey = false
		case string:
			v := t
			if isKey {
				idKey = isIDField(t)
			} else if idKey {
				raw, err := hex.DecodeString(t)
				if err != nil {
					return nil, malformed("json: id %q is not hex: %v", t, err)
				}
				v = base64.StdEncoding.EncodeToString(raw)
				idKey = false
			}
			enc, _ := json.Marshal(v)
			out.Write(enc)
		case json.Number:
			out.WriteString(t.String())
			idKey = false
		case bool:
			out.WriteString(strconv.FormatBool(t))
			idKey = false
		case nil:
			out.WriteString("null")
			idKey = false
		}
	}
}
