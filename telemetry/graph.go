package telemetry

import (
	"sort"
	"time"
)

// Graph is the answer of GET /api/v1/graph: the service graph over a recent window.
type Graph struct {
	// Window is the window the figures cover, e.g. "5m0s".
	Window string `json:"window"`
	// Nodes are the services and virtual peers seen in the window, sorted by id.
	Nodes []GraphNode `json:"nodes"`
	// Edges are the (client, server, connection type) pairs seen in the window, sorted.
	Edges []GraphEdge `json:"edges"`
}

// GraphNode is one service (or virtual peer). Its figures are those of the requests it served in the window.
type GraphNode struct {
	ID          string  `json:"id"`
	Virtual     bool    `json:"virtual"`
	Requests    uint64  `json:"requests"`
	Failed      uint64  `json:"failed"`
	RequestRate float64 `json:"requestRate"`
	ErrorRatio  float64 `json:"errorRatio"`
	P50Seconds  float64 `json:"p50Seconds"`
	P99Seconds  float64 `json:"p99Seconds"`
}

// GraphEdge is the traffic from one client to one server in the window. Latency quantiles are of the server-side
// duration (client-side for virtual peers, which have no server span), estimated from the histogram buckets.
type GraphEdge struct {
	Client         string  `json:"client"`
	Server         string  `json:"server"`
	ConnectionType string  `json:"connectionType"`
	Requests       uint64  `json:"requests"`
	Failed         uint64  `json:"failed"`
	RequestRate    float64 `json:"requestRate"`
	ErrorRatio     float64 `json:"errorRatio"`
	P50Seconds     float64 `json:"p50Seconds"`
	P99Seconds     float64 `json:"p99Seconds"`
}

type windowAgg struct {
	count, failed uint64
	hist          [numBuckets + 1]uint64
}

func (w *windowAgg) add(o *windowAgg) {
	w.count += o.count
	w.failed += o.failed
	for i := range w.hist {
		w.hist[i] += o.hist[i]
	}
}

// graph summarises the edges over the window ending at now. window must not exceed the configured GraphWindow.
func (a *aggregator) graph(now time.Time, window time.Duration) Graph {
	nowEp := now.UnixNano() / int64(slotWidth)
	k := int64((window + slotWidth - 1) / slotWidth)
	type ek struct {
		client, server string
		conn           uint8
	}
	edges := map[ek]*windowAgg{}
	a.mu.Lock()
	visit := func(s *edgeSeries) {
		var w windowAgg
		for i := range s.slots {
			sl := &s.slots[i]
			if sl.epoch <= nowEp-k || sl.epoch > nowEp || sl.count == 0 {
				continue
			}
			w.count += sl.count
			for j, c := range sl.hist {
				w.hist[j] += uint64(c)
			}
		}
		if w.count == 0 {
			return
		}
		if s.key.failed {
			w.failed = w.count
		}
		key := ek{s.key.client, s.key.server, s.key.conn}
		if e := edges[key]; e != nil {
			e.add(&w)
		} else {
			edges[key] = &w
		}
	}
	for _, s := range a.edges {
		visit(s)
	}
	if a.edgeOverflow != nil {
		visit(a.edgeOverflow)
	}
	bounds := a.secBounds
	a.mu.Unlock()

	secs := window.Seconds()
	g := Graph{Window: window.String(), Nodes: []GraphNode{}, Edges: []GraphEdge{}}
	type nodeAcc struct {
		w    windowAgg
		real bool
	}
	nodes := map[string]*nodeAcc{}
	node := func(id string) *nodeAcc {
		n := nodes[id]
		if n == nil {
			n = &nodeAcc{}
			nodes[id] = n
		}
		return n
	}
	for key, w := range edges {
		conn := connName(key.conn)
		if key.conn == numConns {
			conn = OverflowLabel
		}
		g.Edges = append(g.Edges, GraphEdge{
			Client: key.client, Server: key.server, ConnectionType: conn,
			Requests: w.count, Failed: w.failed, RequestRate: float64(w.count) / secs,
			ErrorRatio: ratio(w.failed, w.count),
			P50Seconds: quantile(&bounds, &w.hist, 0.5), P99Seconds: quantile(&bounds, &w.hist, 0.99),
		})
		c, s := node(key.client), node(key.server)
		s.w.add(w)
		virtual := key.conn == connVirtualNode || key.conn == connDatabase
		if !(virtual && key.client == "user") {
			c.real = true
		}
		if !virtual || key.client == "user" {
			s.real = true
		}
	}
	for id, n := range nodes {
		g.Nodes = append(g.Nodes, GraphNode{
			ID: id, Virtual: !n.real, Requests: n.w.count, Failed: n.w.failed,
			RequestRate: float64(n.w.count) / secs, ErrorRatio: ratio(n.w.failed, n.w.count),
			P50Seconds: quantile(&bounds, &n.w.hist, 0.5), P99Seconds: quantile(&bounds, &n.w.hist, 0.99),
		})
	}
	sort.Slice(g.Nodes, func(i, j int) bool { return g.Nodes[i].ID < g.Nodes[j].ID })
	sort.Slice(g.Edges, func(i, j int) bool {
		x, y := g.Edges[i], g.Edges[j]
		if x.Client != y.Client {
			return x.Client < y.Client
		}
		if x.Server != y.Server {
			return x.Server < y.Server
		}
		return x.ConnectionType < y.ConnectionType
	})
	return g
}

func ratio(a, b uint64) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// quantile estimates the q-quantile from bucket counts the way PromQL's histogram_quantile does: linear
// interpolation inside the bucket, the highest finite bound for the +Inf bucket.
func quantile(bounds *[numBuckets]float64, counts *[numBuckets + 1]uint64, q float64) float64 {
	var total uint64
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var cum float64
	for i, c := range counts {
		prev := cum
		cum += float64(c)
		if cum >= rank && c > 0 {
			if i == numBuckets {
				return bounds[numBuckets-1]
			}
			lower := 0.0
			if i > 0 {
				lower = bounds[i-1]
			}
			return lower + (bounds[i]-lower)*(rank-prev)/float64(c)
		}
	}
	return bounds[numBuckets-1]
}
