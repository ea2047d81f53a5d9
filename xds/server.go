package xds

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cplog "github.com/envoyproxy/go-control-plane/pkg/log"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/meshplane/meshplane/registry"
)

// Defaults of ServerOptions.
const (
	DefaultHoldOff  = 100 * time.Millisecond
	DefaultMaxDelay = time.Second
	// DefaultMaxOnDemandListeners bounds the xDS-server Listeners created on
	// demand for names Translate did not produce.
	DefaultMaxOnDemandListeners = 1024
)

// ServerOptions configures NewServer. Every field is optional.
type ServerOptions struct {
	// Logger receives the server's logs; nil discards them.
	Logger *slog.Logger
	// Registerer receives the meshplane_xds_* metrics; nil keeps them
	// unregistered.
	Registerer prometheus.Registerer
	// HoldOff is the quiet period after a Notify before translating: every
	// further Notify within HoldOff restarts it. Zero means DefaultHoldOff
	// (100 ms); negative is an error.
	HoldOff time.Duration
	// MaxDelay bounds how long a stream of Notify calls can postpone a
	// publish, counted from the first one. Zero means DefaultMaxDelay (1 s);
	// it must not be below HoldOff.
	MaxDelay time.Duration
	// TracerProvider traces each publish; nil means no tracing.
	TracerProvider trace.TracerProvider

	// Translate, TranslateSidecar, Validate, ValidateSidecar and
	// ServerListener are the translator; nil means this package's functions.
	// Tests replace them.
	//
	// A nil Translate selects the incremental publish: per service, the
	// last input and its TranslateService result are kept and reused while
	// the service is unchanged, and so are the resources' marshalled,
	// versioned entries. The result equals Translate's. A nil Validate then
	// validates only new or changed resources deeply (ValidateMessage) and
	// resolves the references of the whole set every publish, which finds
	// what Validate finds; a non-nil Validate gets the assembled Resources.
	//
	// A nil ValidateSidecar validates each of the sidecar's own resources
	// alone and resolves their references (tracing cluster, inbound
	// clusters) against its own and the shared resources, without
	// re-validating the shared ones per sidecar. With TranslateSidecar and
	// ValidateSidecar both nil, a sidecar's layer is rebuilt only when its
	// description or the tracing configuration changes.
	Translate        func(Input) (*Resources, error)
	TranslateSidecar func(Input, Sidecar) (*Resources, error)
	Validate         func(*Resources) error
	ValidateSidecar  func(shared, own *Resources) error
	ServerListener   func(ip string, port uint32) *listenerv3.Listener
	// MaxOnDemandListeners bounds the on-demand xDS-server Listeners; zero
	// means DefaultMaxOnDemandListeners.
	MaxOnDemandListeners int
}

// Server is Meshplane's ADS server: the one xDS loop (Run) translates the
// latest input after a burst of Notify calls and publishes what changed to
// the caches every stream watches.
type Server struct {
	log     *slog.Logger
	opts    ServerOptions
	metrics *metrics
	tracer  trace.Tracer
	caches  *caches
	xds     serverv3.Server
	ctx     context.Context
	cancel  context.CancelFunc
	notify  chan struct{}
	ready   atomic.Bool

	// layerMu serialises publishes and sidecar layer builds, so a sidecar
	// that connects during a publish never ends up with the older layer.
	layerMu  sync.Mutex
	input    *Input     // last input that translated and validated
	shared   *Resources // its translation; nil when incremental and no custom ValidateSidecar needs it
	sidecars map[string]*sidecarNode
	// memo is the incremental publish's state (nil before the first one,
	// or when Translate is custom). Run writes it under layerMu and reads
	// it without.
	memo        *memo
	lastTracing *Tracing
	// tracingGen counts tracing configuration changes, so a sidecar layer
	// built for an older one is rebuilt.
	tracingGen uint64
	// sharedEps, sharedCls and sharedRts are the published shared
	// resources by name, to resolve sidecars' references.
	sharedEps, sharedCls, sharedRts map[string]*entry

	// Which translator functions are this package's (options left nil).
	incremental, customValidate, defaultSidecar bool

	streamsMu sync.Mutex
	streams   map[streamKey]*streamState
	sotwIDs   atomic.Int64 // numbers the SotW streams (ads.go)
}

