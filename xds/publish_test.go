package xds

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshplane/meshplane/registry"
)

// publishInput runs one publish of in, as Run would, and reports whether
// it succeeded.
func publishInput(t testing.TB, srv *Server, in Input) bool {
	t.Helper()
	before := metricValue(srv.metrics.translateErrors)
	srv.publish(context.Background(), func() Input { return in })
	return metricValue(srv.metrics.translateErrors) == before
}

// cacheEntries is every shared entry of the server's caches, by cache
// label and name.
func cacheEntries(srv *Server) map[string]map[string]*entry {
	out := map[string]map[string]*entry{}
	for label, c := range map[string]*typeCache{
		"eds": srv.caches.endpoints, "cds": srv.caches.clusters, "rds": srv.caches.routes,
		"lds/grpc": srv.caches.listenersGRPC, "lds/envoy": srv.caches.listenersEnvoy,
	} {
		c.mu.Lock()
		out[label] = maps.Clone(c.shared)
		c.mu.Unlock()
	}
	return out
}

// versions is cacheEntries reduced to versions.
func versions(es map[string]map[string]*entry) map[string]map[string]string {
	out := map[string]map[string]string{}
	for label, m := range es {
		out[label] = map[string]string{}
		for name, e := range m {
			out[label][name] = e.version
		}
	}
	return out
}

// translatedVersions is what a full Translate of in publishes, as versions.
func translatedVersions(t testing.TB, in Input) map[string]map[string]string {
	t.Helper()
	res, err := Translate(in)
	if err != nil {
		t.Fatalf("Translate: %v", err)
	}
	if err := Validate(res); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	out := map[string]map[string]string{}
	add := func(label, typeURL string, ms []proto.Message) {
		out[label] = map[string]string{}
		for _, m := range ms {
			e, err := newEntry(typeURL, resourceName(m), m)
			if err != nil {
				t.Fatal(err)
			}
			out[label][e.name] = e.version
		}
	}
	add("eds", resourcev3.EndpointType, msgs(res.Endpoints))
	add("cds", resourcev3.ClusterType, msgs(res.Clusters))
	add("rds", resourcev3.RouteType, msgs(res.Routes))
	add("lds/grpc", resourcev3.ListenerType, msgs(res.Listeners))
	add("lds/envoy", resourcev3.ListenerType, msgs(res.EnvoyListeners))
	return out
}

func msgs[T proto.Message](rs []T) []proto.Message {
	out := make([]proto.Message, len(rs))
	for i, r := range rs {
		out[i] = r
	}
	return out
}

// meshGen makes random, mostly valid, registry-shaped inputs: few
// addresses and ports, so server Listeners collide across services.
type meshGen struct{ r *rand.Rand }

var genPorts = []registry.Port{
	{Name: "grpc", Port: 50051, Protocol: registry.ProtocolGRPC},
	{Name: "http", Port: 8080, Protocol: registry.ProtocolHTTP},
	{Name: "h2", Port: 9090, Protocol: registry.ProtocolHTTP2},
	{Name: "db", Port: 5432, Protocol: registry.ProtocolTCP},
}

