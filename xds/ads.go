package xds

import (
	"errors"
	"io"
	"strconv"
	"sync"
	"sync/atomic"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// The SotW ADS loop. Proxyless gRPC clients (thousands of them) use SotW, so
// it is served here rather than by go-control-plane's SotW server, which runs
// two goroutines per stream plus a channel per watch and re-creates every
// watch after each response. Delta (Envoy sidecars) stays on go-control-plane.
//
//   - The gRPC handler goroutine is the stream's only long-lived goroutine: it
//     loops on Recv and applies each request (subscribe, unsubscribe, ACK,
//     NACK) inline to the stream's per-type subscription, which the type
//     cache indexes by name (or as wildcard) until the subscription changes.
//   - A publish does not wake it: the cache marks each affected stream dirty
//     for the type (an atomic bit) and, if no send is in flight for the
//     stream, starts a goroutine that builds and sends the latest state of
//     every dirty type, then exits. Repeated publishes coalesce (latest
//     wins); a client that does not read blocks only its own sender.
//   - A request that needs an answer marks its type dirty the same way, and
//     the handler sends inline when no sender runs. Sends of one stream are
//     thus never concurrent (the sending flag, and sendMu for the close).
//   - What a stream holds per type is the subscribed names with the version
//     last sent of each: the next response carries what differs (every
//     subscribed resource for LDS and CDS). A NACKed version counts as sent,
//     so it is not resent until its content changes (the NACK guard).
//   - For EDS and RDS a publish also records the changed names in the
//     subscription (pending), and the push visits only those, keeping the
//     state version of what the client holds up to date as it goes: a
//     wildcard stream of 1,000 names costs a push one lookup, not 1,000.
//     SotW allows the partial response for these types (grpc-go:
//     AllResourcesRequiredInSotW false, so its authority does not take a
//     missing resource as deleted; Envoy likewise). Any change of the
//     subscription, and a request without nonce, makes the next build walk
//     every name again (full).

// Bits of adsStream.dirty, one per served type, in the order a send loop
// sends them: the publish order (typeCache.all), so a resource arrives
// before the ones that refer to it.
const (
	adsEndpoints = iota
	adsClusters
	adsRoutes
	adsListeners
	numADSTypes
)

// adsTypeIndex is the dirty bit index of a served type URL, -1 for others.
func adsTypeIndex(typeURL string) int {
	switch typeURL {
	case resourcev3.ListenerType:
		return adsListeners
	case resourcev3.RouteType:
		return adsRoutes
	case resourcev3.ClusterType:
		return adsClusters
	case resourcev3.EndpointType:
		return adsEndpoints
	}
	return -1
}

// adsServer is the Server as an ADS gRPC service: SotW here, delta on
// go-control-plane.
type adsServer struct{ s *Server }

var _ discoveryv3.AggregatedDiscoveryServiceServer = adsServer{}

func (a adsServer) StreamAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return a.s.streamSotw(stream)
}

func (a adsServer) DeltaAggregatedResources(stream discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return a.s.xds.DeltaAggregatedResources(stream)
}

// adsStream is one SotW stream.
type adsStream struct {
	s      *Server
	stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer
	st     *streamState
	// types is written by the handler goroutine only, before the type's
	// first mark; senders read it after taking the mark.
	types [numADSTypes]*adsType

	dirty   atomic.Uint32 // bit i: type i may have something to send
	sending atomic.Bool   // a send loop runs (or is about to)
	closed  atomic.Bool
	sendErr atomic.Pointer[error]
	// sendMu is held by the send loop: closing the stream takes it, so no
	// send happens after the handler returned.
	sendMu sync.Mutex
	nonce  uint64 // guarded by sendMu
}

// adsType is one stream's subscription to one type. Its fields, except the
// immutable ones, are guarded by mu; changes of the subscription (which
// the cache indexes) also hold c.mu for writing, and builds hold it for
// reading. Lock order: c.mu, then mu.
type adsType struct {
	w      cacheWatch // how c indexes it; w.ads points back
	c      *typeCache
	stream *adsStream
	bit    uint32

	mu sync.Mutex

	// names are the subscribed names (wildcard: the names sent) with the
	// version of each last sent, "" if none.
	names map[string]string
	// legacy: the first request named nothing, so an empty list keeps
	// meaning wildcard (until a request names something).
	legacy bool
	// reply: answer even if nothing is new (a request without nonce).
	reply bool
	// removed: a resource the client holds is gone or unsubscribed, which
	// a full-state (LDS, CDS) response must show.
	removed bool
	// sent: a response was sent, or the client resumed what it held.
	sent bool
	// resume is the version_info of the type's first request, checked
	// against the current state before the first response.
	resume string

	// sum and held are the state version of what the client holds (the
	// names with a version sent): kept as they change, so a push need not
	// walk every subscribed name. Valid once sent, unless full.
	sum  uint64
	held int
	// pending are the names a publish changed since the last build; a push
	// of a non-full-state type (EDS, RDS) visits only these. Written with
	// c.mu held for writing, or for reading with mu.
	pending map[string]struct{}
	// full: the next build walks every subscribed name (the subscription
	// changed, or pending grew too large).
	full bool
}

