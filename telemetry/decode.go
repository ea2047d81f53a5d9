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

// decoder scans the protobuf encoding of an ExportTraceServiceRequest without building the message. It reads
// only the fields aggregation needs and skips the rest at wire level. Field numbers are those of
// opentelemetry-proto's trace.proto, common.proto and resource.proto.
type decoder struct {
	peerKeys []string // virtual-node peer attributes in priority order
	res      decodeResult
}

func (d *decoder) decode(b []byte, dst []spanRec) (decodeResult, error) {
	d.res = decodeResult{spans: dst[:0]}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return d.res, malformed("request: %v", protowire.ParseError(n))
		}
		b = b[n:]
		if num == 1 && typ == protowire.BytesType {
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return d.res, malformed("resource_spans: %v", protowire.ParseError(m))
			}
			if err := d.resourceSpans(v); err != nil {
				return d.res, err
			}
			b = b[m:]
			continue
		}
		m := protowire.ConsumeFieldValue(num, typ, b)
		if m < 0 {
			return d.res, malformed("request field %d: %v", num, protowire.ParseError(m))
		}
		b = b[m:]
	}
	return d.res, nil
}

// resourceSpans makes two passes: the resource may legally follow the scope spans on the wire.
func (d *decoder) resourceSpans(b []byte) error {
	var service, dbName []byte
	err := eachField(b, "resource_spans", func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != 1 || typ != protowire.BytesType {
			return nil
		}
		return eachField(v, "resource", func(num protowire.Number, typ protowire.Type, kv []byte) error {
			if num != 1 || typ != protowire.BytesType {
				return nil
			}
			key, val, isStr, err := keyValue(kv)
			if err != nil {
				return err
			}
			if isStr {
				switch string(key) {
				case "service.name":
					service = val
				case "db.name":
					dbName = val
				}
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	return eachField(b, "resource_spans", func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != 2 || typ != protowire.BytesType {
			return nil
		}
		return eachField(v, "scope_spans", func(num protowire.Number, typ protowire.Type, sp []byte) error {
			if num != 2 || typ != protowire.BytesType {
				return nil
			}
			return d.span(sp, service, dbName)
		})
	})
}

func (d *decoder) span(b []byte, service, resDBName []byte) error {
	s := spanRec{service: service, raw: b, peerPrio: -1}
	var idBad string
	var traceLen, spanLen = -1, -1
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("span: %v", protowire.ParseError(n))
		}
		b = b[n:]
		var m int
		switch {
		case (num == 1 || num == 2 || num == 4 || num == 5 || num == 9 || num == 15) && typ == protowire.BytesType:
			var v []byte
			v, m = protowire.ConsumeBytes(b)
			if m < 0 {
				return malformed("span field %d: %v", num, protowire.ParseError(m))
			}
			switch num {
			case 1:
				traceLen = len(v)
				copy(s.traceID[:], v)
			case 2:
				spanLen = len(v)
				copy(s.spanID[:], v)
			case 4:
				if len(v) != 0 && len(v) != 8 {
					idBad = "parent_span_id must be 8 bytes"
				}
				copy(s.parentID[:], v)
			case 5:
				if !utf8.Valid(v) {
					return malformed("span name is not valid UTF-8")
				}
				s.name = v
			case 9:
				if err := d.spanAttr(&s, v); err != nil {
					return err
				}
			case 15:
				if err := decodeStatus(&s, v); err != nil {
					return err
				}
			}
		case num == 6 && typ == protowire.VarintType:
			var k uint64
			k, m = protowire.ConsumeVarint(b)
			if m < 0 {
				return malformed("span kind: %v", protowire.ParseError(m))
			}
			if k < numKinds {
				s.kind = uint8(k)
			} else {
				s.kind = kindUnspecified
			}
		case (num == 7 || num == 8) && typ == protowire.Fixed64Type:
			var t uint64
			t, m = protowire.ConsumeFixed64(b)
			if m < 0 {
				return malformed("span time: %v", protowire.ParseError(m))
			}
			if num == 7 {
				s.start = t
			} else {
				s.end = t
			}
		default:
			m = protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return malformed("span field %d: %v", num, protowire.ParseError(m))
			}
		}
		b = b[m:]
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
	key, val, isStr, err := keyValue(kv)
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
			s.peer, s.peerPrio = val, int8(i)
			break
		}
	}
	return nil
}

func decodeStatus(s *spanRec, b []byte) error {
	return eachField(b, "status", func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch {
		case num == 2 && typ == protowire.BytesType:
			if !utf8.Valid(v) {
				return malformed("status message is not valid UTF-8")
			}
		case num == 3 && typ == protowire.VarintType:
			c, _ := protowire.ConsumeVarint(v)
			if c < numStatuses {
				s.status = uint8(c)
			} else {
				s.status = statusUnset
			}
		}
		return nil
	})
}

// keyValue decodes a KeyValue; val is set only for string values.
func keyValue(b []byte) (key, val []byte, isStr bool, err error) {
	err = eachField(b, "attribute", func(num protowire.Number, typ protowire.Type, v []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case 1:
			if !utf8.Valid(v) {
				return malformed("attribute key is not valid UTF-8")
			}
			key = v
		case 2:
			isStr, val = false, nil
			return eachField(v, "attribute value", func(num protowire.Number, typ protowire.Type, sv []byte) error {
				if num == 1 && typ == protowire.BytesType {
					if !utf8.Valid(sv) {
						return malformed("attribute %q value is not valid UTF-8", key)
					}
					isStr, val = true, sv
				} else {
					isStr, val = false, nil // a later oneof member wins, as in proto.Unmarshal
				}
				return nil
			})
		}
		return nil
	})
	return key, val, isStr, err
}

// eachField calls fn for every field of the message encoded in b. For length-delimited fields v is the payload;
// for varint fields v is the encoded varint; for other wire types v is the raw value.
func eachField(b []byte, what string, fn func(num protowire.Number, typ protowire.Type, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return malformed("%s: %v", what, protowire.ParseError(n))
		}
		b = b[n:]
		var v []byte
		var m int
		if typ == protowire.BytesType {
			v, m = protowire.ConsumeBytes(b)
		} else {
			m = protowire.ConsumeFieldValue(num, typ, b)
			if m >= 0 {
				v = b[:m]
			}
		}
		if m < 0 {
			return malformed("%s field %d: %v", what, num, protowire.ParseError(m))
		}
		if err := fn(num, typ, v); err != nil {
			return err
		}
		b = b[m:]
	}
	return nil
}
