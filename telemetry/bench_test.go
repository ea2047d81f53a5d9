package telemetry

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	resourcepb "go.opentelemetry.io/proto/otlp/resource/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
)

const benchBatch = 512

func intAttr(k string, v int64) *commonpb.KeyValue {
	return &commonpb.KeyValue{Key: k, Value: &commonpb.AnyValue{Value: &commonpb.AnyValue_IntValue{IntValue: v}}}
}

// benchRequests builds n distinct requests of benchBatch spans that look like mesh traffic: 8 services calling
// each other (client/server pairs in one trace), some internal spans, a few attributes each, ~3% errors.
func benchRequests(n int) [][]byte {
	services := []string{"frontend", "checkout", "payments", "cart", "catalog", "shipping", "email", "currency"}
	out := make([][]byte, n)
	seq := uint64(1)
	for r := range n {
		byService := map[string][]*tracepb.Span{}
		for len(byService["frontend"])+countAll(byService) < benchBatch {
			seq++
			tid := make([]byte, 16)
			binary.BigEndian.PutUint64(tid, seq*0x9e3779b97f4a7c15)
			binary.BigEndian.PutUint64(tid[8:], seq)
			id := func(k uint64) []byte {
				b := make([]byte, 8)
				binary.BigEndian.PutUint64(b, seq<<8|k)
				return b
			}
			c, s := services[seq%8], services[(seq/8+1)%8]
			if c == s {
				s = services[(seq+3)%8]
			}
			start := uint64(1_700_000_000_000_000_000) + seq*1_000_000
			st := &tracepb.Status{}
			if seq%32 == 0 {
				st.Code = tracepb.Status_STATUS_CODE_ERROR
				st.Message = "upstream failed"
			}
			route := fmt.Sprintf("/api/%s/{id}", s)
			byService[c] = append(byService[c], &tracepb.Span{
				TraceId: tid, SpanId: id(1), Name: "POST " + route, Kind: tracepb.Span_SPAN_KIND_CLIENT,
				StartTimeUnixNano: start, EndTimeUnixNano: start + 4_000_000 + seq%7_000_000, Status: st,
				Attributes: []*commonpb.KeyValue{strAttr("http.request.method", "POST"), strAttr("url.full", "http://"+s+route),
					strAttr("peer.service", s), strAttr("server.address", s+".default"), intAttr("http.response.status_code", 200)},
			})
			byService[s] = append(byService[s], &tracepb.Span{
				TraceId: tid, SpanId: id(2), ParentSpanId: id(1), Name: "POST " + route, Kind: tracepb.Span_SPAN_KIND_SERVER,
				StartTimeUnixNano: start + 500_000, EndTimeUnixNano: start + 3_500_000 + seq%6_000_000, Status: st,
				Attributes: []*commonpb.KeyValue{strAttr("http.request.method", "POST"), strAttr("http.route", route),
					intAttr("http.response.status_code", 200), strAttr("user_agent.original", "grpc-go/1.85.0")},
			})
			if seq%2 == 0 {
				byService[s] = append(byService[s], &tracepb.Span{
					TraceId: tid, SpanId: id(3), ParentSpanId: id(2), Name: "db.query", Kind: tracepb.Span_SPAN_KIND_INTERNAL,
					StartTimeUnixNano: start + 600_000, EndTimeUnixNano: start + 1_600_000,
					Attributes: []*commonpb.KeyValue{strAttr("db.operation.name", "SELECT")},
				})
			}
		}
		req := &coltracepb.ExportTraceServiceRequest{}
		for _, svc := range services {
			if len(byService[svc]) == 0 {
				continue
			}
			req.ResourceSpans = append(req.ResourceSpans, &tracepb.ResourceSpans{
				Resource: &resourcepb.Resource{Attributes: []*commonpb.KeyValue{strAttr("service.name", svc),
					strAttr("service.namespace", "default"), strAttr("telemetry.sdk.language", "go"),
					strAttr("telemetry.sdk.name", "opentelemetry"), strAttr("telemetry.sdk.version", "1.47.0")}},
				ScopeSpans: []*tracepb.ScopeSpans{{Scope: &commonpb.InstrumentationScope{Name: "otelhttp", Version: "0.71.0"},
					Spans: byService[svc]}},
			})
		}
		b, err := proto.Marshal(req)
		if err != nil {
			panic(err)
		}
		out[r] = b
	}
	return out
}

func countAll(m map[string][]*tracepb.Span) int {
	n := 0
	for k, v := range m {
		if k != "frontend" {
			n += len(v)
		}
	}
	return n
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func maxRSSMiB() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Maxrss) / 1024
}

