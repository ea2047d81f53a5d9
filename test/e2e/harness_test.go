package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	grpcxds "google.golang.org/grpc/xds"

	"github.com/meshplane/meshplane/internal/app"
	"github.com/meshplane/meshplane/internal/embedetcd"
)

// controlPlane is the real control plane started in-process through
// app.Serve, on fixed loopback ports so that it can be stopped and started
// again on the same addresses (data planes reconnect by themselves).
type controlPlane struct {
	t      *testing.T
	cfg    app.Config
	bound  app.Bound
	cancel context.CancelFunc
	done   chan error
	log    *syncBuffer
}

// syncBuffer collects the control plane's log for failure reports.
type syncBuffer struct {
	mu  sync.Mutex
	buf []byte
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	port, err := embedetcd.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// newControlPlane picks the addresses and data dir once; start may be called
// again after stop.
func newControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	cfg := app.Defaults()
	cfg.DataDir = filepath.Join(t.TempDir(), "data")
	cfg.GRPCAddr = freeAddr(t)
	cfg.HTTPAddr = freeAddr(t)
	cfg.OTLPGRPCAddr = freeAddr(t)
	cfg.OTLPHTTPAddr = freeAddr(t)
	cfg.EtcdClientAddr = freeAddr(t)
	cfg.EtcdPeerAddr = freeAddr(t)
	cfg.XDSHoldOff = 20 * time.Millisecond
	cfg.XDSMaxDelay = 200 * time.Millisecond
	cfg.LogLevel = "debug"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	cp := &controlPlane{t: t, cfg: cfg, log: &syncBuffer{}}
	t.Cleanup(func() {
		cp.stop()
		if t.Failed() || os.Getenv("E2E_LOG") != "" {
			t.Logf("control plane log:\n%s", cp.log.String())
		}
	})
	return cp
}

func (cp *controlPlane) start() {
	cp.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan app.Bound, 1)
	cp.done = make(chan error, 1)
	cp.cancel = cancel
	go func() { cp.done <- app.Serve(ctx, cp.cfg, cp.log, func(b app.Bound) { ready <- b }) }()
	select {
	case cp.bound = <-ready:
	case err := <-cp.done:
		cp.cancel = nil
		cp.t.Fatalf("control plane did not start: %v\n%s", err, cp.log.String())
	case <-time.After(60 * time.Second):
		cp.t.Fatalf("control plane did not start within 60s\n%s", cp.log.String())
	}
	waitFor(cp.t, 30*time.Second, "control plane ready", func() error {
		resp, err := http.Get("http://" + cp.bound.HTTP + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz %d: %s", resp.StatusCode, body)
		}
		return nil
	})
}

func (cp *controlPlane) stop() {
	if cp.cancel == nil {
		return
	}
	cp.cancel()
	cp.cancel = nil
	select {
	case err := <-cp.done:
		if err != nil {
			cp.t.Errorf("control plane exited with %v", err)
		}
	case <-time.After(60 * time.Second):
		cp.t.Errorf("control plane did not stop within 60s")
	}
}

// bootstrap is a grpc-go xDS bootstrap pointing at the control plane.
func (cp *controlPlane) bootstrap(nodeID string) []byte {
	return []byte(fmt.Sprintf(`{
  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3", "ignore_resource_deletion"]}],
  "node": {"id": %q, "locality": {"region": "eu", "zone": "eu-1"}},
  "server_listener_resource_name_template": "grpc/server?xds.resource.listening_address=%%s"
}`, cp.cfg.GRPCAddr, nodeID))
}

// waitFor polls cond until it returns nil or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for {
		if err = cond(); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// backend is a real xDS-enabled gRPC server (xds.NewGRPCServer) serving the
// interop TestService; it answers UnaryCall with its name as the hostname.
type backend struct {
	name   string
	lis    net.Listener
	server *grpcxds.GRPCServer
}

type testService struct {
	testgrpc.UnimplementedTestServiceServer
	name string
}

func (s *testService) UnaryCall(context.Context, *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Hostname: s.name}, nil
}

func startBackend(t *testing.T, cp *controlPlane, name string) *backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := grpcxds.NewGRPCServer(grpc.Creds(insecure.NewCredentials()), grpcxds.BootstrapContentsForTesting(cp.bootstrap("backend-"+name)))
	if err != nil {
		t.Fatal(err)
	}
	testgrpc.RegisterTestServiceServer(srv, &testService{name: name})
	b := &backend{name: name, lis: lis, server: srv}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return b
}

func (b *backend) port() uint32 { return uint32(b.lis.Addr().(*net.TCPAddr).Port) }

// newXDSClient dials target through grpc-go's real xDS resolver.
func newXDSClient(t *testing.T, cp *controlPlane, nodeID, target string) testgrpc.TestServiceClient {
	t.Helper()
	builder, err := grpcxds.NewXDSResolverWithConfigForTesting(cp.bootstrap(nodeID))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(builder))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return testgrpc.NewTestServiceClient(conn)
}

// testClient is the interop TestService client the tests call through.
type testClient = testgrpc.TestServiceClient

// spread makes n calls and counts the answers by backend name.
func spread(ctx context.Context, c testClient, n int) (map[string]int, error) {
	counts := map[string]int{}
	for range n {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		resp, err := c.UnaryCall(cctx, &testpb.SimpleRequest{})
		cancel()
		if err != nil {
			return counts, err
		}
		counts[resp.GetHostname()]++
	}
	return counts, nil
}
