package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"
)

// Config configures the telemetry subsystem. Build it with Defaults and adjust fields; New calls Validate.
type Config struct {
	// OTLPGRPCAddr is the OTLP/gRPC listen address (host:port). Port 0 picks a free port. Empty disables it.
	OTLPGRPCAddr string `json:"otlpGrpcAddr"`
	// OTLPHTTPAddr is the OTLP/HTTP listen address (host:port). Port 0 picks a free port. Empty disables it.
	OTLPHTTPAddr string `json:"otlpHttpAddr"`

	// QueueSpans bounds the spans accepted but not yet aggregated. Must be > 0. A request that would exceed it is
	// refused with RESOURCE_EXHAUSTED / 429 and a retry hint.
	QueueSpans int `json:"queueSpans"`
	// QueueBytes bounds the encoded bytes of batches accepted but not yet aggregated. Must be > 0.
	QueueBytes int64 `json:"queueBytes"`
	// MaxBatchBytes is the largest accepted request body in bytes, after gzip decompression. Must be > 0.
	// Bigger requests get 413 / RESOURCE_EXHAUSTED.
	MaxBatchBytes int `json:"maxBatchBytes"`
	// MaxInflightRequests bounds the requests being received and decoded at once, over both transports; further
	// ones are refused like a full queue. Must be > 0. With MaxBatchBytes it bounds the memory of requests not yet
	// queued (MaxInflightRequests × MaxBatchBytes at worst).
	MaxInflightRequests int `json:"maxInflightRequests"`
	// RetryAfter is the back-off hint sent with refusals (Retry-After header rounded up to whole seconds,
	// gRPC RetryInfo). Zero means 1s.
	RetryAfter time.Duration `json:"retryAfter"`

	// PairingWait is how long a client or server span waits for its partner before the edge expires (and becomes
	// a virtual-node edge when it names a peer). Must be > 0. The collector's servicegraph default is 2s.
	PairingWait time.Duration `json:"pairingWait"`
	// PairingMaxPending bounds the unpaired edges held while waiting. Must be > 0. Spans beyond it are counted in
	// meshplane_telemetry_servicegraph_dropped_spans_total.
	PairingMaxPending int `json:"pairingMaxPending"`
	// VirtualNodePeerAttributes are the client-span attributes, in priority order, that name an uninstrumented
	// peer. Nil means the collector's defaults (peer.service, db.name, db.system) plus server.address.
	VirtualNodePeerAttributes []string `json:"virtualNodePeerAttributes"`

	// MaxEdgeSeries bounds the distinct (client, server, connection_type, failed) series. Must be > 0. Further
	// edges fold into one series whose labels are all OverflowLabel.
	MaxEdgeSeries int `json:"maxEdgeSeries"`
	// MaxSpanSeries bounds the distinct (service, span name, kind, status) RED series. Must be > 0.
	MaxSpanSeries int `json:"maxSpanSeries"`
	// GraphWindow is the longest window /api/v1/graph answers for (?window=); the graph keeps that much history in
	// 10-second slots. Must be at least 10s. Default 15m.
	GraphWindow time.Duration `json:"graphWindow"`

	// TraceStoreSpans bounds the spans kept in the recent-trace store (oldest evicted first). Zero disables the
	// store.
	TraceStoreSpans int `json:"traceStoreSpans"`
	// TraceStoreBytes bounds the encoded span bytes kept in the trace store. Must be > 0 when the store is on.
	TraceStoreBytes int64 `json:"traceStoreBytes"`

	// ForwardEndpoint is an upstream OTLP/gRPC endpoint (host:port) that receives every accepted batch. Empty
	// disables forwarding.
	ForwardEndpoint string `json:"forwardEndpoint"`
	// ForwardTLS dials ForwardEndpoint with TLS and the system roots; false (the default) sends plaintext, as
	// suits a collector on loopback or inside the cluster.
	ForwardTLS bool `json:"forwardTLS"`
	// ForwardQueueSpans bounds the spans waiting to be forwarded; overflow is dropped and counted. Must be > 0
	// when forwarding.
	ForwardQueueSpans int `json:"forwardQueueSpans"`
	// ForwardQueueBytes bounds the encoded bytes waiting to be forwarded. Must be > 0 when forwarding.
	ForwardQueueBytes int64 `json:"forwardQueueBytes"`
	// ForwardBatchSpans is the target number of spans per upstream request. Must be > 0 when forwarding.
	ForwardBatchSpans int `json:"forwardBatchSpans"`
	// ForwardTimeout bounds one upstream Export call. Zero means 10s.
	ForwardTimeout time.Duration `json:"forwardTimeout"`
	// ForwardMaxBackoff caps the exponential retry back-off (starting at 100ms). Zero means 30s.
	ForwardMaxBackoff time.Duration `json:"forwardMaxBackoff"`

	// Authenticate, when set, is called with the bearer token of every OTLP request ("" when none was sent);
	// an error refuses the request with UNAUTHENTICATED / 401. Nil leaves the receivers open.
	Authenticate func(ctx context.Context, bearerToken string) error `json:"-"`
}

