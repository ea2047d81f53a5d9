package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// Transports, as used in the transport label of the intake metrics.
const (
	transportGRPC = "grpc"
	transportHTTP = "http"
)

var (
	errQueueFull    = errors.New("telemetry: queue full")
	errShuttingDown = errors.New("telemetry: shutting down")
)

// batch is one accepted request on its way from a receiver to the aggregator. Batches are pooled: buf and spans
// keep their capacity.
type batch struct {
	buf   []byte
	spans []spanRec
}

// Telemetry is the OTLP intake, aggregation, trace store and forwarder. Build it with New, then Start; Close
// drains it.
type Telemetry struct {
	cfg     Config
	log     *slog.Logger
	agg     *aggregator
	store   *traceStore
	fwd     *forwarder
	metrics *intakeMetrics
	now     func() time.Time
	pool    sync.Pool

	inflight atomic.Int64 // requests being received or decoded

	qmu     sync.Mutex
	qSpans  int
	qBytes  int64
	closed  bool
	queue   chan *batch
	started bool
	done    chan struct{}

	grpcSrv *grpc.Server
	grpcLis net.Listener
	httpSrv *http.Server
	httpLis net.Listener

	closeOnce sync.Once
	closeErr  error

	// beforeAggregate, when set (tests only), runs before each batch is aggregated.
	beforeAggregate func()
}

// New validates cfg and builds the telemetry subsystem, registering its metrics on reg. Nothing listens until
// Start.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer) (*Telemetry, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		return nil, errors.New("telemetry: nil logger")
	}
	if reg == nil {
		return nil, errors.New("telemetry: nil prometheus registerer")
	}
	t := &Telemetry{
		cfg:   cfg,
		log:   logger,
		agg:   newAggregator(cfg),
		store: newTraceStore(cfg.TraceStoreSpans, cfg.TraceStoreBytes),
		now:   time.Now,
		queue: make(chan *batch, cfg.QueueSpans+1),
		done:  make(chan struct{}),
	}
	t.pool.New = func() any { return &batch{} }
	var err error
	if t.metrics, err = newIntakeMetrics(reg); err != nil {
		return nil, err
	}
	if cfg.ForwardEndpoint != "" {
		if t.fwd, err = newForwarder(cfg, logger.With("subcomponent", "forwarder"), reg); err != nil {
			return nil, err
		}
	}
	if err := reg.Register(&collector{t: t, d: newDescs()}); err != nil {
		if t.fwd != nil {
			_ = t.fwd.close(context.Background())
		}
		return nil, fmt.Errorf("telemetry: register metrics: %w", err)
	}
	return t, nil
}

// Start binds the OTLP listeners (port 0 picks a free port; the log line gives the bound address) and starts
// aggregation and forwarding. The listeners stop at Close, not when ctx ends.
func (t *Telemetry) Start(ctx context.Context) error {
	if t.cfg.OTLPGRPCAddr != "" {
		lis, err := net.Listen("tcp", t.cfg.OTLPGRPCAddr)
		if err != nil {
			return fmt.Errorf("telemetry: listen otlp grpc %s: %w", t.cfg.OTLPGRPCAddr, err)
		}
		t.grpcLis = lis
	}
	if t.cfg.OTLPHTTPAddr != "" {
		lis, err := net.Listen("tcp", t.cfg.OTLPHTTPAddr)
		if err != nil {
			if t.grpcLis != nil {
				_ = t.grpcLis.Close()
				t.grpcLis = nil
			}
			return fmt.Errorf("telemetry: listen otlp http %s: %w", t.cfg.OTLPHTTPAddr, err)
		}
		t.httpLis = lis
	}
	t.qmu.Lock()
	t.started = true
	t.qmu.Unlock()
	go t.run()
	if t.fwd != nil {
		t.fwd.start(ctx)
	}
	if t.grpcLis != nil {
		t.grpcSrv = t.newGRPCServer()
		go func() {
			if err := t.grpcSrv.Serve(t.grpcLis); err != nil {
				t.log.Error("otlp grpc receiver stopped", "err", err)
			}
		}()
		t.log.Info("otlp grpc receiver listening", "addr", t.grpcLis.Addr().String())
	}
	if t.httpLis != nil {
		t.httpSrv = t.newHTTPServer()
		go func() {
			if err := t.httpSrv.Serve(t.httpLis); !errors.Is(err, http.ErrServerClosed) {
				t.log.Error("otlp http receiver stopped", "err", err)
			}
		}()
		t.log.Info("otlp http receiver listening", "addr", t.httpLis.Addr().String())
	}
	return nil
}

// OTLPGRPCAddr is the bound OTLP/gRPC address ("" before Start or when disabled).
func (t *Telemetry) OTLPGRPCAddr() string {
	if t.grpcLis == nil {
		return ""
	}
	return t.grpcLis.Addr().String()
}

// OTLPHTTPAddr is the bound OTLP/HTTP address ("" before Start or when disabled).
func (t *Telemetry) OTLPHTTPAddr() string {
	if t.httpLis == nil {
		return ""
	}
	return t.httpLis.Addr().String()
}

