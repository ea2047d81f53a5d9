package loadgen

import (
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// Type URLs of the resources the generator subscribes to.
const (
	typeCluster  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	typeEndpoint = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	typeResource = "type.googleapis.com/envoy.service.discovery.v3.Resource"
)

// adsMethod and adsDesc describe the ADS stream without its generated client,
// so that the raw codec below carries bytes both ways.
const adsMethod = "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources"

var adsDesc = grpc.StreamDesc{StreamName: "StreamAggregatedResources", ClientStreams: true, ServerStreams: true}

// rawCodec sends pre-encoded DiscoveryRequests and receives DiscoveryResponses
// as bytes, leaving their decoding to the scanner below. It names itself
// "proto", so the server sees an ordinary application/grpc+proto stream.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case rawRequest:
		// gRPC may still hold the buffer after SendMsg returns: every request
		// is a fresh slice, never reused.
		return mem.BufferSlice{mem.SliceBuffer(m)}, nil
	case proto.Message:
		b, err := proto.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	default:
		return nil, fmt.Errorf("loadgen: cannot marshal %T", v)
	}
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	buf, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("loadgen: cannot unmarshal into %T", v)
	}
	// data is freed when Unmarshal returns: copy it into the stream's own,
	// reused buffer.
	b := (*buf)[:0]
	for _, d := range data {
		b = append(b, d.ReadOnlyData()...)
	}
	*buf = b
	return nil
}

// rawRequest is an encoded envoy.service.discovery.v3.DiscoveryRequest.
type rawRequest []byte

// requestTemplate is the part of a DiscoveryRequest that stays the same for
// every ACK on one subscription: type URL and resource names.
type requestTemplate []byte

// newRequestTemplate encodes type_url (4) and resource_names (3).
func newRequestTemplate(typeURL string, names []string) requestTemplate {
	var b []byte
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	b = protowire.AppendString(b, typeURL)
	for _, n := range names {
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendString(b, n)
	}
	return b
}

// request is the template plus version_info (1), response_nonce (5) and,
// when not nil, the encoded node (2). Field order does not matter on the wire.
func (t requestTemplate) request(node, version, nonce []byte) rawRequest {
	b := make([]byte, 0, len(t)+len(node)+len(version)+len(nonce)+16)
	b = append(b, t...)
	if node != nil {
		b = protowire.AppendTag(b, 2, protowire.BytesType)
		b = protowire.AppendBytes(b, node)
	}
	if len(version) > 0 {
		b = protowire.AppendTag(b, 1, protowire.BytesType)
		b = protowire.AppendBytes(b, version)
	}
	if len(nonce) > 0 {
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendBytes(b, nonce)
	}
	return b
}

// response is a scanned DiscoveryResponse. Its slices alias the receive
// buffer and are valid until the next receive.
type response struct {
	version, nonce, typeURL []byte
	// resources are the serialised resources (the Any values, unwrapped from
	// a discovery Resource when the server wraps them).
	resources [][]byte
}

var errTruncated = errors.New("loadgen: truncated protobuf")

// parseResponse scans a DiscoveryResponse: version_info (1), resources (2,
// Any), type_url (4), nonce (5). Other fields are skipped. r's resources
// slice is reused.
func parseResponse(b []byte, r *response) error {
	r.version, r.nonce, r.typeURL = nil, nil, nil
	r.resources = r.resources[:0]
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errTruncated
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return errTruncated
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return errTruncated
		}
		b = b[n:]
		switch num {
		case 1:
			r.version = v
		case 2:
			typeURL, value, err := parseAny(v)
			if err != nil {
				return err
			}
			if string(typeURL) == typeResource {
				if value, err = unwrapResource(value); err != nil {
					return err
				}
				if value == nil {
					continue // a name-only Resource: nothing to read
				}
			}
			r.resources = append(r.resources, value)
		case 4:
			r.typeURL = v
		case 5:
			r.nonce = v
		}
	}
	return nil
}

// parseAny returns a google.protobuf.Any's type_url (1) and value (2).
func parseAny(b []byte) (typeURL, value []byte, err error) {
	err = scanFields(b, func(num protowire.Number, v []byte) error {
		switch num {
		case 1:
			typeURL = v
		case 2:
			value = v
		}
		return nil
	})
	return typeURL, value, err
}

// unwrapResource returns the value of a discovery Resource's resource (2)
// Any, or nil when it has none.
func unwrapResource(b []byte) ([]byte, error) {
	var value []byte
	err := scanFields(b, func(num protowire.Number, v []byte) error {
		if num == 2 {
			_, val, err := parseAny(v)
			value = val
			return err
		}
		return nil
	})
	return value, err
}