// sidecarNode is an Envoy node ID with at least one open stream.
type sidecarNode struct {
	sidecar Sidecar
	refs    int
	// built is set once the layer was built for resolved (the sidecar
	// completed against the input) and tracing generation gen; ownRefs are
	// the references its resources make, ownClusters their cluster names.
	built       bool
	resolved    Sidecar
	gen         uint64
	ownRefs     []problem
	ownClusters map[string]bool
}

// NewServer builds an ADS server. Call Register to serve it on a grpc.Server
// and Run to feed it.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.HoldOff < 0 {
		return nil, fmt.Errorf("xds: hold-off %v is negative", opts.HoldOff)
	}
	if opts.MaxDelay < 0 {
		return nil, fmt.Errorf("xds: max delay %v is negative", opts.MaxDelay)
	}
	if opts.HoldOff == 0 {
		opts.HoldOff = DefaultHoldOff
	}
	if opts.MaxDelay == 0 {
		opts.MaxDelay = DefaultMaxDelay
	}
	if opts.MaxDelay < opts.HoldOff {
		return nil, fmt.Errorf("xds: max delay %v is below hold-off %v", opts.MaxDelay, opts.HoldOff)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.TracerProvider == nil {
		opts.TracerProvider = noop.NewTracerProvider()
	}
	incremental := opts.Translate == nil
	customValidate := opts.Validate != nil
	defaultSidecar := opts.TranslateSidecar == nil && opts.ValidateSidecar == nil
	if opts.Translate == nil {
		opts.Translate = Translate
	}
	if opts.TranslateSidecar == nil {
		opts.TranslateSidecar = TranslateSidecar
	}
	if opts.Validate == nil {
		opts.Validate = Validate
	}
	if opts.ServerListener == nil {
		opts.ServerListener = ServerListener
	}
	if opts.MaxOnDemandListeners == 0 {
		opts.MaxOnDemandListeners = DefaultMaxOnDemandListeners
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{
		log:      opts.Logger.With("component", "xds"),
		opts:     opts,
		metrics:  m,
		tracer:   opts.TracerProvider.Tracer("github.com/meshplane/meshplane/xds"),
		caches:   newCaches(),
		notify:   make(chan struct{}, 1),
		sidecars: map[string]*sidecarNode{},
		streams:  map[streamKey]*streamState{},

		incremental:    incremental,
		customValidate: customValidate,
		defaultSidecar: defaultSidecar,
	}
	s.caches.mux.Caches[muxListenersGRPC] = &onDemandListeners{typeCache: s.caches.listenersGRPC, s: s}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.xds = serverv3.NewServer(s.ctx, s.caches.mux, (*callbacks)(s), sotwv3.WithLogger(cpLogger(s.log)))
	return s, nil
}

// cpLogger bridges go-control-plane's logger to slog. Its Info messages are
// per request (stale nonces, watches), so they go to Debug.
func cpLogger(l *slog.Logger) cplog.Logger {
	l = l.With("lib", "go-control-plane")
	return cplog.LoggerFuncs{
		DebugFunc: func(f string, a ...any) { l.Debug(fmt.Sprintf(f, a...)) },
		InfoFunc:  func(f string, a ...any) { l.Debug(fmt.Sprintf(f, a...)) },
		WarnFunc:  func(f string, a ...any) { l.Warn(fmt.Sprintf(f, a...)) },
		ErrorFunc: func(f string, a ...any) { l.Error(fmt.Sprintf(f, a...)) },
	}
}

// Register serves ADS (SotW StreamAggregatedResources and delta
// DeltaAggregatedResources) on g.
func (s *Server) Register(g *grpc.Server) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, adsServer{s})
}

