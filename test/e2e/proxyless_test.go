package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	registryv1 "github.com/meshplane/meshplane/api/registry/v1"
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

func TestSmokeRawRegister(t *testing.T) {
	cp := newControlPlane(t)
	cp.start()
	rc := registryClient(t, cp)
	backends := []*backend{startBackend(t, cp, "a"), startBackend(t, cp, "b"), startBackend(t, cp, "c")}
	weights := []uint32{1, 1, 2}
	for i, b := range backends {
		_, err := rc.Register(t.Context(), &registryv1.RegisterRequest{
			Service: "greeter", Namespace: "default", Address: "127.0.0.1",
			Ports:  []*registryv1.Port{{Name: "grpc", Port: 50051, TargetPort: b.port(), Protocol: registryv1.Protocol_PROTOCOL_GRPC}},
			Weight: weights[i], TtlSeconds: 300,
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	c := newXDSClient(t, cp, "client-1", "xds:///greeter.default")
	var counts map[string]int
	waitFor(t, 60*time.Second, "all three backends answer", func() error {
		var err error
		counts, err = spread(t.Context(), c, 60)
		if err != nil {
			return err
		}
		if len(counts) != 3 {
			return fmt.Errorf("answers %v", counts)
		}
		return nil
	})
	counts, err := spread(context.Background(), c, 800)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("spread over 800 calls: %v", counts)
}
