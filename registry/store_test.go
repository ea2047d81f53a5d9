package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshplane/meshplane/registry"
)

const instancesPrefix = "/meshplane/v1/instances/"

func TestRegisterWritesKeyBoundToLease(t *testing.T) {
	e := newEnv(t, registry.StoreOptions{})
	ctx := ctxT(t)
	res, err := e.store.Register(ctx, inst("api", "10.0.0.1", func(in *registry.Instance) {
		in.Namespace = ""
		in.Labels = map[string]string{"app": "api"}
		in.Ports = append(in.Ports, registry.Port{Name: "http", Port: 80, TargetPort: 8081, Protocol: registry.ProtocolHTTP})
	}))
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != "10.0.0.1-8080-8081" || res.TTLSeconds != registry.DefaultTTLSeconds || !res.Created || res.Revision == 0 {
		t.Fatalf("Register = %+v, want derived id 10.0.0.1-8080-8081, default TTL, created", res)
	}
	resp, err := e.cli.Get(ctx, instancesPrefix+"default/api/"+res.ID)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("get key: %v %v", resp, err)
	}
	kv := resp.Kvs[0]
	ttl, err := e.cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
	if err != nil || ttl.TTL <= 0 || ttl.GrantedTTL != registry.DefaultTTLSeconds {
		t.Fatalf("lease of key: %+v %v, want live lease with TTL %d", ttl, err, registry.DefaultTTLSeconds)
	}
	var got registry.Instance
	if err := json.Unmarshal(kv.Value, &got); err != nil {
		t.Fatal(err)
	}
	want := registry.Instance{
		ID: res.ID, Service: "api", Namespace: "default", Address: "10.0.0.1",
		Ports: []registry.Port{
			{Name: "http", Port: 80, TargetPort: 8081, Protocol: registry.ProtocolHTTP},
			{Name: "grpc", Port: 8080, Protocol: registry.ProtocolGRPC},
		},
		Weight: 1, Labels: map[string]string{"app": "api"}, Health: registry.HealthServing, TTLSeconds: 15,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("stored instance (-want +got):\n%s", d)
	}

	// Registering again updates in place: same key, same lease.
	res2, err := e.store.Register(ctx, inst("api", "10.0.0.1", withID(res.ID), func(in *registry.Instance) { in.Version = "v2" }))
	if err != nil {
		t.Fatal(err)
	}
	if res2.Created || res2.ID != res.ID {
		t.Fatalf("second Register = %+v, want update of %s", res2, res.ID)
	}
	resp, _ = e.cli.Get(ctx, instancesPrefix+"default/api/"+res.ID)
	if resp.Kvs[0].Lease != kv.Lease {
		t.Errorf("re-register with same TTL moved the key to lease %x, want %x", resp.Kvs[0].Lease, kv.Lease)
	}

	// A new TTL moves the key to a new lease and revokes the old one.
	if _, err := e.store.Register(ctx, inst("api", "10.0.0.1", withID(res.ID), withTTL(30))); err != nil {
		t.Fatal(err)
	}
	resp, _ = e.cli.Get(ctx, instancesPrefix+"default/api/"+res.ID)
	if resp.Kvs[0].Lease == kv.Lease {
		t.Fatal("TTL change kept the old lease")
	}
	old, err := e.cli.TimeToLive(ctx, clientv3.LeaseID(kv.Lease))
	if err != nil || old.TTL != -1 {
		t.Errorf("old lease after TTL change: %+v %v, want revoked (TTL -1)", old, err)
	}
	leases, err := e.cli.Leases(ctx)
	if err != nil || len(leases.Leases) != 1 {
		t.Errorf("live leases = %v (%v), want exactly 1", leases, err)
	}
	if got := metricValue(t, e, "meshplane_registry_registrations_total", "result", "created"); got != 1 {
		t.Errorf("registrations_total{result=created} = %v, want 1", got)
	}
}

