package registry_test

import (
	"context"
	"io"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	registryv1 "github.com/meshplane/meshplane/api/registry/v1"
	"github.com/meshplane/meshplane/registry"
)

func grpcPorts(ports ...uint32) []*registryv1.Port {
	out := make([]*registryv1.Port, 0, len(ports))
	for _, p := range ports {
		out = append(out, &registryv1.Port{Port: p, Protocol: registryv1.Protocol_PROTOCOL_GRPC})
	}
	return out
}

func wantCode(t *testing.T, what string, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("%s: got %v, want %s", what, err, code)
	}
}

func TestGRPCInvalidArgumentNamesFields(t *testing.T) {
	e := newEnv(t, registry.StoreOptions{})
	rc := e.serve(t)
	ctx := ctxT(t)
	_, err := rc.Register(ctx, &registryv1.RegisterRequest{
		Service: "api",
		Address: "10.0.0.1",
		Ports:   []*registryv1.Port{{Port: 0, Protocol: registryv1.Protocol_PROTOCOL_GRPC}, {Port: 80}},
		Weight:  5000,
	})
	wantCode(t, "Register(invalid)", err, codes.InvalidArgument)
	st := status.Convert(err)
	for _, want := range []string{"ports[0].port: must be 1..65535", "ports[1].protocol: must be one of GRPC, HTTP, HTTP2, TCP", "weight: must be 0..1000"} {
		if !strings.Contains(st.Message(), want) {
			t.Errorf("message %q lacks %q", st.Message(), want)
		}
	}
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				fields = append(fields, v.GetField())
			}
		}
	}
	if want := []string{"ports[0].port", "ports[1].protocol", "weight"}; !slices.Equal(fields, want) {
		t.Errorf("BadRequest fields = %v, want %v", fields, want)
	}
	// Unknown enum numbers are rejected, not mapped to something valid.
	_, err = rc.Register(ctx, &registryv1.RegisterRequest{Service: "api", Address: "10.0.0.1", Ports: grpcPorts(80), Health: 99})
	wantCode(t, "Register(health 99)", err, codes.InvalidArgument)

	for name, call := range map[string]func() error{
		"Heartbeat bad service": func() error {
			_, err := rc.Heartbeat(ctx, &registryv1.HeartbeatRequest{Service: "Bad", InstanceId: "x"})
			return err
		},
		"SetHealth unspecified": func() error {
			_, err := rc.SetHealth(ctx, &registryv1.SetHealthRequest{Service: "api", InstanceId: "x"})
			return err
		},
		"Deregister no id": func() error {
			_, err := rc.Deregister(ctx, &registryv1.DeregisterRequest{Service: "api"})
			return err
		},
		"ListServices bad namespace": func() error {
			_, err := rc.ListServices(ctx, &registryv1.ListServicesRequest{Namespace: "A_B"})
			return err
		},
		"GetService no name": func() error {
			_, err := rc.GetService(ctx, &registryv1.GetServiceRequest{})
			return err
		},
		"Watch service without namespace": func() error {
			ws, err := rc.Watch(ctx, &registryv1.WatchRequest{Service: "api"})
			if err != nil {
				return err
			}
			_, err = ws.Recv()
			return err
		},
		"Watch negative revision": func() error {
			ws, err := rc.Watch(ctx, &registryv1.WatchRequest{SinceRevision: -1})
			if err != nil {
				return err
			}
			_, err = ws.Recv()
			return err
		},
	} {
		t.Run(name, func(t *testing.T) { wantCode(t, name, call(), codes.InvalidArgument) })
	}
}

