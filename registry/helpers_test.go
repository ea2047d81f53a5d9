package registry_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	registryv1 "github.com/meshplane/meshplane/api/registry/v1"
	"github.com/meshplane/meshplane/internal/etcdtest"
	"github.com/meshplane/meshplane/registry"
)

// waitTimeout bounds every poll for a condition; generous, as the machine
// is shared and noisy.
const waitTimeout = 30 * time.Second

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

// env is one etcd, one store running its watch, and optionally a gRPC server.
type env struct {
	etcd     *etcdtest.Cluster
	cli      *clientv3.Client
	store    *registry.Store
	reg      *prometheus.Registry
	mu       sync.Mutex
	notified int
	stopRun  func()
}

func newEnv(t *testing.T, opts registry.StoreOptions) *env {
	t.Helper()
	e := &env{etcd: etcdtest.Start(t), reg: prometheus.NewRegistry()}
	e.cli = e.etcd.Client()
	opts.Registerer = e.reg
	if opts.Logger == nil {
		opts.Logger = testLogger(t)
	}
	s, err := registry.NewStore(e.cli, opts)
	if err != nil {
		t.Fatal(err)
	}
	e.store = s
	return e
}

// run starts the store's Run and waits until it is ready; it is stopped at
// cleanup or by e.stopRun.
func (e *env) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- e.store.Run(ctx, func() {
			e.mu.Lock()
			e.notified++
			e.mu.Unlock()
		})
	}()
	var once sync.Once
	e.stopRun = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run returned %v", err)
			}
		})
	}
	t.Cleanup(e.stopRun)
	waitFor(t, "store ready", e.store.Ready)
}

func (e *env) notifications() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.notified
}

// serve starts the gRPC Registry service on a loopback port and returns a
// client of it.
func (e *env) serve(t *testing.T) registryv1.RegistryClient {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	registry.NewServer(e.store, testLogger(t)).RegisterGRPC(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return registryv1.NewRegistryClient(conn)
}

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitTimeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	t.Cleanup(cancel)
	return ctx
}

// inst is a valid instance fixture.
func inst(service, address string, mods ...func(*registry.Instance)) registry.Instance {
	in := registry.Instance{
		Service:   service,
		Namespace: "default",
		Address:   address,
		Ports:     []registry.Port{{Name: "grpc", Port: 8080, Protocol: registry.ProtocolGRPC}},
	}
	for _, m := range mods {
		m(&in)
	}
	return in
}

func withTTL(ttl int64) func(*registry.Instance) {
	return func(in *registry.Instance) { in.TTLSeconds = ttl }
}

func withID(id string) func(*registry.Instance) {
	return func(in *registry.Instance) { in.ID = id }
}

// instanceIDs lists the ids in a snapshot's service, or nil.
func instanceIDs(snap registry.Snapshot, ns, service string) []string {
	for _, svc := range snap.Services {
		if svc.Namespace == ns && svc.Name == service {
			ids := make([]string, 0, len(svc.Instances))
			for _, in := range svc.Instances {
				ids = append(ids, in.ID)
			}
			return ids
		}
	}
	return nil
}

// etcdKeys lists the keys under prefix straight from etcd.
func etcdKeys(t testing.TB, cli *clientv3.Client, prefix string) []string {
	t.Helper()
	resp, err := cli.Get(ctxT(t), prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		keys = append(keys, string(kv.Key))
	}
	return keys
}

// metricValue reads one counter or gauge from the env's registry; label may
// be empty for an unlabelled metric. A missing series reads as 0.
func metricValue(t testing.TB, e *env, name, label, value string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			match := label == ""
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					match = true
				}
			}
			if !match {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}