func TestLeaseExpiryRemovesInstanceAndReRegisterWorks(t *testing.T) {
	t.Parallel() // mostly waits on leases and restarts
	e := newEnv(t, registry.StoreOptions{})
	e.run(t)
	ctx := ctxT(t)
	res, err := e.store.Register(ctx, inst("expiring", "10.0.0.2", withTTL(registry.MinTTLSeconds)))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "instance in snapshot", func() bool {
		return slices.Equal(instanceIDs(e.store.Snapshot(), "default", "expiring"), []string{res.ID})
	})
	if got := metricValue(t, e, "meshplane_registry_instances", "", ""); got != 1 {
		t.Errorf("instances gauge = %v, want 1", got)
	}
	// No heartbeats: the lease expires and etcd deletes the key.
	waitFor(t, "instance to expire", func() bool {
		return instanceIDs(e.store.Snapshot(), "default", "expiring") == nil
	})
	if keys := etcdKeys(t, e.cli, instancesPrefix); len(keys) != 0 {
		t.Fatalf("keys after expiry: %v", keys)
	}
	if _, err := e.store.Heartbeat(ctx, "default", "expiring", res.ID); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Heartbeat after expiry = %v, want ErrNotFound", err)
	}
	if got := metricValue(t, e, "meshplane_registry_services", "", ""); got != 0 {
		t.Errorf("services gauge after expiry = %v, want 0", got)
	}

	res2, err := e.store.Register(ctx, inst("expiring", "10.0.0.2", withTTL(registry.MinTTLSeconds)))
	if err != nil {
		t.Fatal(err)
	}
	if res2.ID != res.ID || !res2.Created {
		t.Fatalf("re-register = %+v, want created with the same id %s", res2, res.ID)
	}
	waitFor(t, "re-registered instance in snapshot", func() bool {
		return slices.Equal(instanceIDs(e.store.Snapshot(), "default", "expiring"), []string{res.ID})
	})
	if ttl, err := e.store.Heartbeat(ctx, "default", "expiring", res.ID); err != nil || ttl <= 0 {
		t.Fatalf("Heartbeat = %d, %v; want positive TTL", ttl, err)
	}
}

func TestHeartbeatKeepsInstanceAlive(t *testing.T) {
	t.Parallel() // mostly waits on leases and restarts
	e := newEnv(t, registry.StoreOptions{})
	ctx := ctxT(t)
	res, err := e.store.Register(ctx, inst("beating", "10.0.0.3", withTTL(registry.MinTTLSeconds)))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e.cli.Get(ctx, instancesPrefix+"default/beating/"+res.ID)
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatal(resp, err)
	}
	lease := clientv3.LeaseID(resp.Kvs[0].Lease)
	// Heartbeat for 8 s, well past the 5 s TTL; the key must survive throughout.
	for range 8 {
		if _, err := e.store.Heartbeat(ctx, "", "beating", res.ID); err != nil {
			t.Fatalf("Heartbeat: %v", err)
		}
		ttl, err := e.cli.TimeToLive(ctx, lease)
		if err != nil || ttl.TTL <= 0 {
			t.Fatalf("lease after heartbeat: %+v %v", ttl, err)
		}
		sleep(ctx, 1)
	}
	if keys := etcdKeys(t, e.cli, instancesPrefix); len(keys) != 1 {
		t.Fatalf("keys = %v, want the heartbeated instance", keys)
	}
}

func TestConcurrentRegistrationsOfSameInstance(t *testing.T) {
	t.Parallel() // its own etcds
	// With the watch cache running, writes start from its hint (and often a
	// stale one, as the racers change the key under it); without, from a Get.
	for name, withCache := range map[string]bool{"no watch cache": false, "watch cache": true} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, registry.StoreOptions{})
			if withCache {
				e.run(t)
			}
			registerConcurrently(t, e.store, e.cli)
		})
	}
}

// registerConcurrently registers one instance from 16 goroutines, half of
// them with another TTL so that the lease-swap path races too, and checks
// that exactly one reports Created and etcd ends with one key on one live
// lease.
func registerConcurrently(t *testing.T, store *registry.Store, cli *clientv3.Client) {
	t.Helper()
	ctx := ctxT(t)
	const n = 16
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		results []registry.RegisterResult
		errs    []error
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ttl := int64(15)
			if i%2 == 1 {
				ttl = 20
			}
			res, err := store.Register(ctx, inst("racy", "10.0.0.4", withTTL(ttl)))
			mu.Lock()
			defer mu.Unlock()
			results = append(results, res)
			errs = append(errs, err)
		}()
	}
	wg.Wait()
	created := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Register #%d: %v", i, err)
		}
		if results[i].Created {
			created++
		}
		if results[i].ID != results[0].ID {
			t.Fatalf("ids differ: %s vs %s", results[i].ID, results[0].ID)
		}
	}
	if created != 1 {
		t.Errorf("%d registrations report Created, want exactly 1", created)
	}
	keys := etcdKeys(t, cli, instancesPrefix)
	if len(keys) != 1 {
		t.Fatalf("keys = %v, want exactly one", keys)
	}
	checkOneLiveLease(t, cli, keys[0])
}