// maxPending is the number of pending names above which the next build
// walks the whole subscription instead.
const maxPending = 256

// pendLocked records that name changed (c.mu held for writing, t.mu held).
func (t *adsType) pendLocked(name string) {
	if t.full || t.c.fullState {
		return
	}
	if len(t.pending) >= maxPending {
		t.full, t.pending = true, nil
		return
	}
	if t.pending == nil {
		t.pending = map[string]struct{}{}
	}
	t.pending[name] = struct{}{}
}

// streamSotw serves one SotW ADS stream on the handler goroutine.
func (s *Server) streamSotw(stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	if s.ctx.Err() != nil {
		return status.Error(codes.Unavailable, "xds: server closed")
	}
	k := streamKey{id: s.sotwIDs.Add(1)}
	a := &adsStream{s: s, stream: stream, st: s.openStream(stream.Context(), k)}
	defer s.closeStream(k)
	defer a.close()
	for {
		req, err := stream.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if s.ctx.Err() != nil {
			return status.Error(codes.Unavailable, "xds: server closed")
		}
		if err := a.handle(req); err != nil {
			return err
		}
		if p := a.sendErr.Load(); p != nil {
			return *p
		}
	}
}

// handle applies one request.
func (a *adsStream) handle(req *discoveryv3.DiscoveryRequest) error {
	typeURL := req.GetTypeUrl()
	if typeURL == "" {
		return status.Error(codes.InvalidArgument, "xds: type_url is required on an ADS stream")
	}
	names, nonce := req.GetResourceNames(), req.GetResponseNonce()
	if err := a.s.requestState(a.st, false, req.GetNode(), typeURL, nonce, req.GetVersionInfo(),
		req.GetErrorDetail(), names, nil); err != nil {
		return err
	}
	i := adsTypeIndex(typeURL)
	if i < 0 {
		return nil // not served; the stream stays open
	}
	t := a.types[i]
	if t == nil {
		// st.info is written only by this goroutine (requestState).
		kind := a.st.info.Kind
		t = &adsType{c: a.s.caches.forType(typeURL, kind), stream: a, bit: 1 << i, legacy: len(names) == 0, names: map[string]string{}}
		t.w.ads = t
		if kind == KindEnvoy {
			t.w.node = a.st.info.ID
		}
		a.types[i] = t
	}
	if t.c == a.s.caches.listenersGRPC {
		a.s.ensureServerListeners(names)
	}
	// The usual request, an ACK or NACK that repeats the subscription,
	// changes nothing: checked without the cache's lock.
	if nonce != "" {
		t.mu.Lock()
		same := t.unchangedLocked(names)
		t.mu.Unlock()
		if same {
			return nil
		}
	}
	t.c.mu.Lock()
	t.mu.Lock()
	wake := t.applyLocked(names, nonce, req.GetVersionInfo())
	t.mu.Unlock()
	t.c.mu.Unlock()
	if wake {
		a.dirty.Or(t.bit)
		if a.sending.CompareAndSwap(false, true) {
			a.sendLoop()
		}
	}
	return nil
}

// wildcardFor is whether a request naming names leaves t wildcard.
func (t *adsType) wildcardFor(names []string) bool {
	if t.c.envoyWildcard && t.w.node != "" {
		return true // see typeCache.envoyWildcard
	}
	if t.legacy && len(names) == 0 {
		return true
	}
	for _, n := range names {
		if n == "*" {
			return true
		}
	}
	return false
}

// unchangedLocked reports whether a request with a nonce naming names
// would change nothing (t.mu held).
func (t *adsType) unchangedLocked(names []string) bool {
	if t.legacy && len(names) > 0 {
		return false
	}
	wild := t.wildcardFor(names)
	return wild == t.w.wildcard && (wild || sameNames(t.names, names))
}

