package telemetry

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// upstream is a second, independent OTLP receiver: a real gRPC TraceService server built from the generated code.
type upstream struct {
	coltracepb.UnimplementedTraceServiceServer
	mu    sync.Mutex
	spans int
	ids   map[string]int
}

func (u *upstream) Export(_ context.Context, req *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				u.spans++
				u.ids[fmt.Sprintf("%x%x", s.TraceId, s.SpanId)]++
			}
		}
	}
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

func (u *upstream) counts() (int, int) {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.spans, len(u.ids)
}

// TestForwardDownAndBack forwards to an upstream that is down: spans queue up to the bound, the overflow is
// counted as dropped, and everything queued is delivered once the upstream comes up.
func TestForwardDownAndBack(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // upstream down: nothing listens there yet

	cfg := testConfig()
	cfg.ForwardEndpoint = addr
	cfg.ForwardQueueSpans = 1000
	cfg.ForwardBatchSpans = 300
	cfg.ForwardMaxBackoff = 200 * time.Millisecond
	h := newHarness(t, cfg)
	h.start(t)

	conn, err := grpc.NewClient(h.tel.OTLPGRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := coltracepb.NewTraceServiceClient(conn)
	send := func(n int, seed uint64) {
		t.Helper()
		for i := range n {
			if _, err := client.Export(context.Background(), pairRequest("fe", "be", 100, seed+uint64(i)*100, 0)); err != nil {
				t.Fatalf("export: %v", err)
			}
		}
	}
	queued := func() (float64, float64) {
		fams := h.scrape(t)
		q, _ := metricValue(fams, "meshplane_telemetry_forward_queue_spans", map[string]string{})
		d, _ := metricValue(fams, "meshplane_telemetry_forward_dropped_spans_total", map[string]string{"reason": "queue_full"})
		return q, d
	}

	send(5, 1)
	eventually(t, "500 spans queued for forwarding", func() (bool, string) {
		q, d := queued()
		return q == 500 && d == 0, fmt.Sprintf("queued %v dropped %v", q, d)
	})
	send(8, 100_000) // 5 more fit (1000), 3 overflow
	eventually(t, "queue full and overflow counted", func() (bool, string) {
		q, d := queued()
		return q == 1000 && d == 300, fmt.Sprintf("queued %v dropped %v", q, d)
	})

	up := &upstream{ids: map[string]int{}}
	srv := grpc.NewServer()
	coltracepb.RegisterTraceServiceServer(srv, up)
	lis, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("upstream comes back on %s: %v", addr, err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	eventually(t, "queued spans delivered", func() (bool, string) {
		n, distinct := up.counts()
		q, _ := queued()
		return n == 1000 && q == 0, fmt.Sprintf("upstream got %d (%d distinct), queue %v", n, distinct, q)
	})
	if n, distinct := up.counts(); distinct != n {
		t.Errorf("upstream got %d spans but %d distinct", n, distinct)
	}
	fams := h.scrape(t)
	if v, _ := metricValue(fams, "meshplane_telemetry_forward_sent_spans_total", map[string]string{}); v != 1000 {
		t.Errorf("forward_sent_spans_total = %v, want 1000", v)
	}
	if v, _ := metricValue(fams, "meshplane_telemetry_forward_retries_total", map[string]string{}); v == 0 {
		t.Errorf("no retry counted while upstream was down")
	}

	// Live forwarding once the upstream is up.
	send(2, 900_000)
	eventually(t, "live batch delivered and acknowledged", func() (bool, string) {
		n, _ := up.counts()
		q, _ := queued()
		sent, _ := metricValue(h.scrape(t), "meshplane_telemetry_forward_sent_spans_total", map[string]string{})
		// Wait for the acknowledgement too: stopping the upstream between receiving and answering would make
		// the forwarder retry (at-least-once) until Close gives up.
		return n == 1200 && q == 0 && sent == 1200, fmt.Sprintf("upstream got %d, queued %v, sent %v", n, q, sent)
	})
}

// refusingUpstream answers every Export with a fixed error or partial success.
type refusingUpstream struct {
	coltracepb.UnimplementedTraceServiceServer
	err      error
	rejected int64
}

func (u *refusingUpstream) Export(context.Context, *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	if u.err != nil {
		return nil, u.err
	}
	return &coltracepb.ExportTraceServiceResponse{PartialSuccess: &coltracepb.ExportTracePartialSuccess{RejectedSpans: u.rejected, ErrorMessage: "too old"}}, nil
}

// TestForwardDropsAreCounted covers the other ways spans fail to reach the upstream: a non-retryable refusal, a
// partial success, and spans still queued when Close gives up. Each is counted under its reason.
func TestForwardDropsAreCounted(t *testing.T) {
	tests := map[string]struct {
		up         *refusingUpstream // nil: no upstream at all
		wantReason string
		want       float64
		wantSent   float64
	}{
		"non-retryable refusal":  {&refusingUpstream{err: status.Error(codes.InvalidArgument, "no")}, "upstream_rejected", 100, 0},
		"partial success":        {&refusingUpstream{rejected: 3}, "upstream_rejected", 3, 97},
		"upstream down at close": {nil, "shutdown", 100, 0},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			if tc.up != nil {
				srv := grpc.NewServer()
				coltracepb.RegisterTraceServiceServer(srv, tc.up)
				go func() { _ = srv.Serve(lis) }()
				defer srv.Stop()
			} else {
				lis.Close()
			}
			cfg := testConfig()
			cfg.ForwardEndpoint = lis.Addr().String()
			cfg.ForwardBatchSpans = 100
			h := newHarness(t, cfg)
			if err := h.tel.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			conn, err := grpc.NewClient(h.tel.OTLPGRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := coltracepb.NewTraceServiceClient(conn).Export(context.Background(), pairRequest("fe", "be", 100, 1, 0)); err != nil {
				t.Fatal(err)
			}
			dropped := func() float64 {
				v, _ := metricValue(h.scrape(t), "meshplane_telemetry_forward_dropped_spans_total", map[string]string{"reason": tc.wantReason})
				return v
			}
			if tc.up == nil {
				eventually(t, "spans queued for forwarding", func() (bool, string) {
					q, _ := metricValue(h.scrape(t), "meshplane_telemetry_forward_queue_spans", map[string]string{})
					return q == 100, fmt.Sprint(q)
				})
				ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
				defer cancel()
				if err := h.tel.Close(ctx); err == nil {
					t.Error("Close reported success although spans could not be forwarded")
				}
			}
			eventually(t, "drops counted", func() (bool, string) {
				d := dropped()
				return d == tc.want, fmt.Sprint(d)
			})
			if sent, _ := metricValue(h.scrape(t), "meshplane_telemetry_forward_sent_spans_total", map[string]string{}); sent != tc.wantSent {
				t.Errorf("sent %v, want %v", sent, tc.wantSent)
			}
			if tc.up != nil {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := h.tel.Close(ctx); err != nil {
					t.Errorf("Close: %v", err)
				}
			}
		})
	}
}
