package telemetry

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// TestOverload holds the aggregator back so a sender outruns the queue: it must get RESOURCE_EXHAUSTED with
// RetryInfo (gRPC) and 429 with Retry-After (HTTP), the queue must stay within its bounds, and once aggregation
// resumes every accepted span must be aggregated.
func TestOverload(t *testing.T) {
	cfg := testConfig()
	cfg.QueueSpans = 1000
	cfg.QueueBytes = 1 << 20
	h := newHarness(t, cfg)
	release := make(chan struct{})
	h.tel.beforeAggregate = func() { <-release }
	h.start(t)
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()

	conn, err := grpc.NewClient(h.tel.OTLPGRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := coltracepb.NewTraceServiceClient(conn)
	ctx := context.Background()

	const perReq = 100
	accepted, seed := 0, uint64(1)
	var refusedGRPC, refusedHTTP bool
	for i := 0; i < 50 && !(refusedGRPC && refusedHTTP); i++ {
		req := pairRequest("a", "b", perReq, seed, 0)
		seed += perReq
		if i%2 == 0 {
			_, err := client.Export(ctx, req)
			switch status.Code(err) {
			case codes.OK:
				accepted += perReq
			case codes.ResourceExhausted:
				refusedGRPC = true
				hasRetryInfo := false
				for _, d := range status.Convert(err).Details() {
					if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() > 0 {
						hasRetryInfo = true
					}
				}
				if !hasRetryInfo {
					t.Errorf("RESOURCE_EXHAUSTED without RetryInfo: %v", err)
				}
			default:
				t.Fatalf("export: %v", err)
			}
			continue
		}
		body, _ := proto.Marshal(req)
		resp, err := http.Post("http://"+h.tel.OTLPHTTPAddr()+"/v1/traces", ctProtobuf, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusOK:
			accepted += perReq
		case http.StatusTooManyRequests:
			refusedHTTP = true
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 {
				t.Errorf("429 Retry-After = %q", resp.Header.Get("Retry-After"))
			}
		default:
			t.Fatalf("POST: status %d", resp.StatusCode)
		}
	}
	if !refusedGRPC || !refusedHTTP {
		t.Fatalf("no back-pressure: grpc refused %v, http refused %v, accepted %d", refusedGRPC, refusedHTTP, accepted)
	}
	fams := h.scrape(t)
	qs, _ := metricValue(fams, "meshplane_telemetry_queue_spans", map[string]string{})
	qb, _ := metricValue(fams, "meshplane_telemetry_queue_bytes", map[string]string{})
	if qs > float64(cfg.QueueSpans) || qs != float64(accepted) {
		t.Errorf("queue holds %v spans, accepted %d, bound %d", qs, accepted, cfg.QueueSpans)
	}
	if qb <= 0 || qb > float64(cfg.QueueBytes) {
		t.Errorf("queue holds %v bytes, bound %d", qb, cfg.QueueBytes)
	}

	close(release)
	released = true
	// Once the aggregator drains the queue the same sender gets through, retrying refusals as OTLP clients do.
	for i := range 5 {
		req := pairRequest("a", "b", perReq, seed+uint64(i*perReq), 0)
		eventually(t, "export accepted after release", func() (bool, string) {
			_, err := client.Export(ctx, req)
			if status.Code(err) != codes.OK && status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("export after release: %v", err)
			}
			return err == nil, fmt.Sprint(err)
		})
		accepted += perReq
	}
	eventually(t, "every accepted span aggregated", func() (bool, string) {
		fams := h.scrape(t)
		agg, _ := metricValue(fams, "meshplane_telemetry_aggregated_spans_total", map[string]string{})
		g, _ := metricValue(fams, "meshplane_telemetry_accepted_spans_total", map[string]string{"transport": "grpc"})
		hp, _ := metricValue(fams, "meshplane_telemetry_accepted_spans_total", map[string]string{"transport": "http"})
		return agg == float64(accepted) && g+hp == float64(accepted), strconv.Itoa(int(agg)) + "/" + strconv.Itoa(accepted)
	})
	fams = h.scrape(t)
	if v, _ := metricValue(fams, "meshplane_telemetry_refused_spans_total", map[string]string{"transport": "grpc", "reason": "queue_full"}); v == 0 {
		t.Errorf("refused spans not counted")
	}
	if v, _ := metricValue(fams, "traces_service_graph_request_total", edgeLabels("a", "b", "", "false")); v != float64(accepted/2) {
		t.Errorf("edges a->b = %v, want %d", v, accepted/2)
	}
}