// BenchmarkAggregate measures the pipeline without the network: scan the protobuf, aggregate span metrics and
// the service graph, store the spans. One op = one batch of 512 spans.
func BenchmarkAggregate(b *testing.B) {
	reqs := benchRequests(64)
	cfg := Defaults()
	a := newAggregator(cfg)
	st := newTraceStore(cfg.TraceStoreSpans, cfg.TraceStoreBytes)
	d := decoder{peerKeys: cfg.peerAttributes()}
	var spans []spanRec
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	n := 0
	for i := 0; b.Loop(); i++ {
		res, err := d.decode(reqs[i%len(reqs)], spans)
		if err != nil {
			b.Fatal(err)
		}
		spans = res.spans
		a.consume(spans, now)
		st.add(spans)
		n += len(spans)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/span")
}

// BenchmarkDecode measures the protobuf scanner alone.
func BenchmarkDecode(b *testing.B) {
	reqs := benchRequests(16)
	d := decoder{peerKeys: Defaults().peerAttributes()}
	var spans []spanRec
	b.ReportAllocs()
	n := 0
	for i := 0; b.Loop(); i++ {
		res, err := d.decode(reqs[i%len(reqs)], spans)
		if err != nil {
			b.Fatal(err)
		}
		spans = res.spans
		n += len(spans)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/span")
}

// BenchmarkDecodeReference is proto.Unmarshal of the same requests, for comparison with the scanner.
func BenchmarkDecodeReference(b *testing.B) {
	reqs := benchRequests(16)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		var req coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(reqs[i%len(reqs)], &req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*benchBatch), "ns/span")
}

// benchIngest runs senders concurrent senders over loopback against a started Telemetry (graph, span metrics
// and trace store on) and reports spans/s, process CPU per span (client included) and memory.
func benchIngest(b *testing.B, send func(tel *Telemetry) func(body []byte) error) {
	reqs := benchRequests(256)
	cfg := Defaults()
	cfg.OTLPGRPCAddr, cfg.OTLPHTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	reg := prometheus.NewRegistry()
	tel, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), reg)
	if err != nil {
		b.Fatal(err)
	}
	if err := tel.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer tel.Close(context.Background())
	sender := send(tel)
	const senders = 4
	var next atomic.Int64
	var refused atomic.Int64
	runtime.GC()
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				for sender(reqs[i%int64(len(reqs))]) != nil { // back-pressure: retry
					refused.Add(1)
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	want := uint64(b.N) * benchBatch
	for {
		tel.agg.mu.Lock()
		got := tel.agg.stats.spans
		tel.agg.mu.Unlock()
		if got >= want {
			break
		}
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cpu := cpuTime() - cpu0
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(want)/elapsed.Seconds(), "spans/s")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(want), "cpu-ns/span")
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	b.ReportMetric(maxRSSMiB(), "maxrss-MiB")
	b.ReportMetric(float64(refused.Load()), "refusals")
	total := 0
	for _, r := range reqs {
		total += len(r)
	}
	b.ReportMetric(float64(total)/float64(len(reqs)*benchBatch), "B/span")
}

// grpcSender sends pre-encoded requests over OTLP/gRPC without re-encoding them.
func grpcSender(tb testing.TB, addr string) func([]byte) error {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return func(body []byte) error {
		var resp coltracepb.ExportTraceServiceResponse
		return conn.Invoke(context.Background(), exportMethod, &rawMessage{buf: body}, &resp, grpc.ForceCodecV2(rawCodec{}))
	}
}

// httpSender posts pre-encoded requests over OTLP/HTTP (protobuf) with keep-alive.
func httpSender(addr string) func([]byte) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	url := "http://" + addr + "/v1/traces"
	return func(body []byte) error {
		resp, err := client.Post(url, ctProtobuf, bytes.NewReader(body))
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	}
}

// BenchmarkIngestGRPC sends pre-encoded 512-span requests over OTLP/gRPC on loopback.
func BenchmarkIngestGRPC(b *testing.B) {
	benchIngest(b, func(tel *Telemetry) func([]byte) error { return grpcSender(b, tel.OTLPGRPCAddr()) })
}

// BenchmarkIngestHTTP sends pre-encoded 512-span requests over OTLP/HTTP (protobuf) on loopback.
func BenchmarkIngestHTTP(b *testing.B) {
	benchIngest(b, func(tel *Telemetry) func([]byte) error { return httpSender(tel.OTLPHTTPAddr()) })
}