func TestGRPCLifecycle(t *testing.T) {
	e := newEnv(t, registry.StoreOptions{})
	rc := e.serve(t)
	ctx := ctxT(t)
	// Before Run: reads go to etcd directly.
	reg, err := rc.Register(ctx, &registryv1.RegisterRequest{
		Service: "api", Namespace: "prod", Address: "10.0.0.1", Ports: grpcPorts(8080),
		Locality: &registryv1.Locality{Region: "eu"}, Labels: map[string]string{"app": "api"}, TtlSeconds: 20,
	})
	if err != nil {
		t.Fatal(err)
	}
	if reg.GetInstanceId() != "10.0.0.1-8080" || reg.GetTtlSeconds() != 20 || reg.GetRevision() == 0 {
		t.Fatalf("Register = %v", reg)
	}
	if _, err := rc.Register(ctx, &registryv1.RegisterRequest{Service: "web", Address: "10.0.0.2", Ports: grpcPorts(80)}); err != nil {
		t.Fatal(err)
	}
	checkReads := func(t *testing.T) {
		got, err := rc.GetService(ctx, &registryv1.GetServiceRequest{Namespace: "prod", Name: "api"})
		if err != nil {
			t.Fatal(err)
		}
		ins := got.GetService().GetInstances()
		if len(ins) != 1 || ins[0].GetId() != reg.GetInstanceId() || ins[0].GetLocality().GetRegion() != "eu" ||
			ins[0].GetHealth() != registryv1.Health_HEALTH_SERVING || ins[0].GetModRevision() == 0 || got.GetRevision() < reg.GetRevision() {
			t.Fatalf("GetService = %v", got)
		}
		all, err := rc.ListServices(ctx, &registryv1.ListServicesRequest{})
		if err != nil || len(all.GetServices()) != 2 {
			t.Fatalf("ListServices = %v, %v; want 2 services", all, err)
		}
		prod, err := rc.ListServices(ctx, &registryv1.ListServicesRequest{Namespace: "prod"})
		if err != nil || len(prod.GetServices()) != 1 || prod.GetServices()[0].GetName() != "api" {
			t.Fatalf("ListServices(prod) = %v, %v", prod, err)
		}
		_, err = rc.GetService(ctx, &registryv1.GetServiceRequest{Name: "nope"})
		wantCode(t, "GetService(nope)", err, codes.NotFound)
	}
	t.Run("reads from etcd", checkReads)
	e.run(t)
	t.Run("reads from cache", checkReads)

	ref := &registryv1.HeartbeatRequest{Namespace: "prod", Service: "api", InstanceId: reg.GetInstanceId()}
	hb, err := rc.Heartbeat(ctx, ref)
	if err != nil || hb.GetTtlSeconds() <= 0 {
		t.Fatalf("Heartbeat = %v, %v", hb, err)
	}
	stream, err := rc.HeartbeatStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := stream.Send(ref); err != nil {
			t.Fatal(err)
		}
		if resp, err := stream.Recv(); err != nil || resp.GetTtlSeconds() <= 0 {
			t.Fatalf("HeartbeatStream = %v, %v", resp, err)
		}
	}
	if _, err := rc.SetHealth(ctx, &registryv1.SetHealthRequest{Namespace: "prod", Service: "api", InstanceId: reg.GetInstanceId(), Health: registryv1.Health_HEALTH_NOT_SERVING}); err != nil {
		t.Fatal(err)
	}
	if _, err := rc.Deregister(ctx, &registryv1.DeregisterRequest{Namespace: "prod", Service: "api", InstanceId: reg.GetInstanceId()}); err != nil {
		t.Fatal(err)
	}
	// The stream ends with NOT_FOUND on the next heartbeat.
	if err := stream.Send(ref); err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	wantCode(t, "HeartbeatStream after Deregister", err, codes.NotFound)
	_, err = rc.Heartbeat(ctx, ref)
	wantCode(t, "Heartbeat after Deregister", err, codes.NotFound)
	_, err = rc.SetHealth(ctx, &registryv1.SetHealthRequest{Namespace: "prod", Service: "api", InstanceId: reg.GetInstanceId(), Health: registryv1.Health_HEALTH_SERVING})
	wantCode(t, "SetHealth after Deregister", err, codes.NotFound)
	_, err = rc.Deregister(ctx, &registryv1.DeregisterRequest{Namespace: "prod", Service: "api", InstanceId: reg.GetInstanceId()})
	wantCode(t, "Deregister twice", err, codes.NotFound)
}

// watcher reads a Watch stream into a model of the registry, as a client
// would, remembering the revision to resume from.
type watcher struct {
	ids    map[string]bool
	rev    int64
	resets int
}

func (w *watcher) recv(t *testing.T, ws grpc.ServerStreamingClient[registryv1.WatchResponse]) {
	t.Helper()
	resp, err := ws.Recv()
	if err != nil {
		t.Fatalf("Watch.Recv: %v", err)
	}
	for _, ev := range resp.GetEvents() {
		switch ev.GetType() {
		case registryv1.WatchEvent_TYPE_RESET:
			w.ids = map[string]bool{}
			w.resets++
		case registryv1.WatchEvent_TYPE_PUT:
			w.ids[ev.GetInstance().GetId()] = true
		case registryv1.WatchEvent_TYPE_DELETE:
			delete(w.ids, ev.GetInstance().GetId())
		default:
			t.Fatalf("unexpected event %v", ev)
		}
	}
	if resp.GetRevision() != 0 {
		w.rev = resp.GetRevision()
	}
}

