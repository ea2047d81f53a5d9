package telemetry

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
)

// Span kinds and status codes as numbered in the OTLP protos.
const (
	kindUnspecified = 0
	kindInternal    = 1
	kindServer      = 2
	kindClient      = 3
	kindProducer    = 4
	kindConsumer    = 5
	numKinds        = 6

	statusUnset = 0
	statusOK    = 1
	statusError = 2
	numStatuses = 3

	// maxDepth mirrors proto.Unmarshal's default recursion limit: the request is depth 1 and each nested message
	// adds one (TestRecursionLimitMatchesProto pins the boundary).
	maxDepth = 10000
)

// spanRec is what aggregation needs from one span. Its byte slices point into the request buffer, so decoding
// allocates nothing; whoever keeps a value beyond the batch copies (or interns) it.
type spanRec struct {
	traceID  [16]byte
	spanID   [8]byte
	parentID [8]byte
	start    uint64
	end      uint64
	kind     uint8
	status   uint8
	peerPrio int8 // index into the peer attribute list of peer, -1 when none

	service []byte // resource service.name; nil when the resource has none
	name    []byte
	peer    []byte // value of the highest-priority virtual-node peer attribute
	dbName  []byte // db.name (span first, then resource): the edge completes at once as a database edge
	raw     []byte // the span's own encoding (opentelemetry.proto.trace.v1.Span)
}

// decodeResult is one decoded ExportTraceServiceRequest.
type decodeResult struct {
	spans    []spanRec
	rejected int    // spans refused (bad trace or span id) and reported as partial success
	reason   string // why the first rejected span was refused
}

// errMalformed wraps every decoding failure so callers answer INVALID_ARGUMENT / 400.
var errMalformed = errors.New("malformed OTLP payload")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{errMalformed}, args...)...)
}

// decoder scans the protobuf encoding of an ExportTraceServiceRequest without building the message. It accepts
// exactly what proto.Unmarshal accepts (wire format, UTF-8 of every string field, recursion limit; unknown fields
// and fields of an unexpected wire type are skipped as unknown, as proto.Unmarshal does), so anything it accepts
// can be stored, returned and forwarded as is. It extracts only what aggregation needs. Field numbers are those
// of opentelemetry-proto v1.x (trace.proto, common.proto, resource.proto).
type decoder struct {
	peerKeys []string // virtual-node peer attributes in priority order
	res      decodeResult
}

// field reads one tag and value. For BytesType v is the payload; otherwise v is the encoded value (a varint's
// bytes, a fixed32/64, or a whole group). Its fast path (one-byte tag of a length-delimited field shorter than
// 128 bytes, the bulk of OTLP) is small enough to be inlined.
func field(b []byte) (num protowire.Number, typ protowire.Type, v []byte, n int, err error) {
	if len(b) >= 2 {
		t, l := b[0], int(b[1])
		if t&0x87 == 2 && t >= 8 && l < 0x80 && l <= len(b)-2 {
			return protowire.Number(t >> 3), protowire.BytesType, b[2 : 2+l], 2 + l, nil
		}
	}
	return fieldSlow(b)
}

func fieldSlow(b []byte) (num protowire.Number, typ protowire.Type, v []byte, n int, err error) {
	num, typ, tn := protowire.ConsumeTag(b)
	if tn < 0 {
		return 0, 0, nil, 0, protowire.ParseError(tn)
	}
	if !num.IsValid() {
		return 0, 0, nil, 0, fmt.Errorf("invalid field number %d", num)
	}
	rest := b[tn:]
	if typ == protowire.BytesType {
		p, m := protowire.ConsumeBytes(rest)
		if m < 0 {
			return 0, 0, nil, 0, protowire.ParseError(m)
		}
		return num, typ, p, tn + m, nil
	}
	m := protowire.ConsumeFieldValue(num, typ, rest)
	if m < 0 {
		return 0, 0, nil, 0, protowire.ParseError(m)
	}
	return num, typ, rest[:m], tn + m, nil
}

func validString(what string, v []byte) error {
	if !utf8.Valid(v) {
		return malformed("%s is not valid UTF-8", what)
	}
	return nil
}

func (d *decoder) decode(b []byte, dst []spanRec) (decodeResult, error) {
	d.res = decodeResult{spans: dst[:0]}
	for len(b) > 0 {
		num, typ, v, n, err := field(b)
		if err != nil {
			return d.res, malformed("request: %v", err)
		}
		if num == 1 && typ == protowire.BytesType {
			if err := d.resourceSpans(v); err != nil {
				return d.res, err
			}
		}
		b = b[n:]
	}
	return d.res, nil
}