// Notify tells the server its input changed. It never blocks and may be
// called from any goroutine, any number of times: calls are coalesced.
func (s *Server) Notify() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// Ready reports whether a first translation has been published.
func (s *Server) Ready() bool { return s.ready.Load() }

// Close ends every open delta xDS stream at once and every SotW stream at its
// next request (stopping the grpc.Server ends them all); new streams are
// refused. Run must have returned or be stopping.
func (s *Server) Close() error {
	s.cancel()
	return nil
}

// Run is the xDS loop: it publishes once at start, then after each burst of
// Notify calls (hold-off and max delay, see ServerOptions) calls input,
// translates, validates and publishes what changed. A translation or
// validation error keeps the last good resources. Run returns nil when ctx
// ends.
func (s *Server) Run(ctx context.Context, input func() Input) error {
	if input == nil {
		return errors.New("xds: run: nil input function")
	}
	s.publish(ctx, input)
	for {
		if !debounce(ctx, s.notify, s.opts.HoldOff, s.opts.MaxDelay) {
			return nil
		}
		s.publish(ctx, input)
	}
}

// typeBuild is one type cache's desired shared content.
type typeBuild struct {
	cache   *typeCache
	label   string // span attribute suffix
	desired map[string]*entry
}

// publish translates the current input and applies the differences.
func (s *Server) publish(ctx context.Context, input func() Input) {
	start := time.Now()
	_, span := s.tracer.Start(ctx, "xds.publish")
	defer span.End()
	in := input()
	var (
		builds []typeBuild
		res    *Resources
		inc    *incremental
		err    error
	)
	if s.incremental {
		inc, err = s.buildIncremental(in)
		if err == nil && s.customValidate {
			err = s.opts.Validate(inc.next.resources())
		}
		if err == nil {
			span.SetAttributes(attribute.Int("xds.retranslated_services", inc.retranslated))
		}
	} else {
		res, err = s.opts.Translate(in)
		if err == nil && res == nil {
			err = errors.New("xds: translate returned no resources")
		}
		if err == nil {
			err = s.opts.Validate(res)
		}
		if err == nil {
			builds, err = s.build(res)
		}
	}
	if err != nil {
		s.metrics.translateErrors.Inc()
		span.RecordError(err)
		span.SetStatus(codes.Error, "translation failed")
		s.log.Error("xds: translation failed, serving the last good resources", "err", err)
		return
	}
	s.layerMu.Lock()
	changed, removed := 0, 0
	count := func(label string, c, r int) {
		changed, removed = changed+c, removed+r
		span.SetAttributes(attribute.Int("xds.changed."+label, c), attribute.Int("xds.removed."+label, r))
	}
	if inc != nil {
		cs, rs := inc.commit()
		for i, d := range inc.deltas {
			count(d.label, cs[i], rs[i])
		}
		s.memo = inc.next
		s.sharedEps, s.sharedCls, s.sharedRts = s.memo.eps, s.memo.cls, s.memo.rts
		if s.opts.ValidateSidecar != nil {
			res = s.memo.resources()
		}
	} else {
		for _, b := range builds {
			c, r := b.cache.set("", b.desired)
			count(b.label, c, r)
		}
		s.sharedEps, s.sharedCls, s.sharedRts = builds[0].desired, builds[1].desired, builds[2].desired
	}
	s.input, s.shared = &in, res
	if !tracingEqual(s.lastTracing, in.Tracing) {
		s.tracingGen++
	}
	s.lastTracing = cloneTracing(in.Tracing)
	for id, n := range s.sidecars {
		s.buildSidecarLocked(id, n)
	}
	sidecars := len(s.sidecars)
	s.layerMu.Unlock()

	s.ready.Store(true)
	counts := map[string]int{}
	for _, c := range s.caches.all() {
		counts[typeLabel(c.typeURL)] += c.count()
	}
	for label, n := range counts {
		s.metrics.resources.WithLabelValues(label).Set(float64(n))
	}
	s.metrics.publishes.Inc()
	d := time.Since(start)
	s.metrics.publishDuration.Observe(d.Seconds())
	span.SetAttributes(
		attribute.Int("xds.changed", changed),
		attribute.Int("xds.removed", removed),
		attribute.Int("xds.sidecars", sidecars),
	)
	s.log.Debug("xds: published", "changed", changed, "removed", removed, "sidecars", sidecars, "duration", d)
}