func (w *watcher) sorted() []string {
	var out []string
	for id := range w.ids {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// recvUntil reads until the model holds exactly want.
func (w *watcher) recvUntil(t *testing.T, ws grpc.ServerStreamingClient[registryv1.WatchResponse], want ...string) {
	t.Helper()
	slices.Sort(want)
	for !slices.Equal(w.sorted(), want) {
		w.recv(t, ws)
	}
}

func TestGRPCWatchResumeAndResetAfterCompaction(t *testing.T) {
	e := newEnv(t, registry.StoreOptions{})
	rc := e.serve(t)
	ctx := ctxT(t)
	register := func(addr string) string {
		t.Helper()
		r, err := rc.Register(ctx, &registryv1.RegisterRequest{Service: "api", Address: addr, Ports: grpcPorts(80)})
		if err != nil {
			t.Fatal(err)
		}
		return r.GetInstanceId()
	}
	a := register("10.0.0.1")
	// Another service in the namespace: filtered out of a service watch.
	if _, err := rc.Register(ctx, &registryv1.RegisterRequest{Service: "other", Address: "10.0.0.9", Ports: grpcPorts(80)}); err != nil {
		t.Fatal(err)
	}

	w := &watcher{ids: map[string]bool{}}
	wctx, cancel := context.WithCancel(ctx)
	ws, err := rc.Watch(wctx, &registryv1.WatchRequest{Namespace: "default", Service: "api"})
	if err != nil {
		t.Fatal(err)
	}
	w.recv(t, ws)
	if w.resets != 1 || !slices.Equal(w.sorted(), []string{a}) || w.rev == 0 {
		t.Fatalf("initial state: resets=%d ids=%v rev=%d", w.resets, w.sorted(), w.rev)
	}
	b := register("10.0.0.2")
	w.recvUntil(t, ws, a, b)
	cancel()

	// Changes while nobody watches; resuming from w.rev replays them only.
	c := register("10.0.0.3")
	if _, err := rc.Deregister(ctx, &registryv1.DeregisterRequest{Service: "api", InstanceId: a}); err != nil {
		t.Fatal(err)
	}
	ws, err = rc.Watch(ctx, &registryv1.WatchRequest{Namespace: "default", Service: "api", SinceRevision: w.rev})
	if err != nil {
		t.Fatal(err)
	}
	w.recvUntil(t, ws, b, c)
	if w.resets != 1 {
		t.Fatalf("resume sent a reset (resets=%d)", w.resets)
	}
	staleRev := w.rev

	// History compacted past the resume point: RESET and the full state.
	d := register("10.0.0.4")
	if _, err := rc.Deregister(ctx, &registryv1.DeregisterRequest{Service: "api", InstanceId: b}); err != nil {
		t.Fatal(err)
	}
	e.etcd.Compact(e.etcd.Revision())
	old := &watcher{ids: map[string]bool{b: true, c: true}, rev: staleRev}
	ws2, err := rc.Watch(ctx, &registryv1.WatchRequest{Namespace: "default", SinceRevision: staleRev})
	if err != nil {
		t.Fatal(err)
	}
	old.recv(t, ws2)
	if old.resets != 1 {
		t.Fatalf("watch from compacted revision: no RESET (ids %v)", old.sorted())
	}
	// Namespace watch: includes "other"'s instance.
	if got, want := old.sorted(), []string{c, d, "10.0.0.9-80"}; !slices.Equal(got, want) {
		t.Fatalf("state after reset = %v", got)
	}
	// And it continues with live changes.
	e2 := register("10.0.0.5")
	old.recvUntil(t, ws2, "10.0.0.9-80", c, d, e2)
}

func TestGRPCWatchSplitsLargeReset(t *testing.T) {
	t.Parallel() // its own etcd; mostly waits on etcd round trips
	if testing.Short() {
		t.Skip("registers 1,100 instances; skipped in -short mode")
	}
	e := newEnv(t, registry.StoreOptions{})
	rc := e.serve(t)
	ctx := ctxT(t)
	const n = 1100
	for i := range n {
		in := inst("bulk", "10.9."+itoa(i/250)+"."+itoa(i%250+1))
		if _, err := e.store.Register(ctx, in); err != nil {
			t.Fatal(err)
		}
	}
	ws, err := rc.Watch(ctx, &registryv1.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := ws.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if first.GetRevision() != 0 || first.GetEvents()[0].GetType() != registryv1.WatchEvent_TYPE_RESET {
		t.Fatalf("first part of a split reset: revision %d, first event %v", first.GetRevision(), first.GetEvents()[0].GetType())
	}
	second, err := ws.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if got := len(first.GetEvents()) - 1 + len(second.GetEvents()); got != n || second.GetRevision() == 0 {
		t.Fatalf("reset carried %d instances (last revision %d), want %d", got, second.GetRevision(), n)
	}
	if err := ws.CloseSend(); err != nil && err != io.EOF {
		t.Fatal(err)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
