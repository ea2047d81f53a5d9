package xds

import (
	"context"
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestSameNames(t *testing.T) {
	have := map[string]string{"a": "1", "b": ""}
	tests := map[string]struct {
		names []string
		want  bool
	}{
		"same":             {[]string{"a", "b"}, true},
		"other order":      {[]string{"b", "a"}, true},
		"fewer":            {[]string{"a"}, false},
		"more":             {[]string{"a", "b", "c"}, false},
		"other":            {[]string{"a", "c"}, false},
		"duplicate":        {[]string{"a", "a"}, false},
		"empty":            {nil, false},
		"duplicate of two": {[]string{"b", "b"}, false},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := sameNames(have, tc.names); got != tc.want {
				t.Fatalf("sameNames(%v, %v) = %v, want %v", have, tc.names, got, tc.want)
			}
		})
	}
	long, longHave := make([]string, 40), map[string]string{}
	for i := range long {
		long[i] = fmt.Sprintf("n%d", i)
		longHave[long[i]] = ""
	}
	if !sameNames(longHave, long) {
		t.Fatal("a long list of the subscribed names is not the same")
	}
	dup := append([]string(nil), long...)
	dup[39] = dup[0]
	if sameNames(longHave, dup) {
		t.Fatal("a long list with a duplicate instead of a subscribed name is the same")
	}
	dup[39] = "other"
	if sameNames(longHave, dup) {
		t.Fatal("a long list with another name is the same")
	}
	if !sameNames(map[string]string{}, nil) {
		t.Fatal("no names is the same as none subscribed")
	}
}

// claHolder is what a test client holds of EDS, by cluster name.
type claHolder struct {
	mu      sync.Mutex
	have    map[string]*endpointv3.ClusterLoadAssignment
	version string // version_info of the last response
}

func newCLAHolder() *claHolder {
	return &claHolder{have: map[string]*endpointv3.ClusterLoadAssignment{}}
}

func (h *claHolder) take(t *testing.T, r *discoveryv3.DiscoveryResponse) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, a := range r.GetResources() {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := a.UnmarshalTo(cla); err != nil {
			t.Errorf("unmarshal: %v", err)
			continue
		}
		h.have[cla.GetClusterName()] = cla
	}
	h.version = r.GetVersionInfo()
}

// holds reports whether h holds exactly want's endpoints of names.
func (h *claHolder) holds(want map[string]*endpointv3.ClusterLoadAssignment, names []string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, n := range names {
		if !proto.Equal(h.have[n], want[n]) {
			return false
		}
	}
	return true
}

// TestADSStuckClientDoesNotDelayOthers: a client that never reads blocks
// its own sends (HTTP/2 flow control) but neither the publisher nor any
// other client; once it reads again it gets the latest state.
func TestADSStuckClientDoesNotDelayOthers(t *testing.T) {
	const others, publishes, big, small = 50, 20, 10, 5
	build := func(gen int) *Resources {
		res := baseResources()
		res.Endpoints = nil
		for i := range big {
			// ≈ 300 endpoints: each push to the stuck client is ≈ 100 KiB,
			// more than its stream window and gRPC's write quota together
			// after two publishes.
			ports := make([]uint32, 300)
			for j := range ports {
				ports[j] = uint32(10000 + gen*300 + j)
			}
			res.Endpoints = append(res.Endpoints, svCLA(fmt.Sprintf("big-%d", i), ports...))
		}
		for i := range small {
			res.Endpoints = append(res.Endpoints, svCLA(fmt.Sprintf("small-%d", i), uint32(1000+gen)))
		}
		return res
	}
	var bigNames, smallNames []string
	for i := range big {
		bigNames = append(bigNames, fmt.Sprintf("big-%d", i))
	}
	for i := range small {
		smallNames = append(smallNames, fmt.Sprintf("small-%d", i))
	}
	allNames := append(append([]string(nil), bigNames...), smallNames...)
	f := newFixture(t, build(0))

	// The stuck client: fixed 64 KiB windows (no BDP growth), and nobody
	// calls Recv until the end.
	cc, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stuck, err := discoveryv3.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stuck.Send(&discoveryv3.DiscoveryRequest{Node: grpcNode("stuck"), TypeUrl: resourcev3.EndpointType, ResourceNames: allNames}); err != nil {
		t.Fatal(err)
	}

	holders := make([]*claHolder, others)
	for i := range others {
		h := newCLAHolder()
		holders[i] = h
		c := newSotwClient(t, f.conn(), grpcNode(fmt.Sprintf("reader-%d", i)))
		c.send(resourcev3.EndpointType, smallNames, "", "", nil)
		go func() {
			for r := range c.resps {
				h.take(t, r)
				if err := c.stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResourceNames: smallNames,
					VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}); err != nil {
					return
				}
			}
		}()
	}
	eventually(t, func() bool { return len(f.srv.Proxies()) == others+1 }, "every client connected")

	for gen := 1; gen <= publishes; gen++ {
		res := build(gen)
		f.publish(res) // would hang if a send blocked the publisher
		want := map[string]*endpointv3.ClusterLoadAssignment{}
		for _, c := range res.Endpoints {
			want[c.GetClusterName()] = c
		}
		for i, h := range holders {
			eventually(t, func() bool { return h.holds(want, smallNames) }, "reader %d to hold publish %d", i, gen)
		}
	}

	// The stuck client's sends were blocked: it can have acknowledged
	// nothing, and it has not been sent every publish (they coalesced
	// while its send was blocked).
	sent := metricValue(f.srv.metrics.pushes.WithLabelValues("eds"))
	if max := float64(others*(publishes+1) + publishes + 1); sent >= max {
		t.Fatalf("%v EDS responses sent, want fewer than %v (the stuck client's coalesced)", sent, max)
	}

	// It reads again: it ends with the last publish, whole.
	h := newCLAHolder()
	final := build(publishes)
	want := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, c := range final.Endpoints {
		want[c.GetClusterName()] = c
	}
	go func() {
		for {
			r, err := stuck.Recv()
			if err != nil {
				return
			}
			h.take(t, r)
			if err := stuck.Send(&discoveryv3.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResourceNames: allNames,
				VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}); err != nil {
				return
			}
		}
	}()
	eventually(t, func() bool { return h.holds(want, allNames) }, "the unstuck client to hold the last publish")
}

