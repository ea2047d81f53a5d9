package xds

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Scale measurement, not a pass/fail test of speed: set MESHPLANE_XDS_SCALE
// to a client count to run it, e.g.
//
//	MESHPLANE_XDS_SCALE=1000 go test ./xds -run TestServerScale -v
//
// 1,000 services × 10 endpoints through the real publish pipeline (default
// translator, incremental); clients in a child process, each on its own
// connection with 10 by-name EDS subscriptions (all include the first
// service); one instance of the first service changes weight. It logs the
// server's memory per client and the time from the publish to every
// client's ACK.
const (
	scaleEnv       = "MESHPLANE_XDS_SCALE"
	scaleClientEnv = "MESHPLANE_XDS_SCALE_CLIENT"
	scaleServices  = 1000
)

func scaleResources(gen uint32) *Resources {
	res := &Resources{}
	for i := range scaleServices {
		name := fmt.Sprintf("svc-%d", i)
		res.Clusters = append(res.Clusters, svCluster(name, 0))
		ports := make([]uint32, 10)
		for j := range ports {
			ports[j] = uint32(10000 + j)
		}
		if i == 0 {
			ports[0] = 20000 + gen
		}
		res.Endpoints = append(res.Endpoints, svCLA(name, ports...))
	}
	return res
}

// scaleCluster is the EDS name of service i of benchInput.
func scaleCluster(i int) string {
	return ClusterName(fmt.Sprintf("svc-%04d.bench", i), 50051)
}

func TestServerScale(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(scaleEnv))
	if n <= 0 {
		t.Skip("scale measurement: set " + scaleEnv + "=<clients> to run it")
	}
	if os.Getenv("MESHPLANE_XDS_SCALE_HEAPPROFILE") != "" {
		runtime.MemProfileRate = 1
	}
	srv, err := NewServer(ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in := benchInput(scaleServices, 10)
	g := grpc.NewServer(GRPCServerOptions()...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()
	ctx := context.Background()
	srv.publish(ctx, func() Input { return in })

	for range 5 {
		runtime.GC()
	}
	base := memSnapshot()

	cmd := exec.Command(os.Args[0], "-test.run=^TestServerScaleClients$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d", scaleClientEnv, lis.Addr(), n))
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			t.Log("client:", sc.Text())
		}
	}()

	pushes := func() float64 { return metricValue(srv.metrics.pushes) }
	deadline := time.Now().Add(10 * time.Minute)
	for metricValue(srv.metrics.connected) < float64(n) || pushes() < float64(n) {
		if time.Now().After(deadline) {
			t.Fatalf("only %v clients connected, %v pushes", metricValue(srv.metrics.connected), pushes())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Let the last ACKs land.
	for before := -1.0; before != metricValue(srv.metrics.convergence); {
		before = metricValue(srv.metrics.convergence)
		time.Sleep(500 * time.Millisecond)
	}
	// Each GC halves the stacks of goroutines using under a quarter of
	// theirs; a long-running server reaches that steady state.
	for range 5 {
		runtime.GC()
	}
	after := memSnapshot()
	if path := os.Getenv("MESHPLANE_XDS_SCALE_HEAPPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
	}
	per := func(a, b uint64) float64 { return float64(int64(a)-int64(b)) / float64(n) / 1024 }
	t.Logf("%d clients: per client heap %.1f KiB, stacks %.1f KiB, heap+stacks %.1f KiB, RSS %.1f KiB, goroutines %.2f",
		n, per(after.heap, base.heap), per(after.stack, base.stack), per(after.heap+after.stack, base.heap+base.stack),
		per(after.rss, base.rss), float64(after.goroutines-base.goroutines)/float64(n))

	// One endpoint of svc-0 changes: every client must ACK it.
	if path := os.Getenv("MESHPLANE_XDS_SCALE_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	var lat []time.Duration
	for round := range 5 {
		acked := histogramCount(srv.metrics.convergence)
		in = changeOneInstance(in, 0, 0, uint32(round+2))
		start := time.Now()
		srv.publish(ctx, func() Input { return in })
		published := time.Since(start)
		for histogramCount(srv.metrics.convergence) < acked+uint64(n) {
			if time.Since(start) > 5*time.Minute {
				t.Fatalf("only %d of %d clients ACKed", histogramCount(srv.metrics.convergence)-acked, n)
			}
			time.Sleep(time.Millisecond)
		}
		lat = append(lat, time.Since(start))
		t.Logf("round %d: publish %v, all %d clients ACKed after %v", round, published, n, lat[round])
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	t.Logf("change → all ACKed: median %v, max %v", lat[len(lat)/2], lat[len(lat)-1])
}

type mem struct{ heap, stack, rss, goroutines uint64 }

func memSnapshot() mem {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := mem{heap: ms.HeapInuse, stack: ms.StackInuse, goroutines: uint64(runtime.NumGoroutine())}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
				kb, _ := strconv.ParseUint(f[1], 10, 64)
				m.rss = kb * 1024
			}
		}
	}
	return m
}

// TestServerScaleClients is the client side of TestServerScale, run in a
// child process.
func TestServerScaleClients(t *testing.T) {
	spec := os.Getenv(scaleClientEnv)
	if spec == "" {
		t.Skip("client side of TestServerScale, run by it in a child process")
	}
	addr, ns, _ := strings.Cut(spec, ",")
	n, _ := strconv.Atoi(ns)
	for i := range n {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithReadBufferSize(4<<10), grpc.WithWriteBufferSize(4<<10), grpc.WithSharedWriteBuffer(true))
		if err != nil {
			t.Fatal(err)
		}
		st, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		names := []string{scaleCluster(0)}
		for j := 1; j < 10; j++ {
			names = append(names, scaleCluster((i*9+j)%scaleServices))
		}
		req := &discoveryv3.DiscoveryRequest{Node: grpcNode(fmt.Sprintf("c%d", i)), TypeUrl: resourcev3.EndpointType, ResourceNames: names}
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
		go func() {
			for {
				r, err := st.Recv()
				if err != nil {
					return
				}
				_ = st.Send(&discoveryv3.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResourceNames: names,
					VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()})
			}
		}()
		if (i+1)%1000 == 0 {
			fmt.Printf("%d clients started\n", i+1)
		}
	}
	select {} // until killed by the parent
}

// BenchmarkPublish measures one publish of 1,000 services × 10 endpoints
// where one endpoint changed, with no client connected: translation (here a
// hand-built fixture), marshal and hash of every resource, diff.
func BenchmarkPublish(b *testing.B) {
	var gen uint32
	srv, err := NewServer(ServerOptions{
		Translate: func(Input) (*Resources, error) { return scaleResources(gen), nil },
		Validate:  func(*Resources) error { return nil },
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	in := func() Input { return Input{} }
	srv.publish(ctx, in)
	b.ReportAllocs()
	for b.Loop() {
		gen++
		srv.publish(ctx, in)
	}
}