// checkOneLiveLease checks that etcd holds exactly one live lease and that
// it holds only key.
func checkOneLiveLease(t *testing.T, cli *clientv3.Client, key string) {
	t.Helper()
	ctx := ctxT(t)
	leases, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	live := 0
	for _, l := range leases.Leases {
		ttl, err := cli.TimeToLive(ctx, l.ID, clientv3.WithAttachedKeys())
		if err != nil {
			t.Fatal(err)
		}
		if ttl.TTL > 0 {
			live++
			if len(ttl.Keys) != 1 || string(ttl.Keys[0]) != key {
				t.Errorf("live lease %x holds %q, want %q", l.ID, ttl.Keys, key)
			}
		}
	}
	if live != 1 {
		t.Errorf("%d live leases, want exactly 1", live)
	}
}

func TestSetHealthAndDeregister(t *testing.T) {
	e := newEnv(t, registry.StoreOptions{})
	e.run(t)
	ctx := ctxT(t)
	res, err := e.store.Register(ctx, inst("svc", "10.0.0.5"))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := e.cli.Get(ctx, instancesPrefix+"default/svc/"+res.ID)
	rev, err := e.store.SetHealth(ctx, "default", "svc", res.ID, registry.HealthDraining)
	if err != nil || rev <= res.Revision {
		t.Fatalf("SetHealth = %d, %v; want a newer revision than %d", rev, err, res.Revision)
	}
	after, _ := e.cli.Get(ctx, instancesPrefix+"default/svc/"+res.ID)
	if after.Kvs[0].Lease != before.Kvs[0].Lease {
		t.Error("SetHealth changed the key's lease")
	}
	waitFor(t, "draining in snapshot", func() bool {
		svc, _, err := e.store.Service(ctx, "default", "svc")
		return err == nil && svc.Instances[0].Health == registry.HealthDraining && svc.Instances[0].ModRevision == rev
	})
	if _, err := e.store.SetHealth(ctx, "default", "svc", "nope", registry.HealthServing); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("SetHealth(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := e.store.SetHealth(ctx, "default", "svc", res.ID, "SICK"); err == nil {
		t.Error("SetHealth(SICK) succeeded")
	}

	if _, err := e.store.Deregister(ctx, "default", "svc", res.ID); err != nil {
		t.Fatal(err)
	}
	if keys := etcdKeys(t, e.cli, instancesPrefix); len(keys) != 0 {
		t.Fatalf("keys after Deregister: %v", keys)
	}
	leases, _ := e.cli.Leases(ctx)
	if len(leases.Leases) != 0 {
		t.Errorf("leases after Deregister: %v, want none", leases.Leases)
	}
	if _, err := e.store.Deregister(ctx, "default", "svc", res.ID); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("second Deregister = %v, want ErrNotFound", err)
	}
	waitFor(t, "service gone", func() bool {
		_, _, err := e.store.Service(ctx, "default", "svc")
		return errors.Is(err, registry.ErrNotFound)
	})
}

func TestRegisterInvalidWritesNothing(t *testing.T) {
	e := newEnv(t, registry.StoreOptions{})
	ctx := ctxT(t)
	_, err := e.store.Register(ctx, inst("bad_name", "10.0.0.6"))
	ve, ok := registry.AsValidationError(err)
	if !ok || ve.Violations[0].Field != "service" {
		t.Fatalf("Register(bad_name) = %v, want a validation error on service", err)
	}
	if keys := etcdKeys(t, e.cli, "/"); len(keys) != 0 {
		t.Errorf("keys after invalid Register: %v", keys)
	}
	leases, _ := e.cli.Leases(ctx)
	if len(leases.Leases) != 0 {
		t.Errorf("leases after invalid Register: %v", leases.Leases)
	}
	if got := metricValue(t, e, "meshplane_registry_registrations_total", "result", "invalid"); got != 1 {
		t.Errorf("registrations_total{result=invalid} = %v, want 1", got)
	}
}

func TestCustomPrefix(t *testing.T) {
	e := newEnv(t, registry.StoreOptions{Prefix: "/other"})
	ctx := ctxT(t)
	res, err := e.store.Register(ctx, inst("svc", "10.0.0.7"))
	if err != nil {
		t.Fatal(err)
	}
	if keys := etcdKeys(t, e.cli, "/"); !slices.Equal(keys, []string{"/other/v1/instances/default/svc/" + res.ID}) {
		t.Fatalf("keys = %v", keys)
	}
}

// sleep waits n seconds or until ctx ends.
func sleep(ctx context.Context, n int) {
	t := time.NewTimer(time.Duration(n) * time.Second)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
