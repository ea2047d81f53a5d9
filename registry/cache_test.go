package registry_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	registryv1 "github.com/meshplane/meshplane/api/registry/v1"
	"github.com/meshplane/meshplane/registry"
)

func TestRunFollowsChangesAndNotifies(t *testing.T) {
	e := newEnv(t, registry.StoreOptions{})
	ctx := ctxT(t)
	// Written before Run: picked up by the first list.
	a, err := e.store.Register(ctx, inst("svc", "10.1.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	e.run(t)
	if ids := instanceIDs(e.store.Snapshot(), "default", "svc"); !slices.Equal(ids, []string{a.ID}) {
		t.Fatalf("after first list: %v, want [%s]", ids, a.ID)
	}
	n0 := e.notifications()
	b, err := e.store.Register(ctx, inst("svc", "10.1.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "second instance", func() bool {
		return slices.Equal(instanceIDs(e.store.Snapshot(), "default", "svc"), []string{a.ID, b.ID})
	})
	if e.notifications() <= n0 {
		t.Error("no notify after a change")
	}
	// Snapshot is cached between changes.
	s1, s2 := e.store.Snapshot(), e.store.Snapshot()
	if &s1.Services[0] != &s2.Services[0] {
		t.Error("Snapshot rebuilt without a change")
	}
	if s1.Revision < b.Revision {
		t.Errorf("snapshot revision %d older than the last write %d", s1.Revision, b.Revision)
	}
	// A value written by hand that does not match its key is ignored.
	if _, err := e.cli.Put(ctx, instancesPrefix+"default/svc/evil", `{"id":"other","service":"svc","namespace":"default"}`); err != nil {
		t.Fatal(err)
	}
	if _, err := e.cli.Put(ctx, instancesPrefix+"default/svc/garbage", `{not json`); err != nil {
		t.Fatal(err)
	}
	c, err := e.store.Register(ctx, inst("svc", "10.1.0.3"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "third instance", func() bool {
		return slices.Equal(instanceIDs(e.store.Snapshot(), "default", "svc"), []string{a.ID, b.ID, c.ID})
	})
	if got := metricValue(t, e, "meshplane_registry_etcd_errors_total", "op", "decode"); got < 2 {
		t.Errorf("decode errors = %v, want >= 2", got)
	}
	if err := e.store.Run(ctx, nil); err == nil {
		t.Error("second concurrent Run did not fail")
	}
}

// TestRelistAfterCompaction stops the store's watch, changes and compacts
// etcd's history behind its back, and runs it again: resuming from its old
// revision hits ErrCompacted, so it must list again and converge, including
// the deletion that no watch event will ever report.
func TestRelistAfterCompaction(t *testing.T) {
	t.Parallel() // mostly waits on leases and restarts
	e := newEnv(t, registry.StoreOptions{})
	ctx := ctxT(t)
	a, err := e.store.Register(ctx, inst("svc", "10.2.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.store.Register(ctx, inst("svc", "10.2.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	e.run(t)
	waitFor(t, "both instances", func() bool { return len(instanceIDs(e.store.Snapshot(), "default", "svc")) == 2 })
	e.stopRun()
	if e.store.Ready() {
		t.Error("Ready after Run returned")
	}

	if _, err := e.store.Deregister(ctx, "default", "svc", a.ID); err != nil {
		t.Fatal(err)
	}
	c, err := e.store.Register(ctx, inst("other", "10.2.0.3"))
	if err != nil {
		t.Fatal(err)
	}
	e.etcd.Compact(e.etcd.Revision())
	n0 := e.notifications()

	e.run(t)
	waitFor(t, "store to converge after compaction", func() bool {
		snap := e.store.Snapshot()
		return slices.Equal(instanceIDs(snap, "default", "svc"), []string{b.ID}) &&
			slices.Equal(instanceIDs(snap, "default", "other"), []string{c.ID})
	})
	if e.notifications() <= n0 {
		t.Error("no notify after the re-list")
	}
	// And it keeps following changes after the re-list.
	d, err := e.store.Register(ctx, inst("other", "10.2.0.4"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "change after re-list", func() bool {
		return slices.Equal(instanceIDs(e.store.Snapshot(), "default", "other"), []string{c.ID, d.ID})
	})
}

// TestEtcdRestartMidTest: while etcd is down writes fail with UNAVAILABLE
// (never hang), reads keep serving the last snapshot, and after etcd is back
// the store catches up by itself.
func TestEtcdRestartMidTest(t *testing.T) {
	t.Parallel() // mostly waits on leases and restarts
	e := newEnv(t, registry.StoreOptions{RequestTimeout: time.Second})
	e.run(t)
	rc := e.serve(t)
	ctx := ctxT(t)
	a, err := e.store.Register(ctx, inst("svc", "10.3.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "instance a", func() bool { return len(instanceIDs(e.store.Snapshot(), "default", "svc")) == 1 })

	e.etcd.Stop()
	_, err = e.store.Register(ctx, inst("svc", "10.3.0.2"))
	if !errors.Is(err, registry.ErrUnavailable) {
		t.Fatalf("Register with etcd down = %v, want ErrUnavailable", err)
	}
	_, err = rc.Register(ctx, &registryv1.RegisterRequest{Service: "svc", Address: "10.3.0.2", Ports: []*registryv1.Port{{Port: 80, Protocol: registryv1.Protocol_PROTOCOL_HTTP}}})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("gRPC Register with etcd down = %v, want UNAVAILABLE", err)
	}
	_, err = rc.Heartbeat(ctx, &registryv1.HeartbeatRequest{Service: "svc", InstanceId: a.ID})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("gRPC Heartbeat with etcd down = %v, want UNAVAILABLE", err)
	}
	// Reads come from the last good snapshot.
	got, err := rc.GetService(ctx, &registryv1.GetServiceRequest{Name: "svc"})
	if err != nil || len(got.GetService().GetInstances()) != 1 {
		t.Fatalf("GetService with etcd down = %v, %v; want the cached instance", got, err)
	}

	e.etcd.Restart()
	var b registry.RegisterResult
	waitFor(t, "Register to succeed after restart", func() bool {
		b, err = e.store.Register(ctx, inst("svc", "10.3.0.2"))
		return err == nil
	})
	// Written by another client: the store must see it through its own watch.
	if _, err := e.cli.Put(ctx, instancesPrefix+"default/svc/manual", `{"id":"manual","service":"svc","namespace":"default","address":"10.3.0.9","ports":[{"port":80,"protocol":"HTTP"}],"weight":1,"health":"SERVING"}`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "store to catch up after restart", func() bool {
		return slices.Equal(instanceIDs(e.store.Snapshot(), "default", "svc"), []string{a.ID, b.ID, "manual"})
	})
	if got := metricValue(t, e, "meshplane_registry_etcd_errors_total", "op", "register"); got < 1 {
		t.Errorf("etcd_errors_total{op=register} = %v, want >= 1", got)
	}
}

func TestRunStopsOnCancelWhileEtcdDown(t *testing.T) {
	e := newEnv(t, registry.StoreOptions{RequestTimeout: time.Second})
	e.etcd.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.store.Run(ctx, nil) }()
	time.Sleep(300 * time.Millisecond)
	if e.store.Ready() {
		t.Error("Ready without a list")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil on cancel", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after cancel")
	}
}
