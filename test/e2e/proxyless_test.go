package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	registryv1 "github.com/meshplane/meshplane/api/registry/v1"
	"github.com/meshplane/meshplane/registry/client"
	"github.com/meshplane/meshplane/xds"
)

func registryClient(t *testing.T, cp *controlPlane) registryv1.RegistryClient {
	t.Helper()
	conn, err := grpc.NewClient(cp.cfg.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return registryv1.NewRegistryClient(conn)
}

// registered is a backend kept registered by the registry client package,
// over a connection of its own so that the test can cut it (a crash or a
// partition: heartbeats stop, nobody deregisters).
type registered struct {
	*backend
	conn   *grpc.ClientConn
	client *client.Client
	cancel context.CancelFunc
	done   chan error
}

func register(t *testing.T, cp *controlPlane, b *backend, weight uint32) *registered {
	t.Helper()
	conn, err := grpc.NewClient(cp.cfg.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(conn, client.Registration{
		Service:   "greeter",
		Namespace: "default",
		Address:   "127.0.0.1",
		Ports:     []client.Port{{Name: "grpc", Port: 50051, TargetPort: b.port(), Protocol: client.ProtocolGRPC}},
		Locality:  client.Locality{Region: "eu", Zone: "eu-1"},
		Weight:    weight,
		Version:   "v1",
		TTL:       5 * time.Second, // the minimum, so that expiry is quick to observe
	}, client.WithBackoff(50*time.Millisecond, time.Second))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &registered{backend: b, conn: conn, client: c, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- c.Run(ctx) }()
	t.Cleanup(func() { r.stop(); _ = conn.Close() })
	select {
	case <-c.Registered():
	case err := <-r.done:
		t.Fatalf("registration of %s ended: %v", b.name, err)
	case <-time.After(30 * time.Second):
		t.Fatalf("%s not registered within 30s", b.name)
	}
	return r
}

// stop ends Run, which deregisters the instance.
func (r *registered) stop() {
	if r.cancel == nil {
		return
	}
	r.cancel()
	r.cancel = nil
	<-r.done
}

// answering waits until n calls reach exactly the named backends.
func answering(t *testing.T, c testClient, want ...string) map[string]int {
	t.Helper()
	var counts map[string]int
	waitFor(t, 60*time.Second, fmt.Sprintf("calls to reach exactly %v", want), func() error {
		var err error
		counts, err = spread(t.Context(), c, 60)
		if err != nil {
			return err
		}
		if len(counts) != len(want) {
			return fmt.Errorf("answers %v", counts)
		}
		for _, w := range want {
			if counts[w] == 0 {
				return fmt.Errorf("answers %v", counts)
			}
		}
		return nil
	})
	return counts
}

// ackedVersions is the versions node id has acked per type URL, from
// GET /api/v1/proxies; nil when the node is not connected.
func ackedVersions(t *testing.T, cp *controlPlane, id string) map[string]string {
	t.Helper()
	code, body := httpGet(t, "http://"+cp.bound.HTTP+"/api/v1/proxies")
	if code != http.StatusOK {
		t.Fatalf("proxies: %d %s", code, body)
	}
	var list struct{ Proxies []xds.ProxyStatus }
	if err := json.Unmarshal(body, &list); err != nil {
		t.Fatal(err)
	}
	for _, p := range list.Proxies {
		if p.NodeID == id {
			out := map[string]string{}
			for typ, st := range p.Types {
				out[typ] = st.AckedVersion
			}
			return out
		}
	}
	return nil
}

// TestProxylessGreeter is the spine's end-to-end story: three real
// xDS-enabled gRPC backends register through the client package, a real
// grpc-go client dialling xds:///greeter.default spreads calls over them by
// weight, and the mesh follows expiry, deregistration, a new instance and a
// control-plane restart.
func TestProxylessGreeter(t *testing.T) {
	cp := newControlPlane(t)
	cp.start()
	a := register(t, cp, startBackend(t, cp, "a"), 1)
	b := register(t, cp, startBackend(t, cp, "b"), 1)
	register(t, cp, startBackend(t, cp, "c"), 2)
	greeter := newXDSClient(t, cp, "client-1", "xds:///greeter.default")
	answering(t, greeter, "a", "b", "c")
	outer := t

	t.Run("weights 1:1:2 give a proportionate spread", func(t *testing.T) {
		const n = 2000
		counts, err := spread(t.Context(), greeter, n)
		if err != nil {
			t.Fatal(err)
		}
		// Expected shares 25/25/50 %. The ring hash places each endpoint's
		// ring entries at hashed positions, so shares wobble by a few percent
		// per address; the bounds leave room for that and for sampling.
		share := func(name string) float64 { return float64(counts[name]) / n }
		t.Logf("spread over %d calls: %v", n, counts)
		if s := share("c"); s < 0.40 || s > 0.60 {
			t.Errorf("c (weight 2) got %.2f of calls, want about 0.50", s)
		}
		for _, name := range []string{"a", "b"} {
			if s := share(name); s < 0.17 || s > 0.33 {
				t.Errorf("%s (weight 1) got %.2f of calls, want about 0.25", name, s)
			}
		}
	})

	t.Run("the port form of the name resolves too", func(t *testing.T) {
		withPort := newXDSClient(t, cp, "client-port", "xds:///greeter.default:50051")
		answering(t, withPort, "a", "b", "c")
	})

	t.Run("an instance whose heartbeats stop disappears after its TTL", func(t *testing.T) {
		_ = b.conn.Close() // heartbeats and the deregistration can no longer get through
		answering(t, greeter, "a", "c")
		b.stop()
	})

	t.Run("deregistration removes an instance at once", func(t *testing.T) {
		a.stop()
		answering(t, greeter, "c")
	})

	t.Run("a new instance is picked up", func(t *testing.T) {
		// Backends belong to the parent test: a subtest's cleanup would stop them.
		register(outer, cp, startBackend(outer, cp, "d"), 1)
		answering(t, greeter, "c", "d")
	})

	t.Run("control plane restart: clients keep working, backends re-attach", func(t *testing.T) {
		before := ackedVersions(t, cp, "client-1")
		cp.stop()
		// With the control plane gone, the data plane keeps its last config.
		counts, err := spread(t.Context(), greeter, 40)
		if err != nil || counts["c"] == 0 || counts["d"] == 0 {
			t.Fatalf("calls while the control plane is down: %v, %v", counts, err)
		}
		cp.start()
		answering(t, greeter, "c", "d")
		// Backends' xDS servers and the client are connected to the new
		// process, and the client holds the same versions as before: versions
		// are content hashes, so a reconnect brings no new version.
		waitFor(t, 60*time.Second, "client and backends to reconnect", func() error {
			for _, id := range []string{"backend-c", "backend-d"} {
				if ackedVersions(t, cp, id) == nil {
					return fmt.Errorf("%s not connected", id)
				}
			}
			after := ackedVersions(t, cp, "client-1")
			if !maps.Equal(after, before) {
				return fmt.Errorf("client-1 acked %v after the restart, %v before", after, before)
			}
			return nil
		})
		// The client's ADS stream is back: a change made after the restart reaches it.
		register(outer, cp, startBackend(outer, cp, "e"), 1)
		answering(t, greeter, "c", "d", "e")
	})
}
