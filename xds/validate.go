package xds

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	// Every extension the translator packs into an Any must resolve when
	// Validate unpacks it; these are the ones not imported by a builder.
	_ "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/tracers/opentelemetry/resource_detectors/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// maxValidateErrors caps how many problems one Validate call reports.
const maxValidateErrors = 20

// Validate checks a translation the way its consumers will, before it is
// published:
//
//   - every message passes its protoc-gen-validate rules (ValidateAll),
//     including every message packed in a google.protobuf.Any, recursively;
//   - gRPC's extra rules: lb_policy ROUND_ROBIN, RING_HASH (with XX_HASH) or
//     LEAST_REQUEST, EDS over ADS; every LocalityLbEndpoints with a locality
//     and a weight ≥ 1, no duplicate locality per priority, priorities
//     contiguous from 0, no endpoint weight 0, no duplicate endpoint address;
//     HTTP connection managers with the router filter last and RDS over ADS;
//     retry policies without num_retries 0;
//   - references resolve: every RDS name to a RouteConfiguration, every route,
//     TCP proxy and Envoy gRPC service cluster to a Cluster, every EDS cluster
//     to a ClusterLoadAssignment (go-control-plane's Snapshot.Consistent does
//     not follow api_listener, and does none of the rest);
//   - names are non-empty and unique per resource type.
//
// Errors name the resource and the field path; at most 20 are joined.
// Resources meant to be served together (Translate's and TranslateSidecar's
// output for one sidecar) must be validated together (see Merge).
func Validate(res *Resources) error {
	if res == nil {
		return errors.New("xds: validate: nil resources")
	}
	v := &validator{
		routes:    map[string]bool{},
		clusters:  map[string]bool{},
		endpoints: map[string]bool{},
	}
	for _, r := range res.Routes {
		v.routes[r.GetName()] = true
	}
	for _, c := range res.Clusters {
		v.clusters[c.GetName()] = true
	}
	for _, e := range res.Endpoints {
		v.endpoints[e.GetClusterName()] = true
	}
	v.checkNames("listener", names(res.Listeners, (*listenerv3.Listener).GetName))
	v.checkNames("envoy listener", names(res.EnvoyListeners, (*listenerv3.Listener).GetName))
	v.checkNames("route", names(res.Routes, (*routev3.RouteConfiguration).GetName))
	v.checkNames("cluster", names(res.Clusters, (*clusterv3.Cluster).GetName))
	v.checkNames("endpoints", names(res.Endpoints, (*endpointv3.ClusterLoadAssignment).GetClusterName))
	for _, l := range res.Listeners {
		v.resource("listener", l.GetName(), l)
	}
	for _, l := range res.EnvoyListeners {
		v.resource("envoy listener", l.GetName(), l)
	}
	for _, r := range res.Routes {
		v.resource("route", r.GetName(), r)
	}
	for _, c := range res.Clusters {
		v.resource("cluster", c.GetName(), c)
	}
	for _, e := range res.Endpoints {
		v.resource("endpoints", e.GetClusterName(), e)
	}
	return v.err()
}

// ValidateMessage runs ValidateAll on m and on every message packed in a
// google.protobuf.Any inside it, recursively, plus the gRPC-specific rules
// that can be checked on one message (see Validate). It does not resolve
// references to other resources.
func ValidateMessage(m proto.Message) error {
	v := &validator{}
	if m == nil {
		return errors.New("xds: validate: nil message")
	}
	name := ""
	if n, ok := m.(interface{ GetName() string }); ok {
		name = n.GetName()
	}
	v.resource(string(m.ProtoReflect().Descriptor().FullName()), name, m)
	return v.err()
}

// validator collects problems while walking resources. routes, clusters and
// endpoints are the names known to exist; nil maps skip reference checks.
type validator struct {
	routes, clusters, endpoints map[string]bool
	// collect makes ref record every reference as a problem with refKind
	// set, to be resolved later (see alone and resolve), instead of
	// checking it against the maps above.
	collect bool
	// kind and name identify the resource being walked.
	kind, name string
	errs       []problem
	// anys memoises the problems found inside each distinct packed message
	// (type URL + bytes), with paths relative to the Any: thousands of
	// resources carry identical HTTP connection managers, and unpacking
	// each costs more than everything else.
	anys map[string][]problem
	// deep memoises, per message type, whether it can hold anything walk
	// acts on (an Any or a type check handles); other sub-messages are
	// covered by their parent's ValidateAll and skipped.
	deep map[protoreflect.FullName]bool
}

