package telemetry

import (
	"sync"
	"time"
)

const (
	// numBuckets is the number of explicit bucket bounds of every latency histogram (the connectors' defaults).
	numBuckets = 16
	// slotWidth is the resolution of the windowed edge history behind /api/v1/graph.
	slotWidth = 10 * time.Second
	// OverflowLabel is the value of every label of the series into which new label sets fold once a cardinality
	// limit is reached.
	OverflowLabel = "__overflow__"
)

// Connection types of service-graph edges, named as the servicegraph connector names them.
const (
	connUnknown = iota
	connVirtualNode
	connMessaging
	connDatabase
	numConns
)

func connName(c uint8) string {
	switch c {
	case connVirtualNode:
		return "virtual_node"
	case connMessaging:
		return "messaging_system"
	case connDatabase:
		return "database"
	}
	return ""
}

func kindName(k uint8) string {
	switch k {
	case kindInternal:
		return "SPAN_KIND_INTERNAL"
	case kindServer:
		return "SPAN_KIND_SERVER"
	case kindClient:
		return "SPAN_KIND_CLIENT"
	case kindProducer:
		return "SPAN_KIND_PRODUCER"
	case kindConsumer:
		return "SPAN_KIND_CONSUMER"
	}
	return "SPAN_KIND_UNSPECIFIED"
}

func statusName(s uint8) string {
	switch s {
	case statusOK:
		return "STATUS_CODE_OK"
	case statusError:
		return "STATUS_CODE_ERROR"
	}
	return "STATUS_CODE_UNSET"
}

// histogram is an explicit-bucket histogram; counts are per bucket (not cumulative), the last one is +Inf.
type histogram struct {
	counts [numBuckets + 1]uint64
	sum    float64
	count  uint64
}

