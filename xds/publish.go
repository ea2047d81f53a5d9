package xds

import (
	"fmt"
	"maps"
	"slices"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshplane/meshplane/registry"
)

// The incremental publish (the default translator) keeps, per service, the
// input it last translated and the resulting resources with their entries
// (marshalled, versioned, validated alone, references recorded). A service
// equal to its last input (serviceEqual) reuses all of that: only changed
// services are translated, marshalled, hashed and deep-validated; the
// cross-resource references of the whole set are re-resolved every publish
// (map lookups). The memo lives in the Server; TranslateService, Assemble
// and Translate stay pure. A tracing change re-translates every service.

// memo is the incremental publish state of one published translation.
type memo struct {
	tracing  *Tracing // a copy of the configuration it was built with
	services map[string]*serviceMemo
	// outboundListener and tracingCluster depend only on tracing;
	// outboundRoute on every service's virtual hosts.
	outboundListener, tracingCluster, outboundRoute *entry
	// The published shared resources by name, per type cache, and how many
	// services list each server Listener. A publish computes deltas against
	// them and changes them in place when it commits.
	eps, cls, rts, lis, envoy map[string]*entry
	serverOwners              map[string]int
}

func newMemo() *memo {
	return &memo{
		services: map[string]*serviceMemo{},
		eps:      map[string]*entry{}, cls: map[string]*entry{}, rts: map[string]*entry{},
		lis: map[string]*entry{}, envoy: map[string]*entry{},
		serverOwners: map[string]int{},
	}
}

// serviceMemo is one service's last input, translation and entries.
type serviceMemo struct {
	svc registry.Service // a deep copy, so callers may reuse their slices
	res *ServiceResources
	// Entries parallel to res's slices.
	clusters, endpoints, listeners, routes, serverListeners []*entry
	refs                                                    []problem // of every entry
}

// typeDelta is one type cache's change in a publish.
type typeDelta struct {
	cache  *typeCache
	label  string
	names  map[string]*entry // the memo's published set
	upsert map[string]*entry
	remove map[string]bool
}

func (d *typeDelta) put(e *entry) {
	d.upsert[e.name] = e
	delete(d.remove, e.name)
}

func (d *typeDelta) drop(name string) {
	if d.upsert[name] == nil {
		d.remove[name] = true
	}
}

// has reports whether name exists once the delta is applied.
func (d *typeDelta) has(name string) bool {
	if d.upsert[name] != nil {
		return true
	}
	return !d.remove[name] && d.names[name] != nil
}

// incremental is a publish built from the memo, applied (commit) only if it
// validates.
type incremental struct {
	next *memo
	// deltas: endpoints, clusters, routes, gRPC listeners, Envoy listeners.
	deltas       []*typeDelta
	serverAdj    map[string]int // change of memo.serverOwners
	retranslated int
}