// isCheckedType reports whether check inspects messages of this type (Any
// is unpacked by sub).
func isCheckedType(n protoreflect.FullName) bool {
	switch n {
	case "google.protobuf.Any",
		"envoy.config.cluster.v3.Cluster",
		"envoy.config.endpoint.v3.ClusterLoadAssignment",
		"envoy.config.route.v3.RetryPolicy",
		"envoy.config.route.v3.RouteAction",
		"envoy.config.core.v3.GrpcService.EnvoyGrpc",
		"envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
		"envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager":
		return true
	}
	return false
}

// needsWalk reports whether a message of type md can contain an Any or a
// checked type. During recursion a type counts as deep, which is safe for
// cyclic types.
func (v *validator) needsWalk(md protoreflect.MessageDescriptor) bool {
	if d, ok := v.deep[md.FullName()]; ok {
		return d
	}
	if v.deep == nil {
		v.deep = map[protoreflect.FullName]bool{}
	}
	if isCheckedType(md.FullName()) {
		v.deep[md.FullName()] = true
		return true
	}
	v.deep[md.FullName()] = true
	deep := false
	fields := md.Fields()
	for i := 0; i < fields.Len() && !deep; i++ {
		fd := fields.Get(i)
		if fd.IsMap() {
			fd = fd.MapValue()
		}
		if isMessage(fd) && v.needsWalk(fd.Message()) {
			deep = true
		}
	}
	v.deep[md.FullName()] = deep
	return deep
}

// problem is one finding; kind and name are filled when it is reported.
// A problem with refKind set is not a finding but a reference a collecting
// validator recorded: the resource at path names refKind refName.
type problem struct {
	kind, name, path, msg string
	refKind, refName      string
}

func (v *validator) err() error {
	errs := make([]error, 0, min(len(v.errs), maxValidateErrors+1))
	for i, p := range v.errs {
		if i == maxValidateErrors {
			errs = append(errs, fmt.Errorf("xds: validate: %d more problems", len(v.errs)-maxValidateErrors))
			break
		}
		path := p.path
		if path == "" {
			path = "(root)"
		}
		if p.kind == "" {
			errs = append(errs, fmt.Errorf("xds: validate: %s", p.msg))
			continue
		}
		errs = append(errs, fmt.Errorf("xds: validate: %s %q: %s: %s", p.kind, p.name, path, p.msg))
	}
	return errors.Join(errs...)
}

func names[T any](items []T, name func(T) string) []string {
	out := make([]string, 0, len(items))
	for _, it := range items {
		out = append(out, name(it))
	}
	return out
}

func (v *validator) checkNames(kind string, ns []string) {
	seen := map[string]bool{}
	for i, n := range ns {
		switch {
		case n == "":
			v.errs = append(v.errs, problem{msg: fmt.Sprintf("%s #%d: empty name", kind, i)})
		case seen[n]:
			v.errs = append(v.errs, problem{msg: fmt.Sprintf("%s %q: duplicate name", kind, n)})
		}
		seen[n] = true
	}
}

func (v *validator) fail(path, format string, args ...any) {
	v.errs = append(v.errs, problem{kind: v.kind, name: v.name, path: path, msg: fmt.Sprintf(format, args...)})
}

// resource validates one top-level resource.
func (v *validator) resource(kind, name string, m proto.Message) {
	v.kind, v.name = kind, name
	if m == nil {
		v.fail("", "nil message")
		return
	}
	v.message("", m.ProtoReflect())
}

// message runs ValidateAll on a message that is the root of a resource or
// of an Any's content (ValidateAll already covers ordinary sub-messages),
// then walks it for Anys and message-specific rules.
func (v *validator) message(path string, m protoreflect.Message) {
	if va, ok := m.Interface().(interface{ ValidateAll() error }); ok {
		if err := va.ValidateAll(); err != nil {
			v.fail(path, "%v", err)
		}
	}
	v.walk(path, m)
}

// walk visits every set field of m in field-number order (map entries in key
// order, so errors come out deterministically).
func (v *validator) walk(path string, m protoreflect.Message) {
	v.check(path, m.Interface())
	type field struct {
		fd  protoreflect.FieldDescriptor
		val protoreflect.Value
	}
	var fields []field
	// Range visits only populated fields, far cheaper than Has on each.
	m.Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		sub := fd
		if fd.IsMap() {
			sub = fd.MapValue()
		}
		if isMessage(sub) && v.needsWalk(sub.Message()) {
			fields = append(fields, field{fd, val})
		}
		return true
	})
	slices.SortFunc(fields, func(a, b field) int { return cmp.Compare(a.fd.Number(), b.fd.Number()) })
	for _, f := range fields {
		fd, val := f.fd, f.val
		p := join(path, string(fd.Name()))
		switch {
		case fd.IsList():
			l := val.List()
			for j := 0; j < l.Len(); j++ {
				v.sub(p+"["+strconv.Itoa(j)+"]", l.Get(j).Message())
			}
		case fd.IsMap():
			mp := val.Map()
			keys := make([]protoreflect.MapKey, 0, mp.Len())
			mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
				keys = append(keys, k)
				return true
			})
			slices.SortFunc(keys, func(a, b protoreflect.MapKey) int { return cmp.Compare(a.String(), b.String()) })
			for _, k := range keys {
				v.sub(p+"["+strconv.Quote(k.String())+"]", mp.Get(k).Message())
			}
		default:
			v.sub(p, val.Message())
		}
	}
}

