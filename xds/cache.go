package xds

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"sync/atomic"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Why not LinearCache: go-control-plane v0.14.0's LinearCache versions SotW
// responses with a per-cache counter (prefix + N) and exposes no way to set a
// resource's version (newCachedResource is unexported; only delta watches use
// the content hash). Counters differ between replicas, so a gRPC client that
// reconnects to another replica would always be pushed everything again. A
// MuxCache also routes a request to exactly one cache, so an Envoy's wildcard
// LDS/CDS (shared resources plus its own sidecar ones) would need a per-node
// LinearCache holding copies of every shared cluster, marshalled once per
// node. typeCache is LinearCache's design (one cache per type behind a
// MuxCache, watches indexed by resource name, responses built from resources
// marshalled once) with content-hash versions and an optional per-node layer.

// entry is one resource version, marshalled once and shared read-only by
// every response that carries it.
type entry struct {
	name    string
	version string // content hash of the deterministic marshal
	any     *anypb.Any
	delta   *discoveryv3.Resource
	// refs are the references the resource makes, recorded when it was
	// validated alone (incremental publish and sidecars only).
	refs []problem
}

// newEntry marshals r deterministically and versions it by content.
func newEntry(typeURL, name string, r proto.Message) (*entry, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return nil, fmt.Errorf("xds: marshal %s %q: %w", typeURL, name, err)
	}
	sum := sha256.Sum256(b)
	v := hex.EncodeToString(sum[:16])
	a := &anypb.Any{TypeUrl: typeURL, Value: b}
	return &entry{name: name, version: v, any: a, delta: &discoveryv3.Resource{Name: name, Version: v, Resource: a}}, nil
}

// stateVersion is the SotW version_info (and delta system_version_info) of a
// set of resource versions: a hash of the name/version pairs, independent of
// order and of which replica computed it.
func stateVersion(known map[string]string) string {
	var sum uint64
	for name, v := range known {
		sum += pairHash(name, v)
	}
	return formatStateVersion(sum, len(known))
}

// pairHash is one name/version pair's share of a state version.
func pairHash(name, version string) uint64 {
	return fnv64a(fnv64a(fnv64a(fnvOffset, name), "\x00"), version)
}

