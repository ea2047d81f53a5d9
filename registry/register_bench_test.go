package registry_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	registryv1 "github.com/meshplane/meshplane/api/registry/v1"
	"github.com/meshplane/meshplane/internal/embedetcd"
	"github.com/meshplane/meshplane/registry"
)

// BenchmarkRegisterParallel registers new instances (services of 10, one
// gRPC port, TTL 300 s, as the xDS benchmark seeds them) through the gRPC
// Registry API on loopback by 256 concurrent callers over 4 connections,
// against an embedded etcd with fsync on, the store's watch running: the
// control plane's registration path, end to end. client=network reaches etcd
// over loopback gRPC as an external etcd would be; client=inprocess through
// embedetcd's in-process client, as the control plane does; and
// client=inprocess-nofsync the same without fsync, which shows what the CPU
// alone allows.
//
// regs/s is b.N over the wall time; cpu-µs/reg is the process's user+system
// CPU (getrusage) per registration, which includes the benchmark's own gRPC
// clients (≈ 10–15% of it); wal-fsync-ms is etcd's mean WAL fsync during the
// run. When the disk is slow (fsync of a few ms, other work writing to it)
// regs/s is bound by the fsyncs a registration waits for (two raft proposals,
// a lease grant and a transaction), not by CPU. Run for a fixed count, e.g.
//
//	go test ./registry -run '^$' -bench RegisterParallel -benchtime 10000x -count 3
func BenchmarkRegisterParallel(b *testing.B) {
	for _, mode := range []string{"network", "inprocess", "inprocess-nofsync"} {
		b.Run("client="+mode, func(b *testing.B) {
			clients := startRegistry(b, mode)
			var next atomic.Int64
			var failed atomic.Int64
			b.SetParallelism(128) // × GOMAXPROCS (2 here) = 256 callers
			fsyncs0, fsyncTime0 := walFsyncs(b)
			ru0, t0 := cpuTime(b), time.Now()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				for pb.Next() {
					i := int(next.Add(1) - 1)
					s, n := i%1000, i/1000 // instance-major, as the xDS benchmark seeds
					req := &registryv1.RegisterRequest{
						Service:    fmt.Sprintf("svc-%04d", s),
						Namespace:  "bench",
						Ports:      []*registryv1.Port{{Name: "grpc", Port: 8080, Protocol: registryv1.Protocol_PROTOCOL_GRPC}},
						Address:    fmt.Sprintf("10.%d.%d.%d", n, s/250, s%250+1),
						InstanceId: fmt.Sprintf("i-%d", n),
						Weight:     1,
						TtlSeconds: 300,
					}
					if _, err := clients[i%len(clients)].Register(ctx, req); err != nil {
						if failed.Add(1) == 1 {
							b.Errorf("Register: %v", err)
						}
					}
				}
			})
			b.StopTimer()
			elapsed, cpu := time.Since(t0), cpuTime(b)-ru0
			fsyncs, fsyncTime := walFsyncs(b)
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "regs/s")
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/reg")
			if n := fsyncs - fsyncs0; n > 0 {
				b.ReportMetric((fsyncTime-fsyncTime0).Seconds()*1000/float64(n), "wal-fsync-ms")
			}
			b.ReportMetric(0, "ns/op") // wall per op of 256 callers says nothing
		})
	}
}

// startRegistry runs an embedded etcd (fsync on, as in production, unless the
// mode ends in -nofsync), a store
// with its watch over the chosen client and the gRPC service on loopback,
// and returns 4 clients of it, each on its own connection.
func startRegistry(b *testing.B, mode string) []registryv1.RegistryClient {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	srv, err := embedetcd.Start(ctx, embedetcd.Config{DataDir: b.TempDir(), ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0",
		UnsafeNoFsync: strings.HasSuffix(mode, "-nofsync")})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	var cli *clientv3.Client
	switch mode {
	case "inprocess", "inprocess-nofsync":
		cli = srv.Client()
	default:
		cli, err = clientv3.New(clientv3.Config{Endpoints: srv.Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			b.Fatal(err)
		}
	}
	store, err := registry.NewStore(cli, registry.StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	runDone := make(chan struct{})
	go func() {
		defer close(runDone)
		_ = store.Run(ctx, nil)
	}()
	b.Cleanup(func() {
		cancel()
		<-runDone
		cli.Close()
	})
	waitFor(b, "store ready", store.Ready)

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	gs := grpc.NewServer()
	registry.NewServer(store, slog.New(slog.DiscardHandler)).RegisterGRPC(gs)
	go func() { _ = gs.Serve(lis) }()
	b.Cleanup(gs.Stop)
	clients := make([]registryv1.RegistryClient, 4)
	for i := range clients {
		conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		clients[i] = registryv1.NewRegistryClient(conn)
	}
	return clients
}

// walFsyncs reads etcd's WAL fsync histogram (count and total time) from
// the default Prometheus registry, where the embedded etcd registers it.
// The disk is shared with other work here: a slow fsync explains a slow run.
func walFsyncs(b *testing.B) (uint64, time.Duration) {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "etcd_disk_wal_fsync_duration_seconds" && len(mf.GetMetric()) == 1 {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), time.Duration(h.GetSampleSum() * float64(time.Second))
		}
	}
	return 0, 0
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