// resourceSpans makes two passes, since the resource may legally follow the scope spans on the wire.
func (d *decoder) resourceSpans(b []byte) error {
	var service, dbName []byte
	for p := b; len(p) > 0; {
		num, typ, v, n, err := field(p)
		if err != nil {
			return malformed("resource_spans: %v", err)
		}
		p = p[n:]
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case 1:
			if err := d.resource(v, &service, &dbName); err != nil {
				return err
			}
		case 3:
			if err := validString("schema_url", v); err != nil {
				return err
			}
		}
	}
	for p := b; len(p) > 0; {
		num, typ, v, n, _ := field(p) // validated by the first pass
		p = p[n:]
		if num == 2 && typ == protowire.BytesType {
			if err := d.scopeSpans(v, service, dbName); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *decoder) resource(b []byte, service, dbName *[]byte) error {
	for len(b) > 0 {
		num, typ, v, n, err := field(b)
		if err != nil {
			return malformed("resource: %v", err)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case 1:
			key, val, isStr, err := keyValue(v, 4)
			if err != nil {
				return err
			}
			if isStr {
				switch string(key) {
				case "service.name":
					*service = val
				case "db.name":
					*dbName = val
				}
			}
		case 3:
			if err := entityRef(v); err != nil {
				return err
			}
		}
	}
	return nil
}

func entityRef(b []byte) error {
	for len(b) > 0 {
		num, typ, v, n, err := field(b)
		if err != nil {
			return malformed("entity_ref: %v", err)
		}
		b = b[n:]
		if typ == protowire.BytesType && num >= 1 && num <= 4 {
			if err := validString("entity_ref string", v); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *decoder) scopeSpans(b []byte, service, dbName []byte) error {
	// Validate the scope and schema_url before taking any span, so a refused request adds nothing.
	for p := b; len(p) > 0; {
		num, typ, v, n, err := field(p)
		if err != nil {
			return malformed("scope_spans: %v", err)
		}
		p = p[n:]
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case 1:
			if err := scope(v); err != nil {
				return err
			}
		case 3:
			if err := validString("schema_url", v); err != nil {
				return err
			}
		}
	}
	for p := b; len(p) > 0; {
		num, typ, v, n, _ := field(p)
		p = p[n:]
		if num == 2 && typ == protowire.BytesType {
			if err := d.span(v, service, dbName); err != nil {
				return err
			}
		}
	}
	return nil
}

func scope(b []byte) error {
	for len(b) > 0 {
		num, typ, v, n, err := field(b)
		if err != nil {
			return malformed("scope: %v", err)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case 1, 2:
			if err := validString("scope name/version", v); err != nil {
				return err
			}
		case 3:
			if _, _, _, err := keyValue(v, 5); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *decoder) span(b []byte, service, resDBName []byte) error {
	s := spanRec{service: service, raw: b, peerPrio: -1}
	var idBad string
	traceLen, spanLen := -1, -1
	for len(b) > 0 {
		num, typ, v, n, err := field(b)
		if err != nil {
			return malformed("span: %v", err)
		}
		b = b[n:]
		switch typ {
		case protowire.BytesType:
			switch num {
			case 1:
				traceLen = len(v)
				copy(s.traceID[:], v)
			case 2:
				spanLen = len(v)
				copy(s.spanID[:], v)
			case 3:
				if err := validString("trace_state", v); err != nil {
					return err
				}
			case 4:
				if len(v) != 0 && len(v) != 8 {
					idBad = "parent_span_id must be empty or 8 bytes"
				}
				s.parentID = [8]byte{}
				copy(s.parentID[:], v)
			case 5:
				if err := validString("span name", v); err != nil {
					return err
				}
				s.name = v
			case 9:
				if err := d.spanAttr(&s, v); err != nil {
					return err
				}
			case 11:
				if err := event(v); err != nil {
					return err
				}
			case 13:
				if err := link(v); err != nil {
					return err
				}
			case 15:
				if err := spanStatus(&s, v); err != nil {
					return err
				}
			}
		case protowire.VarintType:
			if num == 6 {
				k, _ := protowire.ConsumeVarint(v)
				s.kind = kindUnspecified
				if k < numKinds {
					s.kind = uint8(k)
				}
			}
		case protowire.Fixed64Type:
			switch num {
			case 7:
				s.start, _ = protowire.ConsumeFixed64(v)
			case 8:
				s.end, _ = protowire.ConsumeFixed64(v)
			}
		}
	}
	switch {
	case traceLen != 16:
		idBad = "trace_id must be 16 bytes"
	case s.traceID == [16]byte{}:
		idBad = "trace_id must not be all zero"
	case spanLen != 8:
		idBad = "span_id must be 8 bytes"
	case s.spanID == [8]byte{}:
		idBad = "span_id must not be all zero"
	}
	if idBad != "" {
		if d.res.rejected == 0 {
			d.res.reason = idBad
		}
		d.res.rejected++
		return nil
	}
	if s.dbName == nil {
		s.dbName = resDBName
	}
	d.res.spans = append(d.res.spans, s)
	return nil
}

func (d *decoder) spanAttr(s *spanRec, kv []byte) error {
	key, val, isStr, err := keyValue(kv, 5)
	if err != nil || !isStr {
		return err
	}
	if string(key) == "db.name" {
		s.dbName = val
	}
	for i, pk := range d.peerKeys {
		if s.peerPrio >= 0 && i >= int(s.peerPrio) {
			break
		}
		if string(key) == pk {
			s.peer, s.peerPrio = val, int8(min(i, 127))
			break
		}
	}
	return nil
}

func event(b []byte) error {
	for len(b) > 0 {
		num, typ, v, n, err := field(b)
		if err != nil {
			return malformed("span event: %v", err)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case 2:
			if err := validString("event name", v); err != nil {
				return err
			}
		case 3:
			if _, _, _, err := keyValue(v, 6); err != nil {
				return err
			}
		}
	}
	return nil
}

func link(b []byte) error {
	for len(b) > 0 {
		num, typ, v, n, err := field(b)
		if err != nil {
			return malformed("span link: %v", err)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case 3:
			if err := validString("link trace_state", v); err != nil {
				return err
			}
		case 4:
			if _, _, _, err := keyValue(v, 6); err != nil {
				return err
			}
		}
	}
	return nil
}

func spanStatus(s *spanRec, b []byte) error {
	for len(b) > 0 {
		num, typ, v, n, err := field(b)
		if err != nil {
			return malformed("status: %v", err)
		}
		b = b[n:]
		switch {
		case num == 2 && typ == protowire.BytesType:
			if err := validString("status message", v); err != nil {
				return err
			}
		case num == 3 && typ == protowire.VarintType:
			c, _ := protowire.ConsumeVarint(v)
			s.status = statusUnset
			if c < numStatuses {
				s.status = uint8(c)
			}
		}
	}
	return nil
}

// keyValue validates a KeyValue at the given message depth and returns its key, and its value when that is a
// string.
func keyValue(b []byte, depth int) (key, val []byte, isStr bool, err error) {
	if depth > maxDepth {
		return nil, nil, false, malformed("attributes nested too deeply")
	}
	for len(b) > 0 {
		num, typ, v, n, ferr := field(b)
		if ferr != nil {
			return nil, nil, false, malformed("attribute: %v", ferr)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			continue
		}
		switch num {
		case 1:
			if !utf8.Valid(v) {
				return nil, nil, false, malformed("attribute key is not valid UTF-8")
			}
			key = v
		case 2:
			sv, str, set, verr := anyValue(v, depth+1)
			if verr != nil {
				return nil, nil, false, verr
			}
			if set { // messages merge: a value without a oneof member keeps the previous one
				val, isStr = sv, str
			}
		}
	}
	return key, val, isStr, nil
}

// anyValue validates an AnyValue; set reports whether a oneof member was present (the last one wins), str
// whether that member is string_value, whose bytes are then returned.
func anyValue(b []byte, depth int) (sv []byte, str, set bool, err error) {
	if depth > maxDepth {
		return nil, false, false, malformed("attribute values nested too deeply")
	}
	for len(b) > 0 {
		num, typ, v, n, ferr := field(b)
		if ferr != nil {
			return nil, false, false, malformed("attribute value: %v", ferr)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			if !utf8.Valid(v) {
				return nil, false, false, malformed("attribute string value is not valid UTF-8")
			}
			sv, str, set = v, true, true
		case (num == 2 || num == 3 || num == 8) && typ == protowire.VarintType,
			num == 4 && typ == protowire.Fixed64Type,
			num == 7 && typ == protowire.BytesType:
			sv, str, set = nil, false, true
		case (num == 5 || num == 6) && typ == protowire.BytesType:
			if err := nestedValues(v, num == 6, depth+1); err != nil {
				return nil, false, false, err
			}
			sv, str, set = nil, false, true
		}
	}
	return sv, str, set, nil
}

// nestedValues validates an ArrayValue (repeated AnyValue) or a KeyValueList (repeated KeyValue).
func nestedValues(b []byte, kvlist bool, depth int) error {
	if depth > maxDepth {
		return malformed("attribute values nested too deeply")
	}
	for len(b) > 0 {
		num, typ, v, n, err := field(b)
		if err != nil {
			return malformed("attribute list: %v", err)
		}
		b = b[n:]
		if num != 1 || typ != protowire.BytesType {
			continue
		}
		if kvlist {
			_, _, _, err = keyValue(v, depth+1)
		} else {
			_, _, _, err = anyValue(v, depth+1)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