// applyLocked applies a request's resource names and reports whether the
// type needs a response check.
func (t *adsType) applyLocked(names []string, nonce, version string) (wake bool) {
	c, w := t.c, &t.w
	defer func() {
		if wake {
			t.full = true // the names changed: the next build walks them all
		}
	}()
	wild := t.wildcardFor(names)
	if len(names) > 0 {
		t.legacy = false
	}
	if nonce == "" {
		t.reply, wake = true, true
		if version != "" && !t.sent {
			t.resume = version
		}
	}
	if wild != w.wildcard {
		wake = true
		if wild {
			for name, v := range t.names {
				c.unindexLocked(w, name)
				if v == "" {
					delete(t.names, name)
				}
			}
			c.wildcard[w] = struct{}{}
		} else {
			delete(c.wildcard, w)
			for name := range t.names {
				c.indexLocked(w, name)
			}
		}
		w.wildcard = wild
	}
	if wild || sameNames(t.names, names) {
		return wake
	}
	want := make(map[string]struct{}, len(names))
	for _, n := range names {
		want[n] = struct{}{}
	}
	for name, v := range t.names {
		if _, ok := want[name]; !ok {
			if v != "" {
				t.removed = true
			}
			delete(t.names, name)
			c.unindexLocked(w, name)
		}
	}
	for name := range want {
		if _, ok := t.names[name]; !ok {
			if e := c.lookupLocked(w.node, name); e != nil {
				name = e.name // share the entry's string, not the request's
			}
			t.names[name] = ""
			c.indexLocked(w, name)
		}
	}
	return true
}

// sameNames reports whether names (no "*") is exactly the set of keys of
// have, without allocating for the usual ACK that repeats its names (up to
// 32 of them; a longer list, such as an Envoy's EDS subscription to every
// cluster, takes one set). Without it each ACK of a long list would take
// the cache's write lock and walk the whole subscription.
func sameNames(have map[string]string, names []string) bool {
	if len(names) != len(have) {
		return false
	}
	if len(names) > 32 {
		seen := make(map[string]struct{}, len(names))
		for _, n := range names {
			if _, ok := have[n]; !ok {
				return false
			}
			seen[n] = struct{}{}
		}
		return len(seen) == len(have) // else a duplicate: some name of have is missing
	}
	for i, n := range names {
		if _, ok := have[n]; !ok {
			return false
		}
		for _, m := range names[:i] {
			if m == n {
				return false // a duplicate: some name of have is missing
			}
		}
	}
	return true
}

// mark records that type bit may have something to send and starts a send
// loop unless one runs. It never blocks.
func (a *adsStream) mark(bit uint32) {
	a.dirty.Or(bit)
	if a.sending.CompareAndSwap(false, true) {
		go a.sendLoop()
	}
}

// sendLoop sends every dirty type's latest state until none is dirty. The
// caller set sending.
func (a *adsStream) sendLoop() {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	for {
		bits := a.dirty.Swap(0)
		if bits == 0 || a.closed.Load() {
			a.sending.Store(false)
			// A mark between the Swap and the Store found sending set.
			if a.closed.Load() || a.dirty.Load() == 0 || !a.sending.CompareAndSwap(false, true) {
				return
			}
			continue
		}
		for i, t := range a.types {
			if bits&(1<<i) == 0 || t == nil {
				continue
			}
			if err := a.send(t); err != nil {
				a.sendErr.CompareAndSwap(nil, &err)
				a.closed.Store(true)
				break
			}
		}
	}
}

// send builds t's response, if any, and sends it.
func (a *adsStream) send(t *adsType) error {
	// The cache's read lock suffices: what buildLocked writes is t's (t.mu),
	// and builds of other streams run in parallel.
	t.c.mu.RLock()
	t.mu.Lock()
	resp := t.buildLocked()
	t.mu.Unlock()
	t.c.mu.RUnlock()
	if resp == nil {
		return nil
	}
	a.nonce++
	resp.Nonce = strconv.FormatUint(a.nonce, 10)
	// Recorded before the send: the ACK may come back first.
	a.s.responseState(a.st, resp.TypeUrl, resp.Nonce, resp.VersionInfo)
	return a.stream.Send(resp)
}