// formatStateVersion prints the sum of n pairHash values as a state version.
func formatStateVersion(sum uint64, n int) string {
	return strconv.FormatUint(sum, 16) + "." + strconv.Itoa(n)
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// fnv64a continues an FNV-1a hash over s without allocating.
func fnv64a(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// cacheWatch is one open watch: one per stream and type.
type cacheWatch struct {
	node     string // node ID whose layer this watch sees; "" for shared only
	wildcard bool
	sub      cachev3.Subscription
	known    map[string]string // overrides sub.ReturnedResources after a resumed SotW stream
	// replyEmpty: the request is answered even if nothing is new (a first
	// request); kept for watches opened before the cache was ready.
	replyEmpty bool

	sotwReq  *cachev3.Request
	sotwCh   chan cachev3.Response
	deltaReq *cachev3.DeltaRequest
	deltaCh  chan cachev3.DeltaResponse

	// ads is set for a subscription of the SotW stream loop (ads.go): it
	// stays indexed across pushes and a change only marks its stream dirty.
	ads *adsType
}

func (w *cacheWatch) returned() map[string]string {
	if w.known != nil {
		return w.known
	}
	return w.sub.ReturnedResources()
}

// typeCache holds every resource of one type URL for every stream, plus an
// optional per-node layer (an Envoy sidecar's own listeners or clusters) and
// an extra layer (on-demand gRPC server listeners). A node sees its layer,
// then the shared resources, then the extra ones.
//
// Sends happen under mu; go-control-plane's per-stream response channels are
// buffered for one response per type, and a watch fires at most once, so a
// send never blocks.
type typeCache struct {
	// typeURL "" makes the cache for types Meshplane does not serve: it
	// accepts any request and never answers, so the stream stays open (a
	// MuxCache miss would end it) and a client cannot fill go-control-plane's
	// per-stream response buffer, sized for one response per known type, by
	// asking for many unknown types.
	typeURL   string
	fullState bool // SotW responses carry every subscribed resource (LDS, CDS)
	// envoyWildcard makes every Envoy sidecar's subscription wildcard, even
	// when a reconnecting Envoy lists the names it had (a known Envoy bug
	// that then loses every cluster added later).
	envoyWildcard bool

	lastChange atomic.Int64 // unix nanos of the last change applied

	// mu is held for writing by every change of content or index; the
	// SotW loop builds responses holding it for reading (ads.go).
	mu sync.RWMutex
	// ready is false until the first publish. Until then no watch is
	// answered: an empty LDS/CDS answer from a restarted control plane would
	// make every reconnecting Envoy drop its listeners and clusters.
	ready    bool
	shared   map[string]*entry
	extra    map[string]*entry
	layers   map[string]map[string]*entry
	byName   map[string]map[*cacheWatch]struct{}
	wildcard map[*cacheWatch]struct{}
	// marks are the SotW subscriptions to mark dirty once mu is released
	// (unlockAndMark), so their senders do not wait for the lock.
	marks []*adsType
	// emptySets counts the sets in byName left empty. A push fires every
	// watch of a name and the ACKs re-open them at once, so sets are kept
	// (not re-allocated per watch) and swept only when many are empty.
	emptySets int
}

var _ cachev3.Cache = (*typeCache)(nil)

func newTypeCache(typeURL string) *typeCache {
	return &typeCache{
		typeURL:   typeURL,
		fullState: typeURL != "" && cachev3.ResourceRequiresFullStateInSotw(typeURL),
		shared:    map[string]*entry{},
		extra:     map[string]*entry{},
		layers:    map[string]map[string]*entry{},
		byName:    map[string]map[*cacheWatch]struct{}{},
		wildcard:  map[*cacheWatch]struct{}{},
	}
}

// lookupLocked finds the version of name a watch for node sees.
func (c *typeCache) lookupLocked(node, name string) *entry {
	if node != "" {
		if e := c.layers[node][name]; e != nil {
			return e
		}
	}
	if e := c.shared[name]; e != nil {
		return e
	}
	return c.extra[name]
}

// visibleLocked calls f for every resource a watch for node sees.
func (c *typeCache) visibleLocked(node string, f func(*entry)) {
	layer := c.layers[node]
	for _, e := range layer {
		f(e)
	}
	for name, e := range c.shared {
		if layer[name] == nil {
			f(e)
		}
	}
	for name, e := range c.extra {
		if layer[name] == nil && c.shared[name] == nil {
			f(e)
		}
	}
}

// set replaces the shared resources (node == "") or one node's layer with
// desired (nil removes the layer), keeps entries whose version did not
// change, and notifies the watches that see a change. It returns how many
// resources were added or changed and how many were removed.
func (c *typeCache) set(node string, desired map[string]*entry) (changed, removed int) {
	c.mu.Lock()
	defer c.unlockAndMark()
	cur := c.shared
	if node != "" {
		cur = c.layers[node]
	}
	var modified []string
	for name, e := range desired {
		if old := cur[name]; old == nil || old.version != e.version {
			modified = append(modified, name)
			changed++
		} else {
			desired[name] = old // keep the marshalled bytes already referenced by streams
		}
	}
	for name := range cur {
		if _, ok := desired[name]; !ok {
			modified = append(modified, name)
			removed++
		}
	}
	if desired == nil {
		desired = map[string]*entry{}
	}
	switch {
	case node == "":
		c.shared = desired
	case len(desired) == 0:
		delete(c.layers, node)
	default:
		c.layers[node] = desired
	}
	c.changedLocked(node, modified)
	return changed, removed
}

// apply changes the shared resources in place: each of upsert is added or
// replaces the entry of its name unless that has the same version, each
// name in remove is deleted. Watches that see a change are notified, as by
// set; upsert and remove must not share a name.
func (c *typeCache) apply(upsert map[string]*entry, remove map[string]bool) (changed, removed int) {
	c.mu.Lock()
	defer c.unlockAndMark()
	var modified []string
	for name, e := range upsert {
		if old := c.shared[name]; old == nil || old.version != e.version {
			c.shared[name] = e
			modified = append(modified, name)
			changed++
		}
	}
	for name := range remove {
		if _, ok := c.shared[name]; ok {
			delete(c.shared, name)
			modified = append(modified, name)
			removed++
		}
	}
	c.changedLocked("", modified)
	return changed, removed
}

// changedLocked makes the cache ready on the first shared publish (answering
// every waiting watch), else notifies the watches of the modified names.
func (c *typeCache) changedLocked(node string, modified []string) {
	c.sweepLocked()
	if node == "" && !c.ready {
		c.ready = true
		c.lastChange.Store(nowNanos())
		c.answerAllLocked()
		return
	}
	if len(modified) > 0 {
		c.lastChange.Store(nowNanos())
		c.notifyLocked(node, modified)
	}
}

// resumeLocked lets the first request of a SotW stream resume state held
// from another replica: versions are content hashes, so if the client's
// version_info is the version of what it subscribes to now, it already has
// all of it and is not answered until something changes.
func (c *typeCache) resumeLocked(w *cacheWatch) {
	if w.sotwReq == nil || !w.replyEmpty || len(w.sub.ReturnedResources()) != 0 {
		return
	}
	v := w.sotwReq.GetVersionInfo()
	if v == "" {
		return
	}
	if cur := c.currentLocked(w); stateVersion(cur) == v {
		w.known = cur
		w.replyEmpty = false
	}
}

// answerAllLocked answers every watch opened before the cache was ready.
func (c *typeCache) answerAllLocked() {
	all := map[*cacheWatch]struct{}{}
	for _, ws := range c.byName {
		for w := range ws {
			all[w] = struct{}{}
		}
	}
	for w := range c.wildcard {
		all[w] = struct{}{}
	}
	for w := range all {
		if w.ads != nil {
			c.marks = append(c.marks, w.ads)
			continue
		}
		if w.sotwReq != nil {
			c.resumeLocked(w)
		}
		if c.respondLocked(w, w.replyEmpty) {
			c.removeLocked(w)
		}
	}
}

// addExtra adds an on-demand resource unless one of that name exists.
func (c *typeCache) addExtra(e *entry, limit int) error {
	c.mu.Lock()
	defer c.unlockAndMark()
	if c.shared[e.name] != nil || c.extra[e.name] != nil {
		return nil
	}
	if len(c.extra) >= limit {
		return fmt.Errorf("xds: %d on-demand resources already, limit reached", limit)
	}
	c.extra[e.name] = e
	c.notifyLocked("", []string{e.name})
	return nil
}

// has reports whether name exists for every node (shared or extra).
func (c *typeCache) has(name string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.shared[name] != nil || c.extra[name] != nil
}

// count is the number of shared and extra resources.
func (c *typeCache) count() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.shared) + len(c.extra)
}

