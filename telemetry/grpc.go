package telemetry

import (
	"context"
	"errors"
	"fmt"
	"strings"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	_ "google.golang.org/grpc/encoding/gzip" // OTLP exporters may compress with gzip
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// traceServiceName and exportMethod name the OTLP TraceService (opentelemetry/proto/collector/trace/v1).
const (
	traceServiceName = "opentelemetry.proto.collector.trace.v1.TraceService"
	exportMethod     = "/" + traceServiceName + "/Export"
)

// rawCodec lets the OTLP server and the forwarder handle requests as encoded bytes: the receiver scans them
// without building messages, the forwarder sends them on as they are. Anything else is plain protobuf.
type rawCodec struct{}

// rawMessage is an encoded protobuf message.
type rawMessage struct{ buf []byte }

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *rawMessage:
		return mem.BufferSlice{mem.SliceBuffer(m.buf)}, nil
	case proto.Message:
		b, err := proto.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("telemetry: marshal: %w", err)
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return nil, fmt.Errorf("telemetry: cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch m := v.(type) {
	case *rawMessage:
		m.buf = m.buf[:0]
		for _, d := range data {
			m.buf = append(m.buf, d.ReadOnlyData()...)
		}
		return nil
	case proto.Message:
		return proto.Unmarshal(data.Materialize(), m)
	}
	return fmt.Errorf("telemetry: cannot unmarshal into %T", v)
}

// exporter is the handler type of the hand-registered TraceService.
type exporter interface {
	exportGRPC(ctx context.Context, b *batch) (*coltracepb.ExportTraceServiceResponse, error)
}

func (t *Telemetry) newGRPCServer() *grpc.Server {
	// No stats handler or interceptor on purpose: the intake path is never traced, so the control plane's own
	// tracing cannot feed back into itself.
	srv := grpc.NewServer(
		grpc.ForceServerCodecV2(rawCodec{}),
		grpc.MaxRecvMsgSize(t.cfg.MaxBatchBytes),
		grpc.InTapHandle(t.tap),
	)
	srv.RegisterService(&grpc.ServiceDesc{
		ServiceName: traceServiceName,
		HandlerType: (*exporter)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Export",
			Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				tel := srv.(*Telemetry)
				b := tel.getBatch()
				m := rawMessage{buf: b.buf}
				if err := dec(&m); err != nil {
					tel.putBatch(b)
					return nil, err
				}
				b.buf = m.buf
				return srv.(exporter).exportGRPC(ctx, b)
			},
		}},
		Metadata: "opentelemetry/proto/collector/trace/v1/trace_service.proto",
	}, t)
	return srv
}

// tap admits an Export stream before its message is read, so MaxInflightRequests bounds the memory of requests
// being received. The slot is released when the stream's context ends, however the RPC ends.
func (t *Telemetry) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if info.FullMethodName != exportMethod {
		return ctx, nil
	}
	if !t.admit() {
		t.metrics.refusedRequests.WithLabelValues(transportGRPC, "too_many_inflight").Inc()
		return ctx, t.exhausted("telemetry: too many requests in flight, retry later")
	}
	context.AfterFunc(ctx, t.done1)
	return ctx, nil
}

func (t *Telemetry) exhausted(msg string) error {
	st, err := status.New(codes.ResourceExhausted, msg).
		WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(t.cfg.retryAfter())})
	if err != nil {
		return status.Error(codes.ResourceExhausted, msg)
	}
	return st.Err()
}

func (t *Telemetry) exportGRPC(ctx context.Context, b *batch) (*coltracepb.ExportTraceServiceResponse, error) {
	if t.cfg.Authenticate != nil {
		token := ""
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get("authorization"); len(v) > 0 {
				token = bearer(v[0])
			}
		}
		if err := t.cfg.Authenticate(ctx, token); err != nil {
			t.metrics.refusedRequests.WithLabelValues(transportGRPC, "unauthenticated").Inc()
			t.putBatch(b)
			return nil, status.Error(codes.Unauthenticated, "telemetry: "+err.Error())
		}
	}
	rejected, reason, err := t.ingest(b, transportGRPC)
	switch {
	case errors.Is(err, errMalformed):
		return nil, status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, errQueueFull):
		return nil, t.exhausted("telemetry: receiver queue is full, retry later")
	case errors.Is(err, errShuttingDown):
		return nil, status.Error(codes.Unavailable, "telemetry: receiver is shutting down")
	case err != nil:
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp := &coltracepb.ExportTraceServiceResponse{}
	if rejected > 0 {
		resp.PartialSuccess = &coltracepb.ExportTracePartialSuccess{RejectedSpans: int64(rejected), ErrorMessage: reason}
	}
	return resp, nil
}

// bearer extracts the token of an "Authorization: Bearer <token>" value ("" when it has another scheme).
func bearer(v string) string {
	const prefix = "bearer "
	if len(v) > len(prefix) && strings.EqualFold(v[:len(prefix)], prefix) {
		return strings.TrimSpace(v[len(prefix):])
	}
	return ""
}
