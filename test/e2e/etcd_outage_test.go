package e2e

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	registryv1 "github.com/meshplane/meshplane/api/registry/v1"
	"github.com/meshplane/meshplane/internal/etcdtest"
)

// TestEtcdOutage runs the control plane against an external etcd that goes
// away mid-test: proxies keep their config, registrations fail fast with
// UNAVAILABLE, readiness drops, and everything catches up when etcd returns.
func TestEtcdOutage(t *testing.T) {
	etcd := etcdtest.Start(t)
	cp := newControlPlane(t)
	cp.cfg.EtcdEndpoints = etcd.Endpoints()
	cp.cfg.EtcdRequestTimeout = time.Second
	cp.start()
	rc := registryClient(t, cp)
	register := func(b *backend) error {
		_, err := rc.Register(t.Context(), &registryv1.RegisterRequest{
			Service: "greeter", Namespace: "default", Address: "127.0.0.1",
			Ports:      []*registryv1.Port{{Name: "grpc", Port: 50051, TargetPort: b.port(), Protocol: registryv1.Protocol_PROTOCOL_GRPC}},
			TtlSeconds: 300,
		})
		return err
	}
	a := startBackend(t, cp, "a")
	if err := register(a); err != nil {
		t.Fatal(err)
	}
	c := newXDSClient(t, cp, "client-outage", "xds:///greeter.default")
	waitFor(t, 60*time.Second, "backend a answers", func() error {
		counts, err := spread(t.Context(), c, 5)
		if err != nil || counts["a"] != 5 {
			return fmt.Errorf("counts %v err %v", counts, err)
		}
		return nil
	})

	etcd.Stop()
	b := startBackend(t, cp, "b")
	start := time.Now()
	err := register(b)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("register while etcd is down: got %v, want UNAVAILABLE", err)
	}
	// Fail fast means within the configured request timeout, not a hang on the
	// client's own deadline; the bound is generous for a loaded machine.
	if took := time.Since(start); took > 15*time.Second {
		t.Fatalf("register while etcd is down took %s", took)
	}
	waitFor(t, 30*time.Second, "readyz to turn 503", func() error {
		resp, err := http.Get("http://" + cp.bound.HTTP + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	counts, err := spread(t.Context(), c, 20)
	if err != nil || counts["a"] != 20 {
		t.Fatalf("proxies must keep their last config while etcd is down: %v %v", counts, err)
	}

	etcd.Restart()
	waitFor(t, 60*time.Second, "registration to succeed again", func() error { return register(b) })
	waitFor(t, 60*time.Second, "backend b to be picked up", func() error {
		counts, err := spread(t.Context(), c, 30)
		if err != nil {
			return err
		}
		if counts["a"] == 0 || counts["b"] == 0 {
			return errors.New(fmt.Sprint("counts ", counts))
		}
		return nil
	})
}
