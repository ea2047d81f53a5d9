package harness

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	registryv1 "github.com/meshplane/meshplane/api/registry/v1"
	"github.com/meshplane/meshplane/xds"
)

// Registry layout of the benchmark: service s is "svc-%04d" in namespace
// "bench" with one gRPC port; instance i of service s listens on
// 10.<s/256>.<s%256>.<i+1>:8080 and has id "i-<i>". The marker is instance 0
// of service 0, the service every scoped client watches.
const (
	benchNamespace = "bench"
	benchPort      = 8080
	markerService  = 0
	markerInstance = 0
)

func serviceName(s int) string { return fmt.Sprintf("svc-%04d", s) }
func instanceID(i int) string  { return fmt.Sprintf("i-%d", i) }
func instanceAddr(s, i int) string {
	return fmt.Sprintf("10.%d.%d.%d", s>>8, s&255, i+1)
}

// clusterNames is every service's EDS cluster, by the translator's own
// naming function.
func clusterNames(services int) []string {
	names := make([]string, services)
	for s := range services {
		names[s] = xds.ClusterName(serviceName(s)+"."+benchNamespace, benchPort)
	}
	return names
}

func registerRequest(s, i int, weight uint32, ttl int64) *registryv1.RegisterRequest {
	return &registryv1.RegisterRequest{
		Service:    serviceName(s),
		Namespace:  benchNamespace,
		Ports:      []*registryv1.Port{{Name: "grpc", Port: benchPort, Protocol: registryv1.Protocol_PROTOCOL_GRPC}},
		Address:    instanceAddr(s, i),
		InstanceId: instanceID(i),
		Weight:     weight,
		TtlSeconds: ttl,
	}
}

// registry is a pool of Registry clients over a few connections.
type registry struct {
	conns   []*grpc.ClientConn
	clients []registryv1.RegistryClient
}

func dialRegistry(addr string, conns int) (*registry, error) {
	r := &registry{}
	for range conns {
		cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			r.close()
			return nil, fmt.Errorf("harness: dial registry: %w", err)
		}
		r.conns = append(r.conns, cc)
		r.clients = append(r.clients, registryv1.NewRegistryClient(cc))
	}
	return r, nil
}

func (r *registry) close() {
	for _, c := range r.conns {
		_ = c.Close()
	}
}

// forEach runs f for every (service, instance) with concurrency workers and
// returns the wall time and the number of failed calls (and the first
// error).
func (r *registry) forEach(ctx context.Context, cfg Config, f func(ctx context.Context, c registryv1.RegistryClient, s, i int) error) (time.Duration, int, error) {
	type job struct{ s, i int }
	jobs := make(chan job, cfg.RegConcurrency)
	var (
		failed   atomic.Int64
		firstErr error
		errOnce  sync.Once
		wg       sync.WaitGroup
	)
	start := time.Now()
	for w := range cfg.RegConcurrency {
		c := r.clients[w%len(r.clients)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
				err := f(cctx, c, j.s, j.i)
				cancel()
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { firstErr = err })
				}
			}
		}()
	}
	// Instance-major order spreads concurrent writes over services, as
	// workloads starting across a fleet would.
feed:
	for i := range cfg.Instances {
		for s := range cfg.Services {
			select {
			case jobs <- job{s, i}:
			case <-ctx.Done():
				break feed
			}
		}
	}
	close(jobs)
	wg.Wait()
	return time.Since(start), int(failed.Load()), firstErr
}

// seed registers every instance with weight 1.
func (r *registry) seed(ctx context.Context, cfg Config) (time.Duration, int, error) {
	return r.forEach(ctx, cfg, func(ctx context.Context, c registryv1.RegistryClient, s, i int) error {
		_, err := c.Register(ctx, registerRequest(s, i, 1, cfg.TTL))
		return err
	})
}

// heartbeat refreshes every instance's lease.
func (r *registry) heartbeat(ctx context.Context, cfg Config) (time.Duration, int, error) {
	return r.forEach(ctx, cfg, func(ctx context.Context, c registryv1.RegistryClient, s, i int) error {
		_, err := c.Heartbeat(ctx, &registryv1.HeartbeatRequest{Namespace: benchNamespace, Service: serviceName(s), InstanceId: instanceID(i)})
		return err
	})
}

// setMarker re-registers the marker instance with a new weight: the one
// change every client must receive.
func (r *registry) setMarker(ctx context.Context, cfg Config, weight uint32) error {
	_, err := r.clients[0].Register(ctx, registerRequest(markerService, markerInstance, weight, cfg.TTL))
	if err != nil {
		return fmt.Errorf("harness: change the marker instance: %w", err)
	}
	return nil
}