// notifyLocked answers every watch that sees one of the modified names. A
// node layer change (node != "") concerns only that node's watches.
func (c *typeCache) notifyLocked(node string, modified []string) {
	if !c.ready {
		return
	}
	var fired []*cacheWatch
	// visit answers or marks w, which sees the change of names (a SotW loop
	// subscription records them, so that its next build visits only those).
	visit := func(w *cacheWatch, names ...string) {
		if node != "" && w.node != node {
			return
		}
		if t := w.ads; t != nil {
			t.mu.Lock()
			for _, name := range names {
				t.pendLocked(name)
			}
			t.mu.Unlock()
			c.marks = append(c.marks, t)
			return
		}
		if c.respondLocked(w, false) {
			fired = append(fired, w)
		}
	}
	if len(modified) == 1 { // the common push: no watch can be seen twice
		for w := range c.byName[modified[0]] {
			visit(w, modified[0])
		}
	} else {
		seen := map[*cacheWatch][]string{}
		for _, name := range modified {
			for w := range c.byName[name] {
				seen[w] = append(seen[w], name)
			}
		}
		for w, names := range seen {
			visit(w, names...)
		}
	}
	for w := range c.wildcard {
		visit(w, modified...)
	}
	for _, w := range fired {
		c.removeLocked(w)
	}
}