// buildIncremental translates what changed since s.memo, validates it, and
// computes every type cache's delta. Nothing is changed: on error the memo
// and the caches keep the last good publish.
func (s *Server) buildIncremental(in Input) (*incremental, error) {
	cur := s.memo
	if cur == nil {
		cur = newMemo()
	}
	out := &incremental{serverAdj: map[string]int{}}
	reset := cur.outboundListener == nil || !tracingEqual(cur.tracing, in.Tracing)
	if reset && in.Tracing != nil {
		if err := in.Tracing.validate(); err != nil {
			return nil, err
		}
	}
	next := *cur
	next.tracing = cloneTracing(in.Tracing)
	next.services = make(map[string]*serviceMemo, len(in.Services))
	out.next = &next
	c := s.caches
	delta := func(cache *typeCache, label string, names map[string]*entry) *typeDelta {
		return &typeDelta{cache: cache, label: label, names: names, upsert: map[string]*entry{}, remove: map[string]bool{}}
	}
	eps, cls, rts := delta(c.endpoints, "endpoints", cur.eps), delta(c.clusters, "clusters", cur.cls), delta(c.routes, "routes", cur.rts)
	lis, envoy := delta(c.listenersGRPC, "listeners", cur.lis), delta(c.listenersEnvoy, "envoy_listeners", cur.envoy)
	out.deltas = []*typeDelta{eps, cls, rts, lis, envoy}
	serverNew := map[string]*entry{}
	// replace moves one service's entries from old to sm (either may be
	// nil). Names are derived from the (unique) service host, so only
	// server Listeners can be listed by two services.
	perType := []struct {
		d   *typeDelta
		get func(*serviceMemo) []*entry
	}{
		{eps, func(m *serviceMemo) []*entry { return m.endpoints }},
		{cls, func(m *serviceMemo) []*entry { return m.clusters }},
		{rts, func(m *serviceMemo) []*entry { return m.routes }},
		{lis, func(m *serviceMemo) []*entry { return m.listeners }},
	}
	replace := func(old, sm *serviceMemo) {
		for _, t := range perType {
			if old != nil {
				for _, e := range t.get(old) {
					t.d.drop(e.name)
				}
			}
			if sm != nil {
				for _, e := range t.get(sm) {
					t.d.put(e)
				}
			}
		}
		if old != nil {
			for _, e := range old.serverListeners {
				out.serverAdj[e.name]--
			}
		}
		if sm != nil {
			for _, e := range sm.serverListeners {
				out.serverAdj[e.name]++
				serverNew[e.name] = e
			}
		}
	}

	v := &validator{collect: true}
	var chain *listenerv3.FilterChain
	vhostsChanged := cur.outboundRoute == nil
	for i, svc := range in.Services {
		host := svc.Host()
		if next.services[host] != nil {
			return nil, fmt.Errorf("xds: input: services[%d]: duplicate service %q", i, host)
		}
		old := cur.services[host]
		if !reset && old != nil && serviceEqual(old.svc, svc) {
			next.services[host] = old
			continue
		}
		if err := validateService(fmt.Sprintf("services[%d]", i), svc); err != nil {
			return nil, err
		}
		if chain == nil {
			chain = serverFilterChain()
		}
		res := translateService(svc, in.Tracing, chain)
		if old != nil && slices.EqualFunc(old.res.VirtualHosts, res.VirtualHosts, func(a, b *routev3.VirtualHost) bool {
			return proto.Equal(a, b)
		}) {
			res.VirtualHosts = old.res.VirtualHosts // keeps the outbound route
		} else {
			vhostsChanged = true
		}
		sm, err := newServiceMemo(v, svc, res)
		if err != nil {
			return nil, err
		}
		next.services[host] = sm
		replace(old, sm)
		out.retranslated++
	}
	for host, old := range cur.services {
		if next.services[host] == nil {
			vhostsChanged = true
			replace(old, nil)
		}
	}
	for name, adj := range out.serverAdj {
		switch n := cur.serverOwners[name] + adj; {
		case n == 0 && cur.serverOwners[name] > 0:
			lis.drop(name)
		case n > 0 && serverNew[name] != nil:
			lis.put(serverNew[name])
		}
	}

	var err error
	if reset {
		if next.outboundListener, err = newCheckedEntry(v, resourcev3.ListenerType, outboundListener(in.Tracing)); err != nil {
			return nil, err
		}
		envoy.put(next.outboundListener)
		if cur.tracingCluster != nil {
			cls.drop(cur.tracingCluster.name)
		}
		next.tracingCluster = nil
		if in.Tracing != nil {
			if next.tracingCluster, err = newCheckedEntry(v, resourcev3.ClusterType, tracingCluster(in.Tracing)); err != nil {
				return nil, err
			}
			cls.put(next.tracingCluster)
		}
	}
	if vhostsChanged {
		var vhosts []*routev3.VirtualHost
		for _, sm := range next.services {
			vhosts = append(vhosts, sm.res.VirtualHosts...)
		}
		if next.outboundRoute, err = newCheckedEntry(v, resourcev3.RouteType, outboundRoute(vhosts)); err != nil {
			return nil, err
		}
		rts.put(next.outboundRoute)
	}
	if err := v.err(); err != nil {
		return nil, err
	}
	// Every reference of the whole set, against the set as it will be.
	exists := func(kind, name string) bool {
		switch kind {
		case refCluster:
			return cls.has(name)
		case refRoute:
			return rts.has(name)
		case refAssignment:
			return eps.has(name)
		}
		return false
	}
	rv := &validator{}
	for _, sm := range next.services {
		rv.resolve(sm.refs, exists)
	}
	for _, e := range []*entry{next.outboundListener, next.outboundRoute, next.tracingCluster} {
		if e != nil {
			rv.resolve(e.refs, exists)
		}
	}
	if err := rv.err(); err != nil {
		return nil, err
	}
	return out, nil
}