func (g meshGen) ports() []registry.Port {
	var out []registry.Port
	for _, p := range genPorts {
		if g.r.IntN(2) == 0 {
			if g.r.IntN(4) == 0 {
				p.TargetPort = 60000 + uint32(g.r.IntN(3))
			}
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		out = append(out, genPorts[0])
	}
	return out
}

func (g meshGen) instance(svc registry.Service, id int) registry.Instance {
	var ports []registry.Port
	for _, p := range svc.Ports {
		if g.r.IntN(3) > 0 {
			ports = append(ports, p)
		}
	}
	health := []registry.Health{registry.HealthServing, registry.HealthServing, registry.HealthNotServing, registry.HealthDraining}
	addrs := []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::1", "backend.example.com"}
	return registry.Instance{
		ID: fmt.Sprintf("i-%d", id), Service: svc.Name, Namespace: svc.Namespace,
		Address: addrs[g.r.IntN(len(addrs))], Ports: ports,
		Locality: registry.Locality{Zone: fmt.Sprintf("z%d", g.r.IntN(3))},
		Weight:   uint32(g.r.IntN(4)), Health: health[g.r.IntN(len(health))],
		Labels: map[string]string{"v": fmt.Sprint(g.r.IntN(3))}, ModRevision: g.r.Int64N(100),
	}
}

func (g meshGen) service(name, ns string) registry.Service {
	svc := registry.Service{Name: name, Namespace: ns, Ports: g.ports()}
	for i := range g.r.IntN(5) {
		svc.Instances = append(svc.Instances, g.instance(svc, i))
	}
	return svc
}

func (g meshGen) tracing() *Tracing {
	if g.r.IntN(3) == 0 {
		return nil
	}
	tr := &Tracing{CollectorHost: "127.0.0.1", CollectorPort: 4317 + uint32(g.r.IntN(2)), SamplingPercent: float64(g.r.IntN(3)) * 10}
	if g.r.IntN(2) == 0 {
		tr.ServiceSamplingPercent = map[string]float64{"svc-1.ns-a": float64(g.r.IntN(100))}
	}
	return tr
}

// step changes in the way one registry event (or a config change) would,
// copying what it changes.
func (g meshGen) step(in Input) Input {
	out := Input{Services: slices.Clone(in.Services), Tracing: in.Tracing}
	names := []string{"svc-0", "svc-1", "svc-2", "svc-3", "svc-4"}
	nss := []string{"ns-a", "ns-b"}
	switch k := g.r.IntN(10); {
	case k == 0: // tracing configuration
		out.Tracing = g.tracing()
	case k == 1 || len(out.Services) == 0: // a service appears or is replaced
		name, ns := names[g.r.IntN(len(names))], nss[g.r.IntN(len(nss))]
		svc := g.service(name, ns)
		out.Services = slices.DeleteFunc(out.Services, func(s registry.Service) bool { return s.Host() == svc.Host() })
		out.Services = append(out.Services, svc)
	case k == 2: // a service goes away
		i := g.r.IntN(len(out.Services))
		out.Services = slices.Delete(out.Services, i, i+1)
	default: // one instance changes, appears or goes away
		i := g.r.IntN(len(out.Services))
		svc := out.Services[i]
		svc.Instances = slices.Clone(svc.Instances)
		switch {
		case len(svc.Instances) == 0 || g.r.IntN(4) == 0:
			svc.Instances = append(svc.Instances, g.instance(svc, len(svc.Instances)+g.r.IntN(100)))
			svc.Instances = slices.CompactFunc(svc.Instances, func(a, b registry.Instance) bool { return a.ID == b.ID })
		case g.r.IntN(4) == 0:
			j := g.r.IntN(len(svc.Instances))
			svc.Instances = slices.Delete(svc.Instances, j, j+1)
		default:
			j := g.r.IntN(len(svc.Instances))
			inst := g.instance(svc, 0)
			inst.ID = svc.Instances[j].ID
			switch g.r.IntN(6) {
			case 0:
				svc.Instances[j].Weight = inst.Weight
			case 1:
				svc.Instances[j].Health = inst.Health
			case 2:
				svc.Instances[j].Address = inst.Address
			case 3:
				svc.Instances[j].Locality = inst.Locality
			case 4:
				svc.Instances[j].Ports = inst.Ports
			default: // not read by the translator
				svc.Instances[j].Labels, svc.Instances[j].ModRevision = inst.Labels, inst.ModRevision
			}
		}
		out.Services[i] = svc
	}
	return out
}

// TestIncrementalPublishMatchesTranslate is the memo's property: after any
// sequence of changes, what the caches hold is exactly a fresh Translate of
// the input, and the memo assembles to Translate's resources. Invalid
// inputs fail to publish and leave everything as it was.
func TestIncrementalPublishMatchesTranslate(t *testing.T) {
	for seed := range uint64(8) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			srv, err := NewServer(ServerOptions{})
			if err != nil {
				t.Fatal(err)
			}
			g := meshGen{rand.New(rand.NewPCG(seed, 1))}
			var in Input
			for step := range 150 {
				next := g.step(in)
				if g.r.IntN(15) == 0 && len(next.Services) > 0 && len(next.Services[0].Instances) > 0 {
					bad := g.step(in)
					bad.Services = slices.Clone(next.Services)
					bad.Services[0].Instances = slices.Clone(bad.Services[0].Instances)
					bad.Services[0].Instances[0].Weight = MaxWeight + 1
					before := versions(cacheEntries(srv))
					if publishInput(t, srv, bad) {
						t.Fatalf("step %d: an invalid input published", step)
					}
					if after := versions(cacheEntries(srv)); !maps.EqualFunc(before, after, maps.Equal) {
						t.Fatalf("step %d: a failed publish changed the caches", step)
					}
				}
				if _, err := Translate(next); err != nil {
					t.Fatalf("step %d: generator made an invalid input: %v", step, err)
				}
				in = next
				if !publishInput(t, srv, in) {
					t.Fatalf("step %d: publish failed", step)
				}
				want := translatedVersions(t, in)
				got := versions(cacheEntries(srv))
				for label := range want {
					if !maps.Equal(got[label], want[label]) {
						t.Fatalf("step %d: %s cache\n got %v\nwant %v", step, label, got[label], want[label])
					}
				}
				res, _ := Translate(in)
				if m := srv.memo.resources(); !resourcesEqual(m, res) {
					t.Fatalf("step %d: the memo does not assemble to Translate's resources", step)
				}
			}
		})
	}
}