// resourceName is field 1 of a Cluster (name) or a ClusterLoadAssignment
// (cluster_name), the only two kinds the generator reads.
func resourceName(b []byte) ([]byte, error) {
	var name []byte
	err := scanFields(b, func(num protowire.Number, v []byte) error {
		if num == 1 {
			name = v
		}
		return nil
	})
	return name, err
}

// clusterEDS reads a serialised Cluster's name (1) and whether its discovery
// type (2) is EDS (3): only those clusters have a ClusterLoadAssignment to
// subscribe to, as Envoy knows.
func clusterEDS(b []byte) (name []byte, eds bool, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, false, errTruncated
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, false, errTruncated
			}
			name, b = v, b[n:]
		case num == 2 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, false, errTruncated
			}
			eds, b = v == 3, b[n:]
		default:
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return nil, false, errTruncated
			}
			b = b[n:]
		}
	}
	return name, eds, nil
}

// endpointWeight finds the endpoint at address:port in a serialised
// ClusterLoadAssignment and returns its load-balancing weight: 1 when the
// endpoint carries none, 0 when the endpoint is absent.
//
// ClusterLoadAssignment.endpoints (2) → LocalityLbEndpoints.lb_endpoints (2)
// → LbEndpoint{endpoint (1) → Endpoint.address (1) → Address.socket_address
// (1) → SocketAddress{address (2), port_value (3)}; load_balancing_weight (4)
// → UInt32Value.value (1)}.
func endpointWeight(cla []byte, address string, port uint32) (uint32, error) {
	var weight uint32
	err := scanFields(cla, func(num protowire.Number, lle []byte) error {
		if num != 2 {
			return nil
		}
		return scanFields(lle, func(num protowire.Number, lbe []byte) error {
			if num != 2 {
				return nil
			}
			w, match, err := lbEndpoint(lbe, address, port)
			if match && weight == 0 {
				weight = w
			}
			return err
		})
	})
	return weight, err
}

// lbEndpoint reads one LbEndpoint: whether it is address:port, and its weight.
func lbEndpoint(b []byte, address string, port uint32) (weight uint32, match bool, err error) {
	weight = 1
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, false, errTruncated
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return 0, false, errTruncated
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, false, errTruncated
		}
		b = b[n:]
		switch num {
		case 1:
			addr, err := nested(v, 1, 1) // Endpoint.address → Address.socket_address
			if err != nil {
				return 0, false, err
			}
			a, p, err := socketAddress(addr)
			if err != nil {
				return 0, false, err
			}
			match = string(a) == address && p == port
		case 4:
			w, err := uint32Value(v)
			if err != nil {
				return 0, false, err
			}
			weight = w
		}
	}
	return weight, match, nil
}

// nested follows a path of length-delimited field numbers and returns the
// last one's bytes (nil when a step is missing).
func nested(b []byte, path ...protowire.Number) ([]byte, error) {
	for _, want := range path {
		var next []byte
		err := scanFields(b, func(num protowire.Number, v []byte) error {
			if num == want {
				next = v
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if next == nil {
			return nil, nil
		}
		b = next
	}
	return b, nil
}

// socketAddress reads SocketAddress.address (2) and port_value (3).
func socketAddress(b []byte) (address []byte, port uint32, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, 0, errTruncated
		}
		b = b[n:]
		switch {
		case num == 2 && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return nil, 0, errTruncated
			}
			address, b = v, b[n:]
		case num == 3 && typ == protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return nil, 0, errTruncated
			}
			port, b = uint32(v), b[n:]
		default:
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return nil, 0, errTruncated
			}
			b = b[n:]
		}
	}
	return address, port, nil
}

// uint32Value reads google.protobuf.UInt32Value.value (1); absent means 0.
func uint32Value(b []byte) (uint32, error) {
	var value uint32
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, errTruncated
		}
		b = b[n:]
		if num == 1 && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return 0, errTruncated
			}
			value, b = uint32(v), b[n:]
			continue
		}
		if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
			return 0, errTruncated
		}
		b = b[n:]
	}
	return value, nil
}

// scanFields calls f for every length-delimited field of b and skips the
// others.
func scanFields(b []byte, f func(num protowire.Number, v []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return errTruncated
		}
		b = b[n:]
		if typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return errTruncated
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return errTruncated
		}
		b = b[n:]
		if err := f(num, v); err != nil {
			return err
		}
	}
	return nil
}