// build marshals and versions every shared resource. Nothing is applied
// unless every resource builds.
func (s *Server) build(res *Resources) ([]typeBuild, error) {
	c := s.caches
	builds := []typeBuild{
		{cache: c.endpoints, label: "endpoints"},
		{cache: c.clusters, label: "clusters"},
		{cache: c.routes, label: "routes"},
		{cache: c.listenersGRPC, label: "listeners"},
		{cache: c.listenersEnvoy, label: "envoy_listeners"},
	}
	var err error
	if builds[0].desired, err = entries(resourcev3.EndpointType, res.Endpoints); err != nil {
		return nil, err
	}
	if builds[1].desired, err = entries(resourcev3.ClusterType, res.Clusters); err != nil {
		return nil, err
	}
	if builds[2].desired, err = entries(resourcev3.RouteType, res.Routes); err != nil {
		return nil, err
	}
	if builds[3].desired, err = entries(resourcev3.ListenerType, res.Listeners); err != nil {
		return nil, err
	}
	if builds[4].desired, err = entries(resourcev3.ListenerType, res.EnvoyListeners); err != nil {
		return nil, err
	}
	return builds, nil
}

// entries versions resources by content, keyed by name.
func entries[T proto.Message](typeURL string, rs []T) (map[string]*entry, error) {
	out := make(map[string]*entry, len(rs))
	for _, r := range rs {
		name := resourceName(r)
		if name == "" {
			return nil, fmt.Errorf("xds: %s without a name", typeURL)
		}
		if out[name] != nil {
			return nil, fmt.Errorf("xds: two %s resources named %q", typeURL, name)
		}
		e, err := newEntry(typeURL, name, r)
		if err != nil {
			return nil, err
		}
		out[name] = e
	}
	return out, nil
}

// resourceName is a resource's xDS name (a ClusterLoadAssignment's is its
// cluster_name).
func resourceName(m proto.Message) string {
	switch r := m.(type) {
	case interface{ GetClusterName() string }:
		return r.GetClusterName()
	case interface{ GetName() string }:
		return r.GetName()
	}
	return ""
}

// attachSidecar counts a stream of an Envoy node and builds its layer if it is
// the node's first.
func (s *Server) attachSidecar(id string, sc Sidecar) {
	s.layerMu.Lock()
	defer s.layerMu.Unlock()
	n := s.sidecars[id]
	if n == nil {
		n = &sidecarNode{sidecar: sc}
		s.sidecars[id] = n
	}
	n.refs++
	if n.refs == 1 || !sidecarEqual(n.sidecar, sc) {
		n.sidecar, n.built = sc, false
		s.buildSidecarLocked(id, n)
	}
}

// detachSidecar drops a stream of an Envoy node and its layer with the last.
func (s *Server) detachSidecar(id string) {
	s.layerMu.Lock()
	defer s.layerMu.Unlock()
	n := s.sidecars[id]
	if n == nil {
		return
	}
	if n.refs--; n.refs > 0 {
		return
	}
	delete(s.sidecars, id)
	s.caches.listenersEnvoy.set(id, nil)
	s.caches.clusters.set(id, nil)
}