func bucketIndex(bounds *[numBuckets]float64, v float64) int {
	// Same placement as sort.SearchFloat64s in the connectors: the first bound >= v, so v == bound lands in that
	// bound's bucket, matching Prometheus "le" semantics.
	lo, hi := 0, numBuckets
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bounds[m] < v {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

func (h *histogram) observe(bounds *[numBuckets]float64, v float64) {
	h.counts[bucketIndex(bounds, v)]++
	h.sum += v
	h.count++
}

// redSeries is one spanmetrics series: calls and duration in milliseconds.
type redSeries struct {
	hist histogram
}

type nameRED [numKinds][numStatuses]*redSeries

type serviceRED struct {
	names map[string]*nameRED
}

// edgeKey identifies one servicegraph series. Strings are interned, so building a key allocates nothing.
type edgeKey struct {
	client, server string
	conn           uint8
	failed         bool
}

// slot is one slotWidth of an edge's history for /api/v1/graph.
type slot struct {
	epoch int64 // unix time / slotWidth; a slot whose epoch is stale is empty
	count uint64
	hist  [numBuckets + 1]uint32
}

type edgeSeries struct {
	key      edgeKey
	total    uint64
	failed   uint64
	server   histogram
	client   histogram
	slots    []slot
	lastSeen int64
}

// aggStats are the aggregator's own counters, exposed as meshplane_telemetry_* metrics.
type aggStats struct {
	spans             uint64 // spans aggregated
	noService         uint64 // spans without service.name (stored and forwarded, not aggregated)
	spanOverflowSpans uint64 // spans folded into the span-metrics overflow series
	edgeOverflow      uint64 // edges folded into the service-graph overflow series
	completedEdges    uint64
	expiredEdges      uint64
	droppedPairing    uint64 // spans not paired because PairingMaxPending was reached
}

// aggregator turns spans into span metrics and service-graph edges. It is driven by one goroutine (consume,
// expire); readers (the Prometheus collector, the graph API) take mu. It does not log and reads no clock: the
// caller passes the time.
type aggregator struct {
	mu sync.Mutex

	secBounds [numBuckets]float64
	msBounds  [numBuckets]float64
	peerKeys  []string
	maxSpan   int
	maxEdge   int
	nSlots    int

	services     map[string]*serviceRED
	spanSeries   int
	spanOverflow *redSeries

	edges        map[edgeKey]*edgeSeries
	edgeOverflow *edgeSeries
	pending      pendingStore
	strs         interner

	stats aggStats
}

func newAggregator(cfg Config) *aggregator {
	a := &aggregator{
		secBounds: [numBuckets]float64{0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1, 1.4, 2, 5, 10, 15},
		msBounds:  [numBuckets]float64{2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10_000, 15_000},
		peerKeys:  cfg.peerAttributes(),
		maxSpan:   cfg.MaxSpanSeries,
		maxEdge:   cfg.MaxEdgeSeries,
		nSlots:    int((cfg.GraphWindow + slotWidth - 1) / slotWidth),
		services:  make(map[string]*serviceRED),
		edges:     make(map[edgeKey]*edgeSeries),
		pending:   newPendingStore(cfg.PairingMaxPending, cfg.PairingWait),
		strs:      interner{m: make(map[string]string), max: 4*(cfg.MaxSpanSeries+cfg.MaxEdgeSeries) + 1024},
	}
	return a
}

// consume aggregates one decoded batch.
func (a *aggregator) consume(spans []spanRec, now time.Time) {
	nowNs := now.UnixNano()
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := range spans {
		s := &spans[i]
		if s.service == nil {
			a.stats.noService++
			continue
		}
		a.stats.spans++
		var durNs uint64
		if s.end > s.start {
			durNs = s.end - s.start
		}
		a.redLocked(s, float64(durNs)/1e6)
		if s.kind >= kindServer && s.kind <= kindConsumer {
			a.pairLocked(s, float64(durNs)/1e9, nowNs)
		}
	}
	a.expireLocked(nowNs)
}

func (a *aggregator) redLocked(s *spanRec, durMs float64) {
	svc := a.services[string(s.service)]
	var tab *nameRED
	if svc != nil {
		tab = svc.names[string(s.name)]
	}
	var ser *redSeries
	if tab != nil {
		ser = tab[s.kind][s.status]
	}
	if ser == nil {
		if a.spanSeries >= a.maxSpan {
			if a.spanOverflow == nil {
				a.spanOverflow = &redSeries{}
			}
			a.stats.spanOverflowSpans++
			ser = a.spanOverflow
		} else {
			if svc == nil {
				svc = &serviceRED{names: make(map[string]*nameRED)}
				a.services[string(s.service)] = svc
			}
			if tab == nil {
				tab = &nameRED{}
				svc.names[string(s.name)] = tab
			}
			ser = &redSeries{}
			tab[s.kind][s.status] = ser
			a.spanSeries++
		}
	}
	ser.hist.observe(&a.msBounds, durMs)
}

// expire runs the pairing expiry on its own (the aggregation goroutine's ticker), for quiet periods.
func (a *aggregator) expire(now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.expireLocked(now.UnixNano())
}

// pairLocked follows the servicegraph connector: a CLIENT (or PRODUCER) span is stored under its own span id, a
// SERVER (or CONSUMER) span under its parent's; when both halves are present the edge is complete.
func (a *aggregator) pairLocked(s *spanRec, durSec float64, nowNs int64) {
	var key pairKey
	copy(key[:16], s.traceID[:])
	failed := s.status == statusError
	conn := uint8(connUnknown)
	if s.kind == kindProducer || s.kind == kindConsumer {
		conn = connMessaging
	}
	client := s.kind == kindClient || s.kind == kindProducer
	if client {
		copy(key[16:], s.spanID[:])
	} else {
		copy(key[16:], s.parentID[:])
	}
	e, ok := a.pending.upsert(key, nowNs)
	if !ok {
		a.stats.droppedPairing++
		return
	}
	e.conn = conn
	e.failed = e.failed || failed
	if client {
		e.client = a.strs.intern(s.service)
		e.clientLat = durSec
		if s.peer != nil {
			e.peer = a.strs.intern(s.peer)
		}
		if s.dbName != nil {
			// A database call has no server span: complete it from the client span alone.
			e.conn = connDatabase
			e.server = a.strs.intern(s.dbName)
			e.serverLat = durSec
		}
	} else {
		e.server = a.strs.intern(s.service)
		e.serverLat = durSec
	}
	if e.client != "" && e.server != "" {
		a.edgeLocked(e, nowNs)
		a.pending.remove(key)
	}
}

// expireLocked drops edges whose partner did not arrive within PairingWait. As in the connector (with its
// virtual-node feature gate on), a root server span becomes an edge from the virtual client "user", and a client
// span without server becomes an edge to the virtual node named by its peer attribute ("unknown" without one).
func (a *aggregator) expireLocked(nowNs int64) {
	a.pending.expire(nowNs, func(e *pendingEdge) {
		a.stats.expiredEdges++
		if len(a.peerKeys) == 0 {
			return
		}
		e.conn = connVirtualNode
		if e.client == "" && [8]byte(e.key[16:]) == [8]byte{} {
			e.client = "user"
			a.edgeLocked(e, nowNs)
		}
		if e.server == "" {
			e.server = e.peer
			if e.server == "" {
				e.server = "unknown"
			}
			a.edgeLocked(e, nowNs)
		}
	})
}

func (a *aggregator) edgeLocked(e *pendingEdge, nowNs int64) {
	a.stats.completedEdges++
	k := edgeKey{client: e.client, server: e.server, conn: e.conn, failed: e.failed}
	ser := a.edges[k]
	if ser == nil {
		if len(a.edges) >= a.maxEdge {
			a.stats.edgeOverflow++
			if a.edgeOverflow == nil {
				a.edgeOverflow = a.newEdgeSeries(edgeKey{client: OverflowLabel, server: OverflowLabel, conn: numConns})
			}
			ser = a.edgeOverflow
		} else {
			ser = a.newEdgeSeries(k)
			a.edges[k] = ser
		}
	}
	ser.total++
	if e.failed {
		ser.failed++
	}
	ser.server.observe(&a.secBounds, e.serverLat)
	ser.client.observe(&a.secBounds, e.clientLat)
	lat := e.serverLat
	if e.conn == connVirtualNode && lat == 0 {
		lat = e.clientLat
	}
	ep := nowNs / int64(slotWidth)
	sl := &ser.slots[ep%int64(len(ser.slots))]
	if sl.epoch != ep {
		*sl = slot{epoch: ep}
	}
	sl.count++
	sl.hist[bucketIndex(&a.secBounds, lat)]++
	ser.lastSeen = nowNs
}

func (a *aggregator) newEdgeSeries(k edgeKey) *edgeSeries {
	return &edgeSeries{key: k, slots: make([]slot, a.nSlots+1)}
}

// interner keeps one copy of each label string. It is bounded: past max entries it returns fresh strings, which
// only costs an allocation (such strings end up in overflow series anyway).
type interner struct {
	m   map[string]string
	max int
}

func (in *interner) intern(b []byte) string {
	if s, ok := in.m[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(in.m) < in.max {
		in.m[s] = s
	}
	return s
}