// TestADSChurn: publishes keep changing endpoints while SotW clients ACK,
// NACK, unsubscribe and resubscribe; when the churn stops and one more
// publish changes everything, every client holds exactly it, with the same
// version_info, and proxy status shows that version acknowledged.
func TestADSChurn(t *testing.T) {
	const services, clients, publishes = 12, 10, 40
	build := func(gen int) *Resources {
		res := baseResources()
		res.Endpoints = nil
		for i := range services {
			port := uint32(1000 + i)
			if i%4 == gen%4 || gen > publishes {
				port += uint32(gen) * 100
			}
			res.Endpoints = append(res.Endpoints, svCLA(fmt.Sprintf("s%d", i), port))
		}
		return res
	}
	names := make([]string, services)
	for i := range names {
		names[i] = fmt.Sprintf("s%d", i)
	}
	f := newFixture(t, build(0))
	var churn atomic.Bool
	churn.Store(true)
	holders := make([]*claHolder, clients)
	for i := range clients {
		h := newCLAHolder()
		holders[i] = h
		c := newSotwClient(t, f.conn(), grpcNode(fmt.Sprintf("churn-%d", i)))
		c.send(resourcev3.EndpointType, names, "", "", nil)
		go func() {
			n := 0
			for r := range c.resps {
				h.take(t, r)
				n++
				req := &discoveryv3.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResourceNames: names,
					VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}
				if churn.Load() {
					switch (n + i) % 4 {
					case 1: // NACK
						req.VersionInfo = ""
						req.ErrorDetail = &rpcstatus.Status{Code: 3, Message: "rejected on purpose"}
					case 2: // unsubscribe some (and ACK)
						req.ResourceNames = names[(n+i)%services:]
					case 3: // subscribe to all again (and ACK)
					}
				}
				if err := c.stream.Send(req); err != nil {
					return
				}
			}
		}()
	}
	for gen := 1; gen <= publishes; gen++ {
		f.publish(build(gen)) // does not wait for the clients
	}
	churn.Store(false)
	// One more publish changes everything: every client gets it, and its
	// ACK resubscribes to the names it had dropped, which it then gets.
	final := build(publishes + 1)
	f.publish(final)
	want := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, c := range final.Endpoints {
		want[c.GetClusterName()] = c
	}
	for i, h := range holders {
		eventually(t, func() bool { return h.holds(want, names) }, "client %d to hold the final endpoints", i)
	}
	version := holders[0].version
	for i, h := range holders {
		h.mu.Lock()
		v := h.version
		h.mu.Unlock()
		if v != version {
			t.Errorf("client %d holds version %q, client 0 %q", i, v, version)
		}
	}
	eventually(t, func() bool {
		for _, p := range f.srv.Proxies() {
			if p.Types[resourcev3.EndpointType].AckedVersion != version {
				return false
			}
		}
		return true
	}, "every proxy to show %s acknowledged", version)
	if metricValue(f.srv.metrics.nacks.WithLabelValues("eds")) == 0 {
		t.Fatal("no NACK counted")
	}
}

