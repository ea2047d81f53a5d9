package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

const forwardLinger = 200 * time.Millisecond

// fwdBatch is a run of accepted requests concatenated. Concatenating encoded ExportTraceServiceRequests yields a
// valid request holding all their resource spans (repeated fields merge), so batching copies bytes and decodes
// nothing.
type fwdBatch struct {
	buf   []byte
	spans int
}

// forwarder sends every accepted batch to an upstream OTLP/gRPC endpoint, batching, retrying with exponential
// back-off, and holding at most ForwardQueueSpans / ForwardQueueBytes; whatever it cannot hold or deliver is
// counted in meshplane_telemetry_forward_dropped_spans_total{reason}.
type forwarder struct {
	cfg  Config
	log  *slog.Logger
	conn *grpc.ClientConn

	mu       sync.Mutex
	cur      fwdBatch
	curSince time.Time
	ready    []fwdBatch
	qSpans   int
	qBytes   int64
	closing  bool

	signal  chan struct{}
	runCtx  context.Context
	abort   context.CancelFunc
	done    chan struct{}
	started bool

	dropped *prometheus.CounterVec
	sent    prometheus.Counter
	retries prometheus.Counter
}

func newForwarder(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*forwarder, error) {
	creds := insecure.NewCredentials()
	if cfg.ForwardTLS {
		creds = credentials.NewTLS(nil)
	}
	maxBackoff := cfg.ForwardMaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = 30 * time.Second
	}
	// No otelgrpc stats handler: forwarding must not produce spans of its own (no feedback loop).
	conn, err := grpc.NewClient(cfg.ForwardEndpoint,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxBackoff},
			MinConnectTimeout: 5 * time.Second,
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry: forward endpoint %q: %w", cfg.ForwardEndpoint, err)
	}
	runCtx, abort := context.WithCancel(context.Background())
	f := &forwarder{
		cfg: cfg, log: logger, conn: conn,
		signal: make(chan struct{}, 1),
		runCtx: runCtx, abort: abort,
		done: make(chan struct{}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshplane_telemetry_forward_dropped_spans_total",
			Help: "Spans not forwarded upstream, by reason (queue_full, upstream_rejected, shutdown).",
		}, []string{"reason"}),
		sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshplane_telemetry_forward_sent_spans_total",
			Help: "Spans delivered to the upstream OTLP endpoint.",
		}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshplane_telemetry_forward_retries_total",
			Help: "Upstream Export attempts that failed with a retryable error and were retried.",
		}),
	}
	for _, r := range []string{"queue_full", "upstream_rejected", "shutdown"} {
		f.dropped.WithLabelValues(r)
	}
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "meshplane_telemetry_forward_queue_spans",
		Help: "Spans waiting to be forwarded.",
	}, func() float64 { s, _ := f.queueLen(); return float64(s) })
	queuedBytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "meshplane_telemetry_forward_queue_bytes",
		Help: "Encoded bytes waiting to be forwarded.",
	}, func() float64 { _, b := f.queueLen(); return float64(b) })
	for _, c := range []prometheus.Collector{f.dropped, f.sent, f.retries, queued, queuedBytes} {
		if err := reg.Register(c); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("telemetry: register forwarder metrics: %w", err)
		}
	}
	return f, nil
}

func (f *forwarder) queueLen() (int, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.qSpans, f.qBytes
}

func (f *forwarder) start(context.Context) {
	f.mu.Lock()
	f.started = true
	f.mu.Unlock()
	go f.loop()
}

// enqueue copies one accepted request into the forwarding queue, or counts its spans as dropped.
func (f *forwarder) enqueue(buf []byte, spans int) {
	f.mu.Lock()
	switch {
	case f.closing:
		f.mu.Unlock()
		f.dropped.WithLabelValues("shutdown").Add(float64(spans))
		return
	case f.qSpans+spans > f.cfg.ForwardQueueSpans || f.qBytes+int64(len(buf)) > f.cfg.ForwardQueueBytes:
		f.mu.Unlock()
		f.dropped.WithLabelValues("queue_full").Add(float64(spans))
		return
	}
	if f.cur.spans == 0 {
		f.curSince = time.Now()
	}
	f.cur.buf = append(f.cur.buf, buf...)
	f.cur.spans += spans
	f.qSpans += spans
	f.qBytes += int64(len(buf))
	if f.cur.spans >= f.cfg.ForwardBatchSpans {
		f.sealLocked()
	}
	f.mu.Unlock()
	select {
	case f.signal <- struct{}{}:
	default:
	}
}

func (f *forwarder) sealLocked() {
	f.ready = append(f.ready, f.cur)
	f.cur = fwdBatch{}
}

