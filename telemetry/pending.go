package telemetry

import "time"

// pairKey is trace id + span id of the client span (for a server span: its parent span id).
type pairKey [24]byte

// pendingEdge is half an edge waiting for its other half.
type pendingEdge struct {
	key       pairKey
	client    string
	server    string
	peer      string
	clientLat float64
	serverLat float64
	expireAt  int64
	gen       uint32
	conn      uint8
	failed    bool
	live      bool
}

type fifoEntry struct {
	idx int32
	gen uint32
}

// pendingStore holds unpaired edges in a slab (no allocation per span once warm) with a FIFO in insertion order;
// every entry waits the same time, so the FIFO is also in expiry order.
type pendingStore struct {
	index map[pairKey]int32
	slab  []pendingEdge
	free  []int32
	fifo  []fifoEntry
	head  int
	max   int
	wait  int64
}

func newPendingStore(max int, wait time.Duration) pendingStore {
	return pendingStore{index: make(map[pairKey]int32), max: max, wait: int64(wait)}
}

// upsert returns the pending edge for key, creating it when absent; ok is false when the store is full.
func (p *pendingStore) upsert(key pairKey, nowNs int64) (*pendingEdge, bool) {
	if i, ok := p.index[key]; ok {
		return &p.slab[i], true
	}
	if len(p.index) >= p.max {
		return nil, false
	}
	var i int32
	if n := len(p.free); n > 0 {
		i = p.free[n-1]
		p.free = p.free[:n-1]
	} else {
		p.slab = append(p.slab, pendingEdge{})
		i = int32(len(p.slab) - 1)
	}
	e := &p.slab[i]
	gen := e.gen + 1
	*e = pendingEdge{key: key, expireAt: nowNs + p.wait, gen: gen, live: true}
	p.index[key] = i
	if p.head > 0 && p.head*2 >= len(p.fifo) {
		n := copy(p.fifo, p.fifo[p.head:])
		p.fifo = p.fifo[:n]
		p.head = 0
	}
	p.fifo = append(p.fifo, fifoEntry{idx: i, gen: gen})
	return e, true
}

func (p *pendingStore) remove(key pairKey) {
	i, ok := p.index[key]
	if !ok {
		return
	}
	delete(p.index, key)
	p.slab[i].live = false
	p.slab[i].gen++
	p.free = append(p.free, i)
}

// expire calls fn for every live edge whose wait is over, then removes it.
func (p *pendingStore) expire(nowNs int64, fn func(*pendingEdge)) {
	for p.head < len(p.fifo) {
		f := p.fifo[p.head]
		e := &p.slab[f.idx]
		if e.live && e.gen == f.gen {
			if e.expireAt > nowNs {
				break
			}
			fn(e)
			p.remove(e.key)
		}
		p.head++
	}
	if p.head == len(p.fifo) {
		p.fifo = p.fifo[:0]
		p.head = 0
	}
}

func (p *pendingStore) len() int { return len(p.index) }