// commit applies the publish to the memo's published sets and to the
// caches. It returns the caches' change counts per delta.
func (inc *incremental) commit() (changed, removed []int) {
	for name, adj := range inc.serverAdj {
		if n := inc.next.serverOwners[name] + adj; n > 0 {
			inc.next.serverOwners[name] = n
		} else {
			delete(inc.next.serverOwners, name)
		}
	}
	for _, d := range inc.deltas {
		for name := range d.remove {
			delete(d.names, name)
		}
		for name, e := range d.upsert {
			d.names[name] = e
		}
		c, r := d.cache.apply(d.upsert, d.remove)
		changed, removed = append(changed, c), append(removed, r)
	}
	return changed, removed
}

// newServiceMemo builds the entries of one service's translation, checking
// each resource alone with v.
func newServiceMemo(v *validator, svc registry.Service, res *ServiceResources) (*serviceMemo, error) {
	sm := &serviceMemo{svc: cloneService(svc), res: res}
	var err error
	if sm.clusters, err = checkedEntries(v, resourcev3.ClusterType, res.Clusters); err != nil {
		return nil, err
	}
	if sm.endpoints, err = checkedEntries(v, resourcev3.EndpointType, res.Endpoints); err != nil {
		return nil, err
	}
	if sm.listeners, err = checkedEntries(v, resourcev3.ListenerType, res.Listeners); err != nil {
		return nil, err
	}
	if sm.routes, err = checkedEntries(v, resourcev3.RouteType, res.Routes); err != nil {
		return nil, err
	}
	if sm.serverListeners, err = checkedEntries(v, resourcev3.ListenerType, res.ServerListeners); err != nil {
		return nil, err
	}
	for _, es := range [][]*entry{sm.clusters, sm.endpoints, sm.listeners, sm.routes, sm.serverListeners} {
		for _, e := range es {
			sm.refs = append(sm.refs, e.refs...)
		}
	}
	return sm, nil
}

