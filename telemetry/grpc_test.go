package telemetry

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func TestOTLPGRPCErrors(t *testing.T) {
	cfg := testConfig()
	cfg.MaxBatchBytes = 64 << 10
	h := newHarness(t, cfg)
	h.start(t)
	conn, err := grpc.NewClient(h.tel.OTLPGRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	valid, _ := proto.Marshal(pairRequest("a", "b", 2, 1, 0))
	tests := map[string]struct {
		body []byte
		code codes.Code
	}{
		"valid":      {valid, codes.OK},
		"empty":      {nil, codes.OK},
		"truncated":  {valid[:len(valid)-3], codes.InvalidArgument},
		"bad length": {[]byte{0x0a, 0xff, 0xff, 0xff, 0x0f}, codes.InvalidArgument},
		"bad utf8":   {mustMarshalBadName(t), codes.InvalidArgument},
		"oversized":  {bytes.Repeat([]byte{0x42, 0}, 40<<10), codes.ResourceExhausted},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			var resp coltracepb.ExportTraceServiceResponse
			err := conn.Invoke(context.Background(), exportMethod, &rawMessage{buf: tc.body}, &resp, grpc.ForceCodecV2(rawCodec{}))
			if got := status.Code(err); got != tc.code {
				t.Fatalf("code %v, want %v (%v)", got, tc.code, err)
			}
		})
	}
	fams := h.scrape(t)
	if v, _ := metricValue(fams, "meshplane_telemetry_malformed_requests_total", map[string]string{"transport": "grpc"}); v != 3 {
		t.Errorf("malformed grpc requests = %v, want 3", v)
	}
}

// mustMarshalBadName encodes a request whose span name is not UTF-8 (proto.Marshal refuses to, so by hand).
func mustMarshalBadName(t *testing.T) []byte {
	t.Helper()
	req := pairRequest("a", "b", 2, 1, 0)
	req.ResourceSpans[0].ScopeSpans[0].Spans[0].Name = "NAMEXX"
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(b, []byte("NAMEXX"))
	b[i+4], b[i+5] = 0xff, 0xfe
	return b
}

func TestAuthenticate(t *testing.T) {
	cfg := testConfig()
	cfg.Authenticate = func(_ context.Context, token string) error {
		if token != "secret" {
			return errors.New("bad token")
		}
		return nil
	}
	h := newHarness(t, cfg)
	h.start(t)
	conn, err := grpc.NewClient(h.tel.OTLPGRPCAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := coltracepb.NewTraceServiceClient(conn)
	req := pairRequest("a", "b", 2, 1, 0)
	body, _ := proto.Marshal(req)
	for _, tok := range []string{"", "wrong", "secret"} {
		ctx := context.Background()
		if tok != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
		}
		_, err := client.Export(ctx, req)
		want := codes.Unauthenticated
		if tok == "secret" {
			want = codes.OK
		}
		if status.Code(err) != want {
			t.Errorf("grpc token %q: %v, want %v", tok, err, want)
		}
		hreq, _ := http.NewRequest(http.MethodPost, "http://"+h.tel.OTLPHTTPAddr()+"/v1/traces", bytes.NewReader(body))
		hreq.Header.Set("Content-Type", ctProtobuf)
		if tok != "" {
			hreq.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(hreq)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		wantHTTP := http.StatusUnauthorized
		if tok == "secret" {
			wantHTTP = http.StatusOK
		}
		if resp.StatusCode != wantHTTP {
			t.Errorf("http token %q: status %d, want %d", tok, resp.StatusCode, wantHTTP)
		}
	}
}

func TestNewRejects(t *testing.T) {
	reg := prometheus.NewRegistry()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	bad := testConfig()
	bad.QueueSpans = 0
	if _, err := New(bad, logger, reg); err == nil || !strings.Contains(err.Error(), "QueueSpans") {
		t.Errorf("invalid config: %v", err)
	}
	if _, err := New(testConfig(), nil, reg); err == nil {
		t.Error("nil logger accepted")
	}
	if _, err := New(testConfig(), logger, nil); err == nil {
		t.Error("nil registerer accepted")
	}
	cfg := testConfig()
	cfg.ForwardEndpoint = "127.0.0.1:1"
	if _, err := New(cfg, logger, reg); err != nil {
		t.Fatalf("first New: %v", err)
	}
	if _, err := New(cfg, logger, reg); err == nil {
		t.Error("second New on the same registry: metrics registered twice without error")
	}
	// A Telemetry that was never started closes cleanly.
	tel, err := New(testConfig(), logger, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if err := tel.Close(context.Background()); err != nil {
		t.Errorf("Close before Start: %v", err)
	}
}