func isMessage(fd protoreflect.FieldDescriptor) bool {
	return fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind
}

// sub descends into a sub-message, unpacking it when it is an Any.
func (v *validator) sub(path string, m protoreflect.Message) {
	a, ok := m.Interface().(*anypb.Any)
	if !ok {
		v.walk(path, m)
		return
	}
	key := a.GetTypeUrl() + "\x00" + string(a.GetValue())
	if found, ok := v.anys[key]; ok {
		for _, p := range found {
			v.errs = append(v.errs, problem{kind: v.kind, name: v.name, path: path + p.path, msg: p.msg, refKind: p.refKind, refName: p.refName})
		}
		return
	}
	start := len(v.errs)
	inner, err := a.UnmarshalNew()
	if err != nil {
		v.fail(path, "unpack %s: %v", a.GetTypeUrl(), err)
	} else {
		v.message(path+"("+string(inner.ProtoReflect().Descriptor().FullName())+")", inner.ProtoReflect())
	}
	if v.anys == nil {
		v.anys = map[string][]problem{}
	}
	found := make([]problem, 0, len(v.errs)-start)
	for _, p := range v.errs[start:] {
		found = append(found, problem{path: strings.TrimPrefix(p.path, path), msg: p.msg, refKind: p.refKind, refName: p.refName})
	}
	v.anys[key] = found
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// check applies the gRPC-specific and cross-reference rules of one message.
func (v *validator) check(path string, m proto.Message) {
	switch m := m.(type) {
	case *clusterv3.Cluster:
		v.checkCluster(path, m)
	case *endpointv3.ClusterLoadAssignment:
		v.checkAssignment(path, m)
	case *hcmv3.HttpConnectionManager:
		v.checkHCM(path, m)
	case *routev3.RetryPolicy:
		if n := m.GetNumRetries(); n != nil && n.GetValue() == 0 {
			v.fail(join(path, "num_retries"), "0 is rejected by gRPC (leave unset for the default)")
		}
	case *routev3.RouteAction:
		if c := m.GetCluster(); c != "" {
			v.ref(join(path, "cluster"), refCluster, c, v.clusters)
		}
		for i, wc := range m.GetWeightedClusters().GetClusters() {
			if wc.GetName() != "" {
				v.ref(fmt.Sprintf("%s.weighted_clusters.clusters[%d].name", path, i), refCluster, wc.GetName(), v.clusters)
			}
		}
	case *tcpproxyv3.TcpProxy:
		if c := m.GetCluster(); c != "" {
			v.ref(join(path, "cluster"), refCluster, c, v.clusters)
		}
	case *corev3.GrpcService_EnvoyGrpc:
		v.ref(join(path, "cluster_name"), refCluster, m.GetClusterName(), v.clusters)
	}
}

// Kinds of references between resources (problem.refKind).
const (
	refCluster    = "cluster"
	refRoute      = "RouteConfiguration"
	refAssignment = "ClusterLoadAssignment"
)

// ref reports a reference to a resource that is not in known, or records
// it when collecting.
func (v *validator) ref(path, kind, name string, known map[string]bool) {
	if v.collect {
		v.errs = append(v.errs, problem{kind: v.kind, name: v.name, path: path, refKind: kind, refName: name})
		return
	}
	if known != nil && !known[name] {
		v.fail(path, "%s %q does not exist", kind, name)
	}
}

func (v *validator) checkCluster(path string, c *clusterv3.Cluster) {
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_LEAST_REQUEST:
	case clusterv3.Cluster_RING_HASH:
		rh := c.GetRingHashLbConfig()
		if rh.GetHashFunction() != clusterv3.Cluster_RingHashLbConfig_XX_HASH {
			v.fail(join(path, "ring_hash_lb_config.hash_function"), "%v is rejected by gRPC (XX_HASH only)", rh.GetHashFunction())
		}
		if lo, hi := rh.GetMinimumRingSize(), rh.GetMaximumRingSize(); lo != nil && hi != nil && lo.GetValue() > hi.GetValue() {
			v.fail(join(path, "ring_hash_lb_config"), "minimum_ring_size %d above maximum_ring_size %d", lo.GetValue(), hi.GetValue())
		}
	default:
		v.fail(join(path, "lb_policy"), "%v is rejected by gRPC (ROUND_ROBIN, RING_HASH or LEAST_REQUEST only)", c.GetLbPolicy())
	}
	if c.GetType() == clusterv3.Cluster_EDS {
		if c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil && c.GetEdsClusterConfig().GetEdsConfig().GetSelf() == nil {
			v.fail(join(path, "eds_cluster_config.eds_config"), "must be ads (or self) for gRPC")
		}
		name := c.GetEdsClusterConfig().GetServiceName()
		if name == "" {
			name = c.GetName()
		}
		v.ref(join(path, "eds_cluster_config"), refAssignment, name, v.endpoints)
	}
}

