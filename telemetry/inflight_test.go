package telemetry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// TestInflightLimit holds one OTLP/HTTP request open mid-body: with MaxInflightRequests 1 both transports refuse
// further requests until it completes, and the slot is given back afterwards.
func TestInflightLimit(t *testing.T) {
	cfg := testConfig()
	cfg.MaxInflightRequests = 1
	h := newHarness(t, cfg)
	h.start(t)
	body, _ := proto.Marshal(pairRequest("a", "b", 4, 1, 0))

	pr, pw := io.Pipe()
	slow := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+h.tel.OTLPHTTPAddr()+"/v1/traces", pr)
		req.Header.Set("Content-Type", ctProtobuf)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			slow <- 0
			return
		}
		resp.Body.Close()
		slow <- resp.StatusCode
	}()
	if _, err := pw.Write(body[:10]); err != nil {
		t.Fatal(err)
	}
	eventually(t, "slow request admitted", func() (bool, string) {
		n := h.tel.inflight.Load()
		return n == 1, fmt.Sprint(n)
	})

	resp, err := http.Post("http://"+h.tel.OTLPHTTPAddr()+"/v1/traces", ctProtobuf, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second HTTP request: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	conn, err := grpc.NewClient(h.tel.OTLPGRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := coltracepb.NewTraceServiceClient(conn)
	if _, err := client.Export(context.Background(), pairRequest("a", "b", 4, 1, 0)); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("gRPC while full: %v, want RESOURCE_EXHAUSTED", err)
	}

	if _, err := pw.Write(body[10:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	if code := <-slow; code != http.StatusOK {
		t.Fatalf("slow request: status %d", code)
	}
	eventually(t, "slot released", func() (bool, string) {
		_, err := client.Export(context.Background(), pairRequest("a", "b", 4, 100, 0))
		return err == nil && h.tel.inflight.Load() == 0, fmt.Sprint(err, h.tel.inflight.Load())
	})
	if v, _ := metricValue(h.scrape(t), "meshplane_telemetry_refused_requests_total", map[string]string{"transport": "grpc", "reason": "too_many_inflight"}); v != 1 {
		t.Errorf("grpc too_many_inflight refusals = %v, want 1", v)
	}
}