// resourcesEqual compares two translations resource by resource.
func resourcesEqual(a, b *Resources) bool {
	eq := func(x, y []proto.Message) bool { return slices.EqualFunc(x, y, proto.Equal) }
	return eq(msgs(a.Listeners), msgs(b.Listeners)) && eq(msgs(a.EnvoyListeners), msgs(b.EnvoyListeners)) &&
		eq(msgs(a.Routes), msgs(b.Routes)) && eq(msgs(a.Clusters), msgs(b.Clusters)) && eq(msgs(a.Endpoints), msgs(b.Endpoints))
}

// TestIncrementalPublishReusesUnchanged: a changed service's resources are
// re-published, an unchanged one's are not even re-marshalled, a removed
// one's are deleted.
func TestIncrementalPublishReusesUnchanged(t *testing.T) {
	srv, err := NewServer(ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in := benchInput(3, 2)
	a, b := in.Services[0], in.Services[1]
	if !publishInput(t, srv, in) {
		t.Fatal("first publish failed")
	}
	e1 := cacheEntries(srv)
	memoB := srv.memo.services[b.Host()]
	names := func(svc registry.Service) map[string][]string {
		out := map[string][]string{
			"eds": {ClusterName(svc.Host(), 50051)}, "cds": {ClusterName(svc.Host(), 50051)},
			"rds":      {svc.Host(), ClientListenerName(svc.Host(), 50051)},
			"lds/grpc": {svc.Host(), ClientListenerName(svc.Host(), 50051)},
		}
		for _, inst := range svc.Instances {
			out["lds/grpc"] = append(out["lds/grpc"], ServerListenerName(inst.Address, 50051))
		}
		return out
	}

	in = changeOneInstance(in, 0, 1, 3)
	if !publishInput(t, srv, in) {
		t.Fatal("publish failed")
	}
	e2 := cacheEntries(srv)
	cla := ClusterName(a.Host(), 50051)
	if e2["eds"][cla].version == e1["eds"][cla].version {
		t.Errorf("the changed service's assignment %s was not re-published", cla)
	}
	if e2["cds"][cla] != e1["cds"][cla] {
		t.Errorf("the changed service's unchanged cluster got a new entry")
	}
	if srv.memo.services[b.Host()] != memoB {
		t.Errorf("the unchanged service %s was translated again", b.Host())
	}
	for label, ns := range names(b) {
		for _, n := range ns {
			if e2[label][n] == nil || e2[label][n] != e1[label][n] {
				t.Errorf("%s %s of the unchanged service: entry %p, was %p", label, n, e2[label][n], e1[label][n])
			}
		}
	}
	if e2["rds"][OutboundHTTPListenerName] != e1["rds"][OutboundHTTPListenerName] {
		t.Errorf("the outbound route changed although no virtual host did")
	}

	in.Services = slices.Delete(slices.Clone(in.Services), 1, 2)
	if !publishInput(t, srv, in) {
		t.Fatal("publish failed")
	}
	e3 := cacheEntries(srv)
	for label, ns := range names(b) {
		for _, n := range ns {
			if e3[label][n] != nil {
				t.Errorf("%s %s of the removed service is still published", label, n)
			}
		}
	}
	if e3["rds"][OutboundHTTPListenerName].version == e2["rds"][OutboundHTTPListenerName].version {
		t.Errorf("the outbound route still has the removed service's virtual host")
	}
	if got, want := versions(e3), translatedVersions(t, in); !maps.EqualFunc(got, want, maps.Equal) {
		t.Errorf("published %v, Translate gives %v", got, want)
	}
}

// TestIncrementalPublishTracingChange: a tracing change re-publishes the
// Envoy listeners, the outbound route and the tracing cluster, and rebuilds
// sidecar layers; endpoints stay as they were.
func TestIncrementalPublishTracingChange(t *testing.T) {
	srv, err := NewServer(ServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	in := benchInput(2, 1)
	if !publishInput(t, srv, in) {
		t.Fatal("first publish failed")
	}
	srv.attachSidecar("sc", Sidecar{Service: "svc-0000", Namespace: "bench", InboundPorts: []InboundPort{{Port: 50051, AppPort: 9000}}})
	layer := func() map[string]*entry {
		c := srv.caches.listenersEnvoy
		c.mu.Lock()
		defer c.mu.Unlock()
		return maps.Clone(c.layers["sc"])
	}
	inbound := InboundName(50051)
	prev, prevLayer := cacheEntries(srv), layer()
	if prevLayer[inbound] == nil {
		t.Fatal("no sidecar layer")
	}
	for i, tr := range []*Tracing{
		{CollectorHost: "127.0.0.1", CollectorPort: 4317, SamplingPercent: 5},
		{CollectorHost: "127.0.0.1", CollectorPort: 4317, SamplingPercent: 5, ServiceSamplingPercent: map[string]float64{"svc-0000.bench": 50}},
		nil,
	} {
		in.Tracing = tr
		if !publishInput(t, srv, in) {
			t.Fatalf("publish %d failed", i)
		}
		cur, curLayer := cacheEntries(srv), layer()
		if cur["lds/envoy"][OutboundHTTPListenerName].version == prev["lds/envoy"][OutboundHTTPListenerName].version && i != 1 {
			t.Errorf("publish %d: outbound listener not re-published", i)
		}
		if cur["rds"][OutboundHTTPListenerName].version == prev["rds"][OutboundHTTPListenerName].version {
			t.Errorf("publish %d: outbound route not re-published", i)
		}
		if (cur["cds"][TracingClusterName] != nil) != (tr != nil) {
			t.Errorf("publish %d: tracing cluster present %v, tracing %v", i, cur["cds"][TracingClusterName] != nil, tr)
		}
		if curLayer[inbound].version == prevLayer[inbound].version {
			t.Errorf("publish %d: sidecar inbound listener not rebuilt", i)
		}
		if !maps.Equal(versions(cur)["eds"], versions(prev)["eds"]) {
			t.Errorf("publish %d: endpoints changed with tracing", i)
		}
		if got, want := versions(cur), translatedVersions(t, in); !maps.EqualFunc(got, want, maps.Equal) {
			t.Errorf("publish %d: published %v, Translate gives %v", i, got, want)
		}
		prev, prevLayer = cur, curLayer
	}
}

// TestSidecarValidationResolvesReferences: a sidecar's own resources are
// checked with their references resolved against its own and the shared
// resources; a broken reference keeps the last good layer.
func TestSidecarValidationResolvesReferences(t *testing.T) {
	tr := &Tracing{CollectorHost: "127.0.0.1", CollectorPort: 4317, SamplingPercent: 5}
	ip := InboundPort{Port: 8080, AppPort: 9080, Protocol: registry.ProtocolHTTP}
	okCluster := staticCluster(InboundName(8080), "127.0.0.1", 9080, false)
	tests := []struct {
		name    string
		tracing *Tracing // of the input
		own     *Resources
		wantErr bool
	}{
		{"listener and its cluster", nil, &Resources{EnvoyListeners: []*listenerv3.Listener{inboundListener(ip, "a.ns", nil)}, Clusters: []*clusterv3.Cluster{okCluster}}, false},
		{"inbound cluster missing", nil, &Resources{EnvoyListeners: []*listenerv3.Listener{inboundListener(ip, "a.ns", nil)}}, true},
		{"tracing cluster shared", tr, &Resources{EnvoyListeners: []*listenerv3.Listener{inboundListener(ip, "a.ns", tr)}, Clusters: []*clusterv3.Cluster{okCluster}}, false},
		{"tracing cluster missing", nil, &Resources{EnvoyListeners: []*listenerv3.Listener{inboundListener(ip, "a.ns", tr)}, Clusters: []*clusterv3.Cluster{okCluster}}, true},
		{"route of the shared outbound listener", nil, &Resources{EnvoyListeners: []*listenerv3.Listener{outboundListener(nil)}}, false},
		{"invalid resource", nil, &Resources{Clusters: []*clusterv3.Cluster{{Name: "x", LbPolicy: clusterv3.Cluster_MAGLEV}}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := NewServer(ServerOptions{
				TranslateSidecar: func(Input, Sidecar) (*Resources, error) { return tt.own, nil },
			})
			if err != nil {
				t.Fatal(err)
			}
			in := benchInput(1, 1)
			in.Tracing = tt.tracing
			if !publishInput(t, srv, in) {
				t.Fatal("publish failed")
			}
			before := metricValue(srv.metrics.translateErrors)
			srv.attachSidecar("sc", Sidecar{Service: "a", Namespace: "ns"})
			failed := metricValue(srv.metrics.translateErrors) != before
			srv.caches.clusters.mu.Lock()
			_, hasLayer := srv.caches.clusters.layers["sc"]
			srv.caches.clusters.mu.Unlock()
			if failed != tt.wantErr {
				t.Errorf("sidecar translation failed: %v, want %v", failed, tt.wantErr)
			}
			if wantLayer := !tt.wantErr && len(tt.own.Clusters) > 0; hasLayer != wantLayer {
				t.Errorf("sidecar cluster layer present: %v, want %v", hasLayer, wantLayer)
			}
		})
	}
}

// TestAssembleEqualsTranslate: on every golden input, assembling the
// per-service translations and publishing incrementally both give exactly
// Translate's resources.
func TestAssembleEqualsTranslate(t *testing.T) {
	cases, err := filepath.Glob(filepath.Join("testdata", "*.in.yaml"))
	if err != nil || len(cases) == 0 {
		t.Fatalf("golden inputs: %v, %v", cases, err)
	}
	for _, path := range cases {
		t.Run(filepath.Base(path), func(t *testing.T) {
			in := readGoldenInput(t, path).Input
			want, err := Translate(in)
			if err != nil {
				t.Fatal(err)
			}
			var parts []*ServiceResources
			for _, svc := range sortedServices(in.Services) {
				p, err := TranslateService(svc, in.Tracing)
				if err != nil {
					t.Fatal(err)
				}
				parts = append(parts, p)
			}
			if got := Assemble(parts, in.Tracing); !resourcesEqual(got, want) {
				t.Error("Assemble(TranslateService...) differs from Translate")
			}
			srv, err := NewServer(ServerOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !publishInput(t, srv, in) {
				t.Fatal("incremental publish failed")
			}
			if got := versions(cacheEntries(srv)); !maps.EqualFunc(got, translatedVersions(t, in), maps.Equal) {
				t.Error("incremental publish differs from Translate")
			}
		})
	}
}

func TestTranslateServiceRejectsInvalid(t *testing.T) {
	ok := registry.Service{Name: "a", Namespace: "ns", Ports: []registry.Port{{Port: 80, Protocol: registry.ProtocolHTTP}}}
	tests := []struct {
		name string
		mod  func(*registry.Service)
		want string
	}{
		{"bad name", func(s *registry.Service) { s.Name = "A_" }, "service.name"},
		{"port 0", func(s *registry.Service) { s.Ports[0].Port = 0 }, "service.ports[0].port"},
		{"instance elsewhere", func(s *registry.Service) {
			s.Instances = []registry.Instance{{ID: "i", Service: "b", Namespace: "ns", Address: "10.0.0.1", Health: registry.HealthServing}}
		}, "service.instances[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc := ok
			svc.Ports = slices.Clone(ok.Ports)
			tt.mod(&svc)
			if _, err := TranslateService(svc, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want one naming %s", err, tt.want)
			}
		})
	}
	if _, err := TranslateService(ok, nil); err != nil {
		t.Errorf("valid service: %v", err)
	}
}

// FuzzIncrementalPublish runs a random sequence of registry changes (from
// the fuzzer's seed) through the incremental publish and compares every
// step with a fresh Translate.
func FuzzIncrementalPublish(f *testing.F) {
	for _, seed := range []uint64{0, 1, 42, 1 << 40} {
		f.Add(seed, uint8(20))
	}
	f.Fuzz(func(t *testing.T, seed uint64, steps uint8) {
		srv, err := NewServer(ServerOptions{})
		if err != nil {
			t.Fatal(err)
		}
		g := meshGen{rand.New(rand.NewPCG(seed, 2))}
		var in Input
		for step := range int(steps) % 64 {
			in = g.step(in)
			if !publishInput(t, srv, in) {
				t.Fatalf("step %d: publish failed", step)
			}
			if got, want := versions(cacheEntries(srv)), translatedVersions(t, in); !maps.EqualFunc(got, want, maps.Equal) {
				t.Fatalf("step %d: published %v, Translate gives %v", step, got, want)
			}
		}
	})
}

// TestServiceEqualKnowsEveryField: serviceEqual and cloneService compare and
// copy every field; a field added to the registry types must be added
// there, else the memo could keep a stale translation.
func TestServiceEqualKnowsEveryField(t *testing.T) {
	for typ, want := range map[reflect.Type]int{
		reflect.TypeFor[registry.Service]():  4,
		reflect.TypeFor[registry.Instance](): 13,
		reflect.TypeFor[registry.Port]():     4,
		reflect.TypeFor[registry.Locality](): 3,
	} {
		if got := typ.NumField(); got != want {
			t.Errorf("%v has %d fields, serviceEqual knows %d: update serviceEqual, cloneService and this test", typ, got, want)
		}
	}
	base := registry.Service{Name: "a", Namespace: "ns", Ports: []registry.Port{{Name: "p", Port: 80, Protocol: registry.ProtocolHTTP}},
		Instances: []registry.Instance{{
			ID: "i", Service: "a", Namespace: "ns", Address: "10.0.0.1", Ports: []registry.Port{{Port: 80, TargetPort: 8080}},
			Locality: registry.Locality{Region: "r", Zone: "z", SubZone: "s"}, Weight: 2, Version: "v1",
			Labels: map[string]string{"k": "v"}, Metadata: map[string]string{"m": "v"}, Health: registry.HealthServing,
			TTLSeconds: 10, ModRevision: 7,
		}}}
	c := cloneService(base)
	if !serviceEqual(base, c) || !reflect.DeepEqual(base, c) {
		t.Fatal("a clone differs")
	}
	c.Instances[0].Labels["k"] = "w"
	c.Instances[0].Ports[0].TargetPort = 1
	if base.Instances[0].Labels["k"] != "v" || base.Instances[0].Ports[0].TargetPort != 8080 {
		t.Fatal("the clone shares maps or slices with the original")
	}
	mods := map[string]func(*registry.Service){
		"name":        func(s *registry.Service) { s.Name = "b" },
		"namespace":   func(s *registry.Service) { s.Namespace = "b" },
		"port name":   func(s *registry.Service) { s.Ports[0].Name = "q" },
		"port":        func(s *registry.Service) { s.Ports[0].Port = 81 },
		"target port": func(s *registry.Service) { s.Ports[0].TargetPort = 1 },
		"protocol":    func(s *registry.Service) { s.Ports[0].Protocol = registry.ProtocolGRPC },
		"instances":   func(s *registry.Service) { s.Instances = nil },
		"id":          func(s *registry.Service) { s.Instances[0].ID = "j" },
		"service":     func(s *registry.Service) { s.Instances[0].Service = "b" },
		"inst ns":     func(s *registry.Service) { s.Instances[0].Namespace = "b" },
		"address":     func(s *registry.Service) { s.Instances[0].Address = "10.0.0.2" },
		"inst ports":  func(s *registry.Service) { s.Instances[0].Ports[0].Port = 81 },
		"region":      func(s *registry.Service) { s.Instances[0].Locality.Region = "x" },
		"zone":        func(s *registry.Service) { s.Instances[0].Locality.Zone = "x" },
		"sub-zone":    func(s *registry.Service) { s.Instances[0].Locality.SubZone = "x" },
		"weight":      func(s *registry.Service) { s.Instances[0].Weight = 3 },
		"version":     func(s *registry.Service) { s.Instances[0].Version = "v2" },
		"labels":      func(s *registry.Service) { s.Instances[0].Labels = nil },
		"metadata":    func(s *registry.Service) { s.Instances[0].Metadata["m"] = "w" },
		"health":      func(s *registry.Service) { s.Instances[0].Health = registry.HealthDraining },
		"ttl":         func(s *registry.Service) { s.Instances[0].TTLSeconds = 11 },
		"revision":    func(s *registry.Service) { s.Instances[0].ModRevision = 8 },
	}
	for name, mod := range mods {
		c := cloneService(base)
		mod(&c)
		if serviceEqual(base, c) {
			t.Errorf("%s: a change is not seen", name)
		}
	}
}