func checkedEntries[T proto.Message](v *validator, typeURL string, rs []T) ([]*entry, error) {
	out := make([]*entry, 0, len(rs))
	for _, r := range rs {
		e, err := newCheckedEntry(v, typeURL, r)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// newCheckedEntry marshals and versions r, validates it alone with v (its
// problems stay in v) and records the references it makes.
func newCheckedEntry(v *validator, typeURL string, r proto.Message) (*entry, error) {
	name := resourceName(r)
	if name == "" {
		return nil, fmt.Errorf("xds: %s without a name", typeURL)
	}
	e, err := newEntry(typeURL, name, r)
	if err != nil {
		return nil, err
	}
	e.refs = v.alone(validateKind(typeURL), name, r)
	return e, nil
}

// validateKind is how Validate's errors name a resource of this type.
func validateKind(typeURL string) string {
	switch typeURL {
	case resourcev3.ClusterType:
		return "cluster"
	case resourcev3.EndpointType:
		return "endpoints"
	case resourcev3.RouteType:
		return "route"
	}
	return "listener"
}

// sharedExists resolves references against shared resources.
func sharedExists(eps, cls, rts map[string]*entry) func(kind, name string) bool {
	return func(kind, name string) bool {
		switch kind {
		case refCluster:
			return cls[name] != nil
		case refRoute:
			return rts[name] != nil
		case refAssignment:
			return eps[name] != nil
		}
		return false
	}
}

// resources assembles the memo into Resources (for a custom Validate or
// ValidateSidecar), equal to Translate of the memo's input.
func (m *memo) resources() *Resources {
	parts := make([]*ServiceResources, 0, len(m.services))
	for _, host := range slices.Sorted(maps.Keys(m.services)) {
		parts = append(parts, m.services[host].res)
	}
	return Assemble(parts, m.tracing)
}

// service returns the memo's input for a service, if any.
func (m *memo) service(name, namespace string) (registry.Service, bool) {
	if m == nil {
		return registry.Service{}, false
	}
	sm := m.services[registry.Service{Name: name, Namespace: namespace}.Host()]
	if sm == nil {
		return registry.Service{}, false
	}
	return sm.svc, true
}

// serviceEqual reports whether two services are equal in every field, as
// reflect.DeepEqual would but without reflection: it runs for every
// instance of the mesh on every publish. Comparing all fields, not only
// those the translator reads, keeps the memo right whatever the translator
// comes to read; a field that changes alone (a re-registration's revision)
// costs one service's translation, and no push, as versions are content
// hashes. TestServiceEqualKnowsEveryField fails when a field is added.
func serviceEqual(a, b registry.Service) bool {
	if a.Name != b.Name || a.Namespace != b.Namespace || !portsEqual(a.Ports, b.Ports) || len(a.Instances) != len(b.Instances) {
		return false
	}
	for i := range a.Instances {
		x, y := &a.Instances[i], &b.Instances[i]
		if x.ID != y.ID || x.Address != y.Address || x.Weight != y.Weight || x.Health != y.Health ||
			x.ModRevision != y.ModRevision || x.Service != y.Service || x.Namespace != y.Namespace ||
			x.Locality != y.Locality || x.Version != y.Version || x.TTLSeconds != y.TTLSeconds ||
			!portsEqual(x.Ports, y.Ports) || !maps.Equal(x.Labels, y.Labels) || !maps.Equal(x.Metadata, y.Metadata) {
			return false
		}
	}
	return true
}

// portsEqual is slices.Equal for ports, written out: this loop runs for
// every instance of the mesh on every publish.
func portsEqual(a, b []registry.Port) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Port != b[i].Port || a[i].TargetPort != b[i].TargetPort || a[i].Protocol != b[i].Protocol || a[i].Name != b[i].Name {
			return false
		}
	}
	return true
}

// cloneService copies a service deeply.
func cloneService(svc registry.Service) registry.Service {
	out := registry.Service{Name: svc.Name, Namespace: svc.Namespace, Ports: slices.Clone(svc.Ports)}
	out.Instances = make([]registry.Instance, len(svc.Instances))
	for i, in := range svc.Instances {
		in.Ports, in.Labels, in.Metadata = slices.Clone(in.Ports), maps.Clone(in.Labels), maps.Clone(in.Metadata)
		out.Instances[i] = in
	}
	return out
}

func tracingEqual(a, b *Tracing) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.CollectorHost == b.CollectorHost && a.CollectorPort == b.CollectorPort &&
		a.SamplingPercent == b.SamplingPercent && maps.Equal(a.ServiceSamplingPercent, b.ServiceSamplingPercent)
}

func cloneTracing(t *Tracing) *Tracing {
	if t == nil {
		return nil
	}
	c := *t
	c.ServiceSamplingPercent = maps.Clone(t.ServiceSamplingPercent)
	return &c
}
