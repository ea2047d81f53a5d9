package telemetry

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

const (
	ctProtobuf = "application/x-protobuf"
	ctJSON     = "application/json"
)

var errTooLarge = errors.New("telemetry: request body too large")

func (t *Telemetry) newHTTPServer() *http.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/traces", t.handleOTLPHTTP)
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

// handleOTLPHTTP implements OTLP/HTTP for traces: binary protobuf or JSON bodies, optionally gzip-compressed;
// answers in the request's encoding (OTLP specification, "OTLP/HTTP").
func (t *Telemetry) handleOTLPHTTP(w http.ResponseWriter, r *http.Request) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	isJSON := mt == ctJSON
	if !isJSON && mt != ctProtobuf {
		t.metrics.refusedRequests.WithLabelValues(transportHTTP, "unsupported_media_type").Inc()
		writeStatus(w, false, http.StatusUnsupportedMediaType, codes.InvalidArgument,
			fmt.Sprintf("telemetry: unsupported Content-Type %q, want %s or %s", mt, ctProtobuf, ctJSON))
		return
	}
	if t.cfg.Authenticate != nil {
		if err := t.cfg.Authenticate(r.Context(), bearer(r.Header.Get("Authorization"))); err != nil {
			t.metrics.refusedRequests.WithLabelValues(transportHTTP, "unauthenticated").Inc()
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeStatus(w, isJSON, http.StatusUnauthorized, codes.Unauthenticated, "telemetry: "+err.Error())
			return
		}
	}
	if !t.admit() {
		t.metrics.refusedRequests.WithLabelValues(transportHTTP, "too_many_inflight").Inc()
		w.Header().Set("Retry-After", t.retryAfterSeconds())
		writeStatus(w, isJSON, http.StatusTooManyRequests, codes.ResourceExhausted, "telemetry: too many requests in flight, retry later")
		return
	}
	defer t.done1()
	b := t.getBatch()
	var err error
	b.buf, err = t.readBody(w, r, b.buf)
	if err != nil {
		t.putBatch(b)
		switch {
		case errors.Is(err, errTooLarge):
			t.metrics.refusedRequests.WithLabelValues(transportHTTP, "too_large").Inc()
			writeStatus(w, isJSON, http.StatusRequestEntityTooLarge, codes.ResourceExhausted, err.Error())
		case errors.Is(err, errMalformed):
			t.metrics.malformed.WithLabelValues(transportHTTP).Inc()
			writeStatus(w, isJSON, http.StatusBadRequest, codes.InvalidArgument, err.Error())
		default:
			writeStatus(w, isJSON, http.StatusBadRequest, codes.InvalidArgument, "telemetry: read body: "+err.Error())
		}
		return
	}
	if isJSON {
		pb, err := jsonToProto(b.buf)
		if err != nil {
			t.metrics.malformed.WithLabelValues(transportHTTP).Inc()
			t.putBatch(b)
			writeStatus(w, true, http.StatusBadRequest, codes.InvalidArgument, err.Error())
			return
		}
		b.buf = append(b.buf[:0], pb...)
	}
	rejected, reason, err := t.ingest(b, transportHTTP)
	switch {
	case errors.Is(err, errMalformed):
		writeStatus(w, isJSON, http.StatusBadRequest, codes.InvalidArgument, err.Error())
		return
	case errors.Is(err, errQueueFull):
		w.Header().Set("Retry-After", t.retryAfterSeconds())
		writeStatus(w, isJSON, http.StatusTooManyRequests, codes.ResourceExhausted, "telemetry: receiver queue is full, retry later")
		return
	case errors.Is(err, errShuttingDown):
		w.Header().Set("Retry-After", t.retryAfterSeconds())
		writeStatus(w, isJSON, http.StatusServiceUnavailable, codes.Unavailable, "telemetry: receiver is shutting down")
		return
	case err != nil:
		writeStatus(w, isJSON, http.StatusInternalServerError, codes.Internal, err.Error())
		return
	}
	resp := &coltracepb.ExportTraceServiceResponse{}
	if rejected > 0 {
		resp.PartialSuccess = &coltracepb.ExportTracePartialSuccess{RejectedSpans: int64(rejected), ErrorMessage: reason}
	}
	writeMessage(w, isJSON, http.StatusOK, resp)
}

// retryAfterSeconds is RetryAfter as a Retry-After value: whole seconds, rounded up.
func (t *Telemetry) retryAfterSeconds() string {
	return strconv.Itoa(int((t.cfg.retryAfter() + time.Second - 1) / time.Second))
}

// readBody reads the request body into buf, inflating gzip, and enforces MaxBatchBytes on both the transferred and
// the decompressed size (a small gzip bomb is refused as soon as it inflates past the limit).
func (t *Telemetry) readBody(w http.ResponseWriter, r *http.Request, buf []byte) ([]byte, error) {
	limit := int64(t.cfg.MaxBatchBytes)
	if r.ContentLength > limit {
		return buf, fmt.Errorf("%w: %d bytes, limit %d", errTooLarge, r.ContentLength, limit)
	}
	var body io.Reader = http.MaxBytesReader(w, r.Body, limit)
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip":
		zr, err := gzip.NewReader(body)
		if err != nil {
			return buf, tooLargeOr(err, malformed("gzip: %v", err))
		}
		defer zr.Close()
		body = zr
	default:
		return buf, malformed("unsupported Content-Encoding %q", enc)
	}
	bb := bytes.NewBuffer(buf[:0])
	n, err := bb.ReadFrom(io.LimitReader(body, limit+1))
	if err != nil {
		return bb.Bytes(), tooLargeOr(err, malformed("read body: %v", err))
	}
	if n > limit {
		return bb.Bytes(), fmt.Errorf("%w: more than %d bytes after decompression", errTooLarge, limit)
	}
	return bb.Bytes(), nil
}

func tooLargeOr(err, other error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return fmt.Errorf("%w: limit %d bytes", errTooLarge, mbe.Limit)
	}
	return other
}

func writeStatus(w http.ResponseWriter, isJSON bool, httpStatus int, code codes.Code, msg string) {
	writeMessage(w, isJSON, httpStatus, &spb.Status{Code: int32(code), Message: msg})
}

func writeMessage(w http.ResponseWriter, isJSON bool, httpStatus int, m proto.Message) {
	var body []byte
	var err error
	if isJSON {
		body, err = protojson.Marshal(m)
		w.Header().Set("Content-Type", ctJSON)
	} else {
		body, err = proto.Marshal(m)
		w.Header().Set("Content-Type", ctProtobuf)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(httpStatus)
	_, _ = w.Write(body)
}