// CreateWatch implements cachev3.ConfigWatcher for SotW streams.
func (c *typeCache) CreateWatch(req *cachev3.Request, sub cachev3.Subscription, ch chan cachev3.Response) (func(), error) {
	if c.typeURL == "" {
		return func() {}, nil // a type Meshplane does not serve: see typeURL
	}
	if req.GetTypeUrl() != c.typeURL {
		return nil, fmt.Errorf("xds: request type %s does not match cache type %s", req.GetTypeUrl(), c.typeURL)
	}
	w := &cacheWatch{node: watchNode(req.GetNode()), sub: sub, sotwReq: req, sotwCh: ch}
	w.wildcard = sub.IsWildcard() || (c.envoyWildcard && w.node != "")
	c.mu.Lock()
	defer c.mu.Unlock()
	// Only the first request is answered even when nothing is new: a NACK
	// (or an ACK) is answered only when content changes, which is the NACK
	// guard — the stream's returned versions already hold the rejected ones.
	w.replyEmpty = req.GetResponseNonce() == ""
	if c.ready {
		c.resumeLocked(w)
		if c.respondLocked(w, w.replyEmpty) {
			return func() {}, nil
		}
	}
	return c.trackLocked(w), nil
}

// CreateDeltaWatch implements cachev3.ConfigWatcher for delta streams.
func (c *typeCache) CreateDeltaWatch(req *cachev3.DeltaRequest, sub cachev3.Subscription, ch chan cachev3.DeltaResponse) (func(), error) {
	if c.typeURL == "" {
		return func() {}, nil // a type Meshplane does not serve: see typeURL
	}
	if req.GetTypeUrl() != c.typeURL {
		return nil, fmt.Errorf("xds: request type %s does not match cache type %s", req.GetTypeUrl(), c.typeURL)
	}
	w := &cacheWatch{node: watchNode(req.GetNode()), sub: sub, deltaReq: req, deltaCh: ch}
	w.wildcard = sub.IsWildcard() || (c.envoyWildcard && w.node != "")
	c.mu.Lock()
	defer c.mu.Unlock()
	// A wildcard subscriber expects an answer to its first request even when
	// empty, to finish initialising.
	w.replyEmpty = w.wildcard && req.GetResponseNonce() == ""
	if c.ready && c.respondLocked(w, w.replyEmpty) {
		return func() {}, nil
	}
	return c.trackLocked(w), nil
}

// Fetch is not supported: Meshplane serves only streams.
func (c *typeCache) Fetch(context.Context, *cachev3.Request) (cachev3.Response, error) {
	return nil, errors.New("xds: fetch is not supported")
}

// currentLocked is the name → version map of what the watch subscribes to.
func (c *typeCache) currentLocked(w *cacheWatch) map[string]string {
	cur := map[string]string{}
	if w.wildcard {
		c.visibleLocked(w.node, func(e *entry) { cur[e.name] = e.version })
		return cur
	}
	for name := range w.sub.SubscribedResources() {
		if e := c.lookupLocked(w.node, name); e != nil {
			cur[name] = e.version
		}
	}
	return cur
}

// respondLocked sends the watch a response if it sees a change (or always
// when replyEmpty) and reports whether it did.
func (c *typeCache) respondLocked(w *cacheWatch, replyEmpty bool) bool {
	known := w.returned()
	var changed []*entry
	var removed []string
	consider := func(name string, e *entry) {
		if v, ok := known[name]; !ok || v != e.version {
			changed = append(changed, e)
		}
	}
	if w.wildcard {
		c.visibleLocked(w.node, func(e *entry) { consider(e.name, e) })
		for name := range known {
			if c.lookupLocked(w.node, name) == nil {
				removed = append(removed, name)
			}
		}
	} else {
		subscribed := w.sub.SubscribedResources()
		for name := range subscribed {
			if e := c.lookupLocked(w.node, name); e != nil {
				consider(name, e)
			} else if _, ok := known[name]; ok {
				removed = append(removed, name)
			}
		}
		for name := range known {
			if _, ok := subscribed[name]; !ok {
				removed = append(removed, name)
			}
		}
	}
	if w.deltaCh != nil {
		return c.respondDeltaLocked(w, known, changed, removed, replyEmpty)
	}
	return c.respondSotwLocked(w, known, changed, removed, replyEmpty)
}