func (v *validator) checkAssignment(path string, cla *endpointv3.ClusterLoadAssignment) {
	type key struct {
		loc      string
		priority uint32
	}
	seenLoc := map[key]bool{}
	seenAddr := map[string]bool{}
	var maxPriority uint32
	priorities := map[uint32]bool{}
	for i, lle := range cla.GetEndpoints() {
		lp := fmt.Sprintf("%s[%d]", join(path, "endpoints"), i)
		loc := lle.GetLocality()
		if loc == nil {
			v.fail(join(lp, "locality"), "missing (gRPC NACKs a locality without one)")
		}
		if lle.GetLoadBalancingWeight().GetValue() == 0 {
			v.fail(join(lp, "load_balancing_weight"), "must be ≥ 1 (gRPC drops the locality)")
		}
		k := key{strings.Join([]string{loc.GetRegion(), loc.GetZone(), loc.GetSubZone()}, "\x00"), lle.GetPriority()}
		if seenLoc[k] {
			v.fail(join(lp, "locality"), "duplicate locality in priority %d", lle.GetPriority())
		}
		seenLoc[k] = true
		priorities[lle.GetPriority()] = true
		maxPriority = max(maxPriority, lle.GetPriority())
		var sum uint64
		for j, e := range lle.GetLbEndpoints() {
			ep := fmt.Sprintf("%s[%d]", join(lp, "lb_endpoints"), j)
			if w := e.GetLoadBalancingWeight(); w != nil && w.GetValue() == 0 {
				v.fail(join(ep, "load_balancing_weight"), "0 is rejected by gRPC")
			}
			sum += uint64(e.GetLoadBalancingWeight().GetValue())
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			addr := net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
			if seenAddr[addr] {
				v.fail(join(ep, "endpoint.address"), "duplicate endpoint address %s", addr)
			}
			seenAddr[addr] = true
		}
		if sum > 1<<32-1 {
			v.fail(join(lp, "lb_endpoints"), "sum of weights exceeds 2^32-1")
		}
	}
	for p := uint32(0); p < maxPriority; p++ {
		if !priorities[p] {
			v.fail(join(path, "endpoints"), "priorities not contiguous: %d missing", p)
		}
	}
}

func (v *validator) checkHCM(path string, hcm *hcmv3.HttpConnectionManager) {
	filters := hcm.GetHttpFilters()
	if len(filters) == 0 || filters[len(filters)-1].GetName() != routerFilterName {
		v.fail(join(path, "http_filters"), "the router filter %s must be last", routerFilterName)
	}
	if rds := hcm.GetRds(); rds != nil {
		if rds.GetConfigSource().GetAds() == nil && rds.GetConfigSource().GetSelf() == nil {
			v.fail(join(path, "rds.config_source"), "must be ads (or self) for gRPC")
		}
		v.ref(join(path, "rds.route_config_name"), refRoute, rds.GetRouteConfigName(), v.routes)
	}
}

// alone validates one resource like ValidateMessage, with a collecting
// validator (whose Any memo then serves every resource it checks): the
// problems stay in v.errs, the references the resource makes are returned
// for resolve.
func (v *validator) alone(kind, name string, m proto.Message) []problem {
	start := len(v.errs)
	v.resource(kind, name, m)
	var refs []problem
	kept := v.errs[:start]
	for _, p := range v.errs[start:] { // writes never pass the read index
		if p.refKind != "" {
			refs = append(refs, p)
		} else {
			kept = append(kept, p)
		}
	}
	v.errs = kept
	return refs
}

// resolve reports every reference in refs for which exists is false, as
// Validate would have.
func (v *validator) resolve(refs []problem, exists func(kind, name string) bool) {
	for _, r := range refs {
		if !exists(r.refKind, r.refName) {
			v.errs = append(v.errs, problem{kind: r.kind, name: r.name, path: r.path,
				msg: fmt.Sprintf("%s %q does not exist", r.refKind, r.refName)})
		}
	}
}