// Close stops the receivers, aggregates everything already accepted, and flushes the forwarder, all within ctx.
// Later calls return the first call's result.
func (t *Telemetry) Close(ctx context.Context) error {
	t.closeOnce.Do(func() { t.closeErr = t.close(ctx) })
	return t.closeErr
}

func (t *Telemetry) close(ctx context.Context) error {
	var errs []error
	if t.httpSrv != nil {
		if err := t.httpSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: stop otlp http: %w", err))
		}
	}
	if t.grpcSrv != nil {
		stopped := make(chan struct{})
		go func() { t.grpcSrv.GracefulStop(); close(stopped) }()
		select {
		case <-stopped:
		case <-ctx.Done():
			t.grpcSrv.Stop()
			<-stopped
		}
	}
	t.qmu.Lock()
	wasClosed, started := t.closed, t.started
	if !t.closed {
		t.closed = true
		close(t.queue)
	}
	t.qmu.Unlock()
	if !wasClosed && started {
		select {
		case <-t.done:
		case <-ctx.Done():
			errs = append(errs, fmt.Errorf("telemetry: drain queue: %w", ctx.Err()))
		}
	}
	if t.fwd != nil {
		if err := t.fwd.close(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// accept queues a decoded batch, or refuses it when the queue would exceed its bounds. A batch is always admitted
// into an empty queue, so one request larger than QueueSpans still gets through (MaxBatchBytes bounds it).
func (t *Telemetry) accept(b *batch) error {
	n, size := len(b.spans), int64(len(b.buf))
	t.qmu.Lock()
	defer t.qmu.Unlock()
	if t.closed || !t.started {
		return errShuttingDown
	}
	if t.qSpans > 0 && (t.qSpans+n > t.cfg.QueueSpans || t.qBytes+size > t.cfg.QueueBytes) {
		return errQueueFull
	}
	t.qSpans += n
	t.qBytes += size
	t.queue <- b // never blocks: the channel holds QueueSpans+1 batches, each of at least one span
	return nil
}

// admit counts one more request in flight, or reports false when MaxInflightRequests are already.
func (t *Telemetry) admit() bool {
	if t.inflight.Add(1) > int64(t.cfg.MaxInflightRequests) {
		t.inflight.Add(-1)
		return false
	}
	return true
}

func (t *Telemetry) done1() { t.inflight.Add(-1) }

// queueLen reports the spans and bytes accepted but not yet aggregated.
func (t *Telemetry) queueLen() (int, int64) {
	t.qmu.Lock()
	defer t.qmu.Unlock()
	return t.qSpans, t.qBytes
}

func (t *Telemetry) run() {
	defer close(t.done)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case b, ok := <-t.queue:
			if !ok {
				return
			}
			t.process(b)
		case <-tick.C:
			t.agg.expire(t.now())
		}
	}
}

func (t *Telemetry) process(b *batch) {
	if t.beforeAggregate != nil {
		t.beforeAggregate()
	}
	t.agg.consume(b.spans, t.now())
	if t.store != nil {
		t.store.add(b.spans)
	}
	if t.fwd != nil {
		t.fwd.enqueue(b.buf, len(b.spans))
	}
	t.qmu.Lock()
	t.qSpans -= len(b.spans)
	t.qBytes -= int64(len(b.buf))
	t.qmu.Unlock()
	t.putBatch(b)
}

func (t *Telemetry) getBatch() *batch {
	b := t.pool.Get().(*batch)
	b.buf = b.buf[:0]
	b.spans = b.spans[:0]
	return b
}

func (t *Telemetry) putBatch(b *batch) {
	if cap(b.buf) > 4<<20 { // do not pin rare huge buffers
		b.buf = nil
	}
	clear(b.spans[:cap(b.spans)]) // drop references into buf
	t.pool.Put(b)
}

// ingest decodes a request held in b.buf and queues it. It returns the number of spans rejected (partial
// success) with the reason, or an error: errMalformed, errQueueFull or errShuttingDown.
func (t *Telemetry) ingest(b *batch, transport string) (rejected int, reason string, err error) {
	d := decoder{peerKeys: t.agg.peerKeys}
	res, err := d.decode(b.buf, b.spans)
	b.spans = res.spans
	if err != nil {
		t.metrics.malformed.WithLabelValues(transport).Inc()
		t.putBatch(b)
		return 0, "", err
	}
	if res.rejected > 0 {
		t.metrics.refused.WithLabelValues(transport, "invalid_span").Add(float64(res.rejected))
	}
	n := len(res.spans)
	if n == 0 {
		t.putBatch(b)
		return res.rejected, res.reason, nil
	}
	if err := t.accept(b); err != nil {
		reason := "queue_full"
		if errors.Is(err, errShuttingDown) {
			reason = "shutting_down"
		}
		t.metrics.refused.WithLabelValues(transport, reason).Add(float64(n))
		t.putBatch(b)
		return 0, "", err
	}
	t.metrics.accepted.WithLabelValues(transport).Add(float64(n))
	return res.rejected, res.reason, nil
}