func (c *typeCache) respondSotwLocked(w *cacheWatch, known map[string]string, changed []*entry, removed []string, replyEmpty bool) bool {
	if !replyEmpty && len(changed) == 0 && (len(removed) == 0 || !c.fullState) {
		// SotW cannot express a deletion of a non-full-state resource; the
		// client learns of it when it stops asking.
		return false
	}
	var anys []*anypb.Any
	var next map[string]string
	if c.fullState {
		// LDS and CDS: every subscribed resource, changed or not.
		next = c.currentLocked(w)
		anys = make([]*anypb.Any, 0, len(next))
		for name := range next {
			anys = append(anys, c.lookupLocked(w.node, name).any)
		}
	} else {
		next = maps.Clone(known)
		if next == nil {
			next = map[string]string{}
		}
		for _, name := range removed {
			delete(next, name)
		}
		anys = make([]*anypb.Any, 0, len(changed))
		for _, e := range changed {
			anys = append(anys, e.any)
			next[e.name] = e.version
		}
	}
	out := &discoveryv3.DiscoveryResponse{
		VersionInfo: stateVersion(next),
		Resources:   anys,
		TypeUrl:     w.sotwReq.GetTypeUrl(),
	}
	w.sotwCh <- &sotwResponse{req: w.sotwReq, out: out, returned: next}
	return true
}

func (c *typeCache) respondDeltaLocked(w *cacheWatch, known map[string]string, changed []*entry, removed []string, replyEmpty bool) bool {
	if !replyEmpty && len(changed) == 0 && len(removed) == 0 {
		return false
	}
	next := maps.Clone(known)
	if next == nil {
		next = map[string]string{}
	}
	res := make([]*discoveryv3.Resource, 0, len(changed))
	for _, e := range changed {
		res = append(res, e.delta)
		next[e.name] = e.version
	}
	for _, name := range removed {
		delete(next, name)
	}
	out := &discoveryv3.DeltaDiscoveryResponse{
		SystemVersionInfo: stateVersion(next),
		Resources:         res,
		RemovedResources:  removed,
		TypeUrl:           w.deltaReq.GetTypeUrl(),
	}
	w.deltaCh <- &deltaResponse{req: w.deltaReq, out: out, returned: next}
	return true
}

func (c *typeCache) trackLocked(w *cacheWatch) func() {
	if w.wildcard {
		c.wildcard[w] = struct{}{}
	} else {
		for name := range w.sub.SubscribedResources() {
			c.indexLocked(w, name)
		}
	}
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.removeLocked(w)
	}
}

func (c *typeCache) removeLocked(w *cacheWatch) {
	if w.wildcard {
		delete(c.wildcard, w)
		return
	}
	for name := range w.sub.SubscribedResources() {
		c.unindexLocked(w, name)
	}
}

// indexLocked adds w to the watches of name.
func (c *typeCache) indexLocked(w *cacheWatch, name string) {
	ws := c.byName[name]
	if ws == nil {
		ws = map[*cacheWatch]struct{}{}
		c.byName[name] = ws
	} else if len(ws) == 0 {
		c.emptySets--
	}
	ws[w] = struct{}{}
}

// unindexLocked removes w from the watches of name, if it is there.
func (c *typeCache) unindexLocked(w *cacheWatch, name string) {
	if ws := c.byName[name]; len(ws) > 0 {
		if _, ok := ws[w]; ok {
			delete(ws, w)
			if len(ws) == 0 {
				c.emptySets++
			}
		}
	}
}

// unlockAndMark releases mu, then marks the SotW subscriptions a change
// concerned.
func (c *typeCache) unlockAndMark() {
	marks := c.marks
	c.marks = nil
	c.mu.Unlock()
	for _, t := range marks {
		t.stream.mark(t.bit)
	}
}

// sweepLocked drops the empty sets of byName once they are more than half
// of it (and many), so names nobody watches any more cost nothing for long.
func (c *typeCache) sweepLocked() {
	if c.emptySets < 1024 || c.emptySets < len(c.byName)/2 {
		return
	}
	for name, ws := range c.byName {
		if len(ws) == 0 {
			delete(c.byName, name)
		}
	}
	c.emptySets = 0
}

// numWatches is the number of open watches (for tests).
func (c *typeCache) numWatches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.wildcard)
	seen := map[*cacheWatch]bool{}
	for _, ws := range c.byName {
		for w := range ws {
			seen[w] = true
		}
	}
	return n + len(seen)
}