// Defaults returns the configuration used by `controlplane serve`.
func Defaults() Config {
	return Config{
		OTLPGRPCAddr:        "127.0.0.1:4317",
		OTLPHTTPAddr:        "127.0.0.1:4318",
		QueueSpans:          64 * 1024,
		QueueBytes:          64 << 20,
		MaxBatchBytes:       8 << 20,
		MaxInflightRequests: 32,
		RetryAfter:          time.Second,
		PairingWait:         2 * time.Second,
		PairingMaxPending:   100_000,
		MaxEdgeSeries:       2_000,
		MaxSpanSeries:       10_000,
		GraphWindow:         15 * time.Minute,
		TraceStoreSpans:     200_000,
		TraceStoreBytes:     128 << 20,
		ForwardQueueSpans:   100_000,
		ForwardQueueBytes:   64 << 20,
		ForwardBatchSpans:   8_192,
		ForwardTimeout:      10 * time.Second,
		ForwardMaxBackoff:   30 * time.Second,
	}
}

// Validate reports every invalid field, each by name.
func (c Config) Validate() error {
	var errs []error
	checkAddr := func(name, v string) {
		if v == "" {
			return
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: %s %q: %w", name, v, err))
		}
	}
	positive := func(name string, v int64) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("telemetry: %s must be > 0, got %d", name, v))
		}
	}
	checkAddr("OTLPGRPCAddr", c.OTLPGRPCAddr)
	checkAddr("OTLPHTTPAddr", c.OTLPHTTPAddr)
	positive("QueueSpans", int64(c.QueueSpans))
	positive("QueueBytes", c.QueueBytes)
	positive("MaxBatchBytes", int64(c.MaxBatchBytes))
	positive("MaxInflightRequests", int64(c.MaxInflightRequests))
	positive("PairingWait", int64(c.PairingWait))
	positive("PairingMaxPending", int64(c.PairingMaxPending))
	positive("MaxEdgeSeries", int64(c.MaxEdgeSeries))
	positive("MaxSpanSeries", int64(c.MaxSpanSeries))
	if c.RetryAfter < 0 {
		errs = append(errs, fmt.Errorf("telemetry: RetryAfter must be >= 0, got %s", c.RetryAfter))
	}
	if c.GraphWindow < slotWidth {
		errs = append(errs, fmt.Errorf("telemetry: GraphWindow must be >= %s, got %s", slotWidth, c.GraphWindow))
	}
	if c.TraceStoreSpans < 0 {
		errs = append(errs, fmt.Errorf("telemetry: TraceStoreSpans must be >= 0, got %d", c.TraceStoreSpans))
	}
	if c.TraceStoreSpans > 0 {
		positive("TraceStoreBytes", c.TraceStoreBytes)
	}
	if c.ForwardEndpoint != "" {
		checkAddr("ForwardEndpoint", c.ForwardEndpoint)
		positive("ForwardQueueSpans", int64(c.ForwardQueueSpans))
		positive("ForwardQueueBytes", c.ForwardQueueBytes)
		positive("ForwardBatchSpans", int64(c.ForwardBatchSpans))
	}
	if c.ForwardTimeout < 0 || c.ForwardMaxBackoff < 0 {
		errs = append(errs, errors.New("telemetry: ForwardTimeout and ForwardMaxBackoff must be >= 0"))
	}
	return errors.Join(errs...)
}

func (c Config) retryAfter() time.Duration {
	if c.RetryAfter <= 0 {
		return time.Second
	}
	return c.RetryAfter
}

func (c Config) peerAttributes() []string {
	if c.VirtualNodePeerAttributes != nil {
		return c.VirtualNodePeerAttributes
	}
	return []string{"peer.service", "db.name", "db.system", "server.address"}
}