// FuzzADSSubscription drives one SotW subscription with arbitrary requests,
// builds and publishes, and checks the cache's index always matches the
// subscription and every response leaves it holding the current versions.
func FuzzADSSubscription(f *testing.F) {
	f.Add([]byte{0, 0x07, 1, 2, 0, 1, 0, 0x00, 1})
	f.Add([]byte{0, 0x40, 1, 2, 3, 1, 0, 0x03, 1, 0, 0x40, 1})
	f.Add([]byte{4, 0x00, 1, 0, 0x05, 1, 2, 1, 1, 0, 0x22, 3, 1})
	names := []string{"a", "b", "c", "d", "e", "f", "*"}
	f.Fuzz(func(t *testing.T, ops []byte) {
		for _, typeURL := range []string{resourcev3.EndpointType, resourcev3.ClusterType} {
			c := newTypeCache(typeURL)
			a := &adsStream{}
			a.closed.Store(true) // marks start no send
			st := &adsType{c: c, stream: a, bit: 1, legacy: true, names: map[string]string{}}
			st.w.ads = st
			gen := 0
			publish := func(which byte) {
				gen++
				up := map[string]*entry{}
				rm := map[string]bool{}
				for i, n := range names[:6] {
					switch {
					case which&(1<<i) == 0:
					case gen%3 == 0:
						rm[n] = true
					default:
						e, err := newEntry(typeURL, n, svCLA(n, uint32(gen)))
						if err != nil {
							t.Fatal(err)
						}
						up[n] = e
					}
				}
				c.apply(up, rm)
			}
			publish(0x3f)
			for i := 0; i+1 < len(ops); i += 2 {
				op, arg := ops[i]%5, ops[i+1]
				c.mu.Lock()
				st.mu.Lock()
				switch op {
				case 0, 4: // a request, with (0) or without (4) nonce
					var req []string
					for j, n := range names {
						if arg&(1<<j) != 0 {
							req = append(req, n)
						}
					}
					nonce := "1"
					if op == 4 {
						nonce = ""
					}
					if nonce != "" && st.unchangedLocked(req) {
						break
					}
					st.applyLocked(req, nonce, "")
				case 1: // a send
					checkPendingBuildLocked(t, st)
					if r := st.buildLocked(); r != nil {
						if r.GetVersionInfo() != st.currentVersionLocked() {
							t.Fatalf("response version %s, current %s", r.GetVersionInfo(), st.currentVersionLocked())
						}
						for n, v := range st.names {
							if e := c.lookupLocked("", n); e != nil && e.version != v {
								t.Fatalf("%s recorded at %q after a response, current %q", n, v, e.version)
							}
						}
					}
				}
				st.mu.Unlock()
				c.mu.Unlock()
				if op == 2 || op == 3 {
					publish(arg)
				}
				c.mu.Lock()
				_, inWildcard := c.wildcard[&st.w]
				indexed := 0
				for n, ws := range c.byName {
					if _, ok := ws[&st.w]; ok {
						indexed++
						if _, sub := st.names[n]; !sub || st.w.wildcard {
							t.Fatalf("indexed under %q, not subscribed by name (wildcard %v)", n, st.w.wildcard)
						}
					}
				}
				if inWildcard != st.w.wildcard || (!st.w.wildcard && indexed != len(st.names)) {
					t.Fatalf("wildcard %v indexed as %v; %d of %d names indexed", st.w.wildcard, inWildcard, indexed, len(st.names))
				}
				c.mu.Unlock()
			}
		}
	})
}

// checkPendingBuildLocked checks, when st's next build would visit only
// the pending names, that it gives the response and the state a build
// walking every name would, and leaves st as it found it.
func checkPendingBuildLocked(t *testing.T, st *adsType) {
	t.Helper()
	if st.c.fullState || !st.sent || st.full || st.reply {
		return
	}
	type state struct {
		names           map[string]string
		pending         map[string]struct{}
		sum             uint64
		held            int
		removed, legacy bool
	}
	save := func() state {
		return state{maps.Clone(st.names), maps.Clone(st.pending), st.sum, st.held, st.removed, st.legacy}
	}
	restore := func(s state) {
		st.names, st.pending, st.sum, st.held, st.removed, st.legacy = maps.Clone(s.names), maps.Clone(s.pending), s.sum, s.held, s.removed, s.legacy
		st.full, st.reply, st.sent = false, false, true
	}
	before := save()
	if sum, held := st.heldStateLocked(); sum != st.sum || held != st.held {
		t.Fatalf("kept state %x.%d, held names %x.%d", st.sum, st.held, sum, held)
	}
	fast := st.buildLocked()
	fastNames := maps.Clone(st.names)
	restore(before)
	st.full = true
	slow := st.buildLocked()
	switch {
	case (fast == nil) != (slow == nil):
		t.Fatalf("pending build %v, full build %v", fast, slow)
	case fast != nil && (fast.GetVersionInfo() != slow.GetVersionInfo() || !sameAnys(fast.GetResources(), slow.GetResources())):
		t.Fatalf("pending build %s %d resources, full build %s %d", fast.GetVersionInfo(), len(fast.GetResources()),
			slow.GetVersionInfo(), len(slow.GetResources()))
	case fast != nil && !maps.Equal(fastNames, st.names):
		t.Fatalf("pending build leaves %v, full build %v", fastNames, st.names)
	}
	restore(before)
}

// sameAnys reports whether a and b hold the same resources, in any order.
func sameAnys(a, b []*anypb.Any) bool {
	if len(a) != len(b) {
		return false
	}
	in := map[*anypb.Any]int{}
	for _, x := range a {
		in[x]++
	}
	for _, x := range b {
		in[x]--
	}
	for _, n := range in {
		if n != 0 {
			return false
		}
	}
	return true
}