// buildLocked is the response t needs now, nil if none, and records its
// versions as sent.
func (t *adsType) buildLocked() *discoveryv3.DiscoveryResponse {
	c, node := t.c, t.w.node
	if !c.ready {
		return nil // nothing before the first publish: see typeCache.ready
	}
	if t.w.wildcard {
		c.visibleLocked(node, func(e *entry) {
			if _, ok := t.names[e.name]; !ok {
				t.names[e.name] = ""
			}
		})
	}
	if !c.fullState && t.sent && !t.full && !t.reply {
		return t.buildPendingLocked()
	}
	t.pending = nil
	if t.resume != "" {
		held := t.resume
		t.resume = ""
		if t.reply && !t.sent && t.currentVersionLocked() == held {
			// It holds everything already (from another replica, or before
			// a restart): nothing until something changes.
			for name := range t.names {
				if e := c.lookupLocked(node, name); e != nil {
					t.names[name] = e.version
				} else if t.w.wildcard {
					delete(t.names, name)
				}
			}
			t.reply, t.sent = false, true
			t.sum, t.held = t.heldStateLocked()
			t.full = false
			return nil
		}
	}
	changed := 0
	for name, v := range t.names {
		e := c.lookupLocked(node, name)
		switch {
		case e != nil && e.version != v:
			changed++
		case e == nil && v != "":
			t.removed = true
		}
	}
	if !t.reply && changed == 0 && (!t.removed || !c.fullState) {
		// SotW cannot express the deletion of a resource that is not full
		// state; the client learns of it when it stops asking.
		return nil
	}
	n := changed
	if c.fullState {
		n = len(t.names)
	}
	anys := make([]*anypb.Any, 0, n)
	var sum uint64
	held := 0
	for name, v := range t.names {
		e := c.lookupLocked(node, name)
		if e == nil {
			if t.w.wildcard {
				delete(t.names, name)
			} else {
				t.names[name] = ""
			}
			continue
		}
		if c.fullState || e.version != v {
			anys = append(anys, e.any)
			t.names[name] = e.version
		}
		sum += pairHash(name, e.version)
		held++
	}
	t.reply, t.removed, t.sent = false, false, true
	t.sum, t.held, t.full = sum, held, false
	return &discoveryv3.DiscoveryResponse{VersionInfo: formatStateVersion(sum, held), Resources: anys, TypeUrl: c.typeURL}
}

// buildPendingLocked is buildLocked after a publish, for a type that is not
// full state: it visits only the pending names and carries those whose
// version differs from the one sent. The client keeps the resources a
// response leaves out (for EDS and RDS, SotW responses need not be
// complete), so version_info is still that of everything it holds. A
// removal is not sent (SotW cannot express it) but leaves the state.
func (t *adsType) buildPendingLocked() *discoveryv3.DiscoveryResponse {
	c, node := t.c, t.w.node
	var anys []*anypb.Any
	for name := range t.pending {
		v, ok := t.names[name]
		e := c.lookupLocked(node, name)
		if !ok && (!t.w.wildcard || e == nil) {
			continue // not subscribed (any more), or nothing to hold
		}
		if e != nil && e.version == v {
			continue
		}
		if v != "" {
			t.sum -= pairHash(name, v)
			t.held--
		}
		switch {
		case e != nil:
			t.sum += pairHash(name, e.version)
			t.held++
			t.names[name] = e.version
			anys = append(anys, e.any)
		case t.w.wildcard:
			delete(t.names, name)
		default:
			t.names[name] = ""
		}
	}
	t.pending = nil
	if len(anys) == 0 {
		return nil
	}
	return &discoveryv3.DiscoveryResponse{VersionInfo: formatStateVersion(t.sum, t.held), Resources: anys, TypeUrl: c.typeURL}
}

// heldStateLocked is the state version of the names with a version sent.
func (t *adsType) heldStateLocked() (sum uint64, held int) {
	for name, v := range t.names {
		if v != "" {
			sum += pairHash(name, v)
			held++
		}
	}
	return sum, held
}

// currentVersionLocked is the state version of the subscribed resources as
// the cache holds them now.
func (t *adsType) currentVersionLocked() string {
	var sum uint64
	n := 0
	for name := range t.names {
		if e := t.c.lookupLocked(t.w.node, name); e != nil {
			sum += pairHash(name, e.version)
			n++
		}
	}
	return formatStateVersion(sum, n)
}

// close unsubscribes every type and waits for a send in flight.
func (a *adsStream) close() {
	a.closed.Store(true)
	for _, t := range a.types {
		if t == nil {
			continue
		}
		t.c.mu.Lock()
		t.mu.Lock()
		if t.w.wildcard {
			delete(t.c.wildcard, &t.w)
		} else {
			for name := range t.names {
				t.c.unindexLocked(&t.w, name)
			}
		}
		t.mu.Unlock()
		t.c.mu.Unlock()
	}
	a.sendMu.Lock()
	//nolint:staticcheck // empty critical section: waits for the send loop
	a.sendMu.Unlock()
}