// buildSidecarLocked translates and publishes one sidecar's own listeners and
// clusters. On error the node keeps its previous layer.
func (s *Server) buildSidecarLocked(id string, n *sidecarNode) {
	if s.input == nil {
		return // the first publish builds it
	}
	resolved := s.resolveSidecarLocked(n.sidecar)
	if s.defaultSidecar && n.built && n.gen == s.tracingGen && sidecarEqual(n.resolved, resolved) {
		// Same own resources: only the shared ones they refer to may be gone.
		v := &validator{}
		v.resolve(n.ownRefs, s.sidecarExistsLocked(n.ownClusters))
		if err := v.err(); err != nil {
			s.metrics.translateErrors.Inc()
			s.log.Error("xds: sidecar resources refer to missing shared ones", "node", id, "err", err)
		}
		return
	}
	own, err := s.opts.TranslateSidecar(*s.input, resolved)
	if err == nil && own == nil {
		own = &Resources{}
	}
	var refs []problem
	var ownClusters map[string]bool
	if err == nil {
		if s.opts.ValidateSidecar == nil {
			refs, ownClusters, err = s.checkSidecarLocked(own)
		} else {
			err = s.opts.ValidateSidecar(s.shared, own)
		}
	}
	var ls, cs map[string]*entry
	if err == nil {
		ls, err = entries(resourcev3.ListenerType, append(append([]*listenerv3.Listener(nil), own.EnvoyListeners...), own.Listeners...))
	}
	if err == nil {
		cs, err = entries(resourcev3.ClusterType, own.Clusters)
	}
	if err != nil {
		s.metrics.translateErrors.Inc()
		s.log.Error("xds: sidecar translation failed, keeping its last good resources", "node", id, "err", err)
		return
	}
	s.caches.clusters.set(id, cs)
	s.caches.listenersEnvoy.set(id, ls)
	n.built, n.resolved, n.gen, n.ownRefs, n.ownClusters = true, resolved, s.tracingGen, refs, ownClusters
}

// resolveSidecarLocked completes a sidecar description against the last
// input (sidecarFor), looking its service up in the memo when there is one.
func (s *Server) resolveSidecarLocked(sc Sidecar) Sidecar {
	if s.memo == nil {
		return sidecarFor(sc, *s.input)
	}
	var in Input
	if svc, ok := s.memo.service(sc.Service, sc.Namespace); ok {
		in.Services = []registry.Service{svc}
	}
	return sidecarFor(sc, in)
}

// checkSidecarLocked validates a sidecar's own resources, each alone, and
// resolves the references they make against the merged view: its own
// clusters and the shared resources (the tracing cluster). The shared
// resources were validated when published and are not checked again.
func (s *Server) checkSidecarLocked(own *Resources) ([]problem, map[string]bool, error) {
	v := &validator{collect: true}
	var refs []problem
	for _, l := range own.EnvoyListeners {
		refs = append(refs, v.alone("envoy listener", l.GetName(), l)...)
	}
	for _, l := range own.Listeners {
		refs = append(refs, v.alone("listener", l.GetName(), l)...)
	}
	ownClusters := make(map[string]bool, len(own.Clusters))
	for _, c := range own.Clusters {
		refs = append(refs, v.alone("cluster", c.GetName(), c)...)
		ownClusters[c.GetName()] = true
	}
	v.resolve(refs, s.sidecarExistsLocked(ownClusters))
	return refs, ownClusters, v.err()
}

// sidecarExistsLocked resolves a sidecar's references: clusters among its
// own and the shared ones, everything else among the shared ones.
func (s *Server) sidecarExistsLocked(ownClusters map[string]bool) func(kind, name string) bool {
	shared := sharedExists(s.sharedEps, s.sharedCls, s.sharedRts)
	return func(kind, name string) bool {
		return kind == refCluster && ownClusters[name] || shared(kind, name)
	}
}

func sidecarEqual(a, b Sidecar) bool {
	if a.Service != b.Service || a.Namespace != b.Namespace || len(a.InboundPorts) != len(b.InboundPorts) {
		return false
	}
	for i := range a.InboundPorts {
		if a.InboundPorts[i] != b.InboundPorts[i] {
			return false
		}
	}
	return true
}
