package telemetry

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Environment of the sender child process of BenchmarkIngestProc.
const (
	envSender = "MESHPLANE_BENCH_SENDER" // grpc or http
	envAddr   = "MESHPLANE_BENCH_ADDR"
	envN      = "MESHPLANE_BENCH_N" // batches to send
)

// TestBenchSender is the sending half of BenchmarkIngestProc, run in a child process so the server's CPU can be
// measured on its own. Without the environment it has nothing to do.
func TestBenchSender(t *testing.T) {
	kind, addr := os.Getenv(envSender), os.Getenv(envAddr)
	if kind == "" {
		t.Skip("only runs as the child process of BenchmarkIngestProc")
	}
	n, err := strconv.Atoi(os.Getenv(envN))
	if err != nil {
		t.Fatal(err)
	}
	reqs := benchRequests(256)
	send := grpcSender(t, addr)
	if kind == "http" {
		send = httpSender(addr)
	}
	fmt.Println("start")
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				for send(reqs[i%int64(len(reqs))]) != nil {
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkIngestProc runs the senders in a child process (this test binary, TestBenchSender) and reports the
// server's own CPU per span next to the client's.
func BenchmarkIngestProc(b *testing.B) {
	for _, kind := range []string{"grpc", "http"} {
		b.Run(kind, func(b *testing.B) {
			cfg := Defaults()
			cfg.OTLPGRPCAddr, cfg.OTLPHTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
			tel, err := New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), prometheus.NewRegistry())
			if err != nil {
				b.Fatal(err)
			}
			if err := tel.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			defer tel.Close(context.Background())
			addr := tel.OTLPGRPCAddr()
			if kind == "http" {
				addr = tel.OTLPHTTPAddr()
			}
			cmd := exec.Command(os.Args[0], "-test.run=^TestBenchSender$", "-test.count=1")
			cmd.Env = append(os.Environ(), envSender+"="+kind, envAddr+"="+addr, envN+"="+strconv.Itoa(b.N), "GOMAXPROCS=2")
			out, err := cmd.StdoutPipe()
			if err != nil {
				b.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			sc := bufio.NewScanner(out)
			for sc.Scan() && sc.Text() != "start" {
			}
			cpu0 := cpuTime()
			b.ResetTimer()
			start := time.Now()
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
			serverCPU := cpuTime() - cpu0
			_, _ = io.Copy(io.Discard, out)
			if err := cmd.Wait(); err != nil {
				b.Fatalf("sender: %v", err)
			}
			ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			clientCPU := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
			b.ReportMetric(float64(want)/elapsed.Seconds(), "spans/s")
			b.ReportMetric(float64(serverCPU.Nanoseconds())/float64(want), "server-cpu-ns/span")
			b.ReportMetric(float64(clientCPU.Nanoseconds())/float64(want), "client-cpu-ns/span")
		})
	}
}