// next returns the next batch to send: a full one at once, a partial one after forwardLinger (or at close).
func (f *forwarder) next() (fwdBatch, bool) {
	for {
		f.mu.Lock()
		if f.cur.spans > 0 && (f.closing || time.Since(f.curSince) >= forwardLinger) {
			f.sealLocked()
		}
		if len(f.ready) > 0 {
			b := f.ready[0]
			f.ready[0] = fwdBatch{}
			f.ready = f.ready[1:]
			f.mu.Unlock()
			return b, true
		}
		closing := f.closing
		f.mu.Unlock()
		if closing {
			return fwdBatch{}, false
		}
		select {
		case <-f.signal:
		case <-time.After(forwardLinger):
		case <-f.runCtx.Done():
		}
	}
}

func (f *forwarder) loop() {
	defer close(f.done)
	for {
		b, ok := f.next()
		if !ok {
			return
		}
		f.send(b)
		f.mu.Lock()
		f.qSpans -= b.spans
		f.qBytes -= int64(len(b.buf))
		f.mu.Unlock()
	}
}

// send delivers one batch, retrying retryable failures (OTLP specification: UNAVAILABLE, RESOURCE_EXHAUSTED,
// DEADLINE_EXCEEDED, ABORTED, CANCELLED, OUT_OF_RANGE, DATA_LOSS) with exponential back-off, honouring RetryInfo.
func (f *forwarder) send(b fwdBatch) {
	timeout := f.cfg.ForwardTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	maxBackoff := f.cfg.ForwardMaxBackoff
	if maxBackoff <= 0 {
		maxBackoff = 30 * time.Second
	}
	delay := 100 * time.Millisecond
	for {
		if f.runCtx.Err() != nil {
			f.dropped.WithLabelValues("shutdown").Add(float64(b.spans))
			return
		}
		ctx, cancel := context.WithTimeout(f.runCtx, timeout)
		var resp coltracepb.ExportTraceServiceResponse
		err := f.conn.Invoke(ctx, exportMethod, &rawMessage{buf: b.buf}, &resp)
		cancel()
		if err == nil {
			rejected := int(resp.GetPartialSuccess().GetRejectedSpans())
			rejected = min(max(rejected, 0), b.spans)
			if rejected > 0 {
				f.dropped.WithLabelValues("upstream_rejected").Add(float64(rejected))
				f.log.Warn("upstream rejected spans", "spans", rejected, "message", resp.GetPartialSuccess().GetErrorMessage())
			}
			f.sent.Add(float64(b.spans - rejected))
			return
		}
		st := status.Convert(err)
		if !retryable(st.Code()) {
			f.dropped.WithLabelValues("upstream_rejected").Add(float64(b.spans))
			f.log.Warn("upstream refused batch", "spans", b.spans, "code", st.Code().String(), "message", st.Message())
			return
		}
		f.retries.Inc()
		wait := delay
		for _, d := range st.Details() {
			if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
				wait = min(ri.GetRetryDelay().AsDuration(), maxBackoff)
			}
		}
		f.log.Debug("forward failed, retrying", "code", st.Code().String(), "in", wait)
		select {
		case <-time.After(wait):
		case <-f.runCtx.Done():
		}
		delay = min(delay*2, maxBackoff)
	}
}

func retryable(c codes.Code) bool {
	switch c {
	case codes.Canceled, codes.DeadlineExceeded, codes.Aborted, codes.OutOfRange, codes.Unavailable,
		codes.DataLoss, codes.ResourceExhausted:
		return true
	}
	return false
}

// close stops accepting, keeps sending what is queued until ctx ends, then drops the rest (counted).
func (f *forwarder) close(ctx context.Context) error {
	f.mu.Lock()
	f.closing = true
	started := f.started
	f.mu.Unlock()
	select {
	case f.signal <- struct{}{}:
	default:
	}
	var err error
	if started {
		select {
		case <-f.done:
		case <-ctx.Done():
			f.abort()
			<-f.done
			err = fmt.Errorf("telemetry: forwarder flush: %w", ctx.Err())
		}
	}
	f.abort()
	f.mu.Lock()
	left := f.cur.spans
	for _, b := range f.ready {
		left += b.spans
	}
	f.cur, f.ready = fwdBatch{}, nil
	f.qSpans, f.qBytes = 0, 0
	f.mu.Unlock()
	if left > 0 {
		f.dropped.WithLabelValues("shutdown").Add(float64(left))
	}
	if cerr := f.conn.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("telemetry: close forward connection: %w", cerr)
	}
	return err
}
