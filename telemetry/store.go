package telemetry

import (
	"encoding/binary"
	"sync"
)

// storedSpan indexes one span of the trace store; its service name and encoding live in the byte arena.
type storedSpan struct {
	traceID [16]byte
	start   uint64
	end     uint64
	next    int64 // sequence number of the trace's next span, -1 when none
	pos     int64 // arena position of the record (absolute, see traceStore)
	size    int32
	status  uint8
	root    bool
}

type traceEntry struct {
	first, last int64
}

// storeStats are the trace store's figures, exposed as meshplane_telemetry_trace_store_* metrics.
type storeStats struct {
	spans         int
	traces        int
	bytes         int64
	evictedSpans  uint64
	evictedBytes  uint64
	evictedTraces uint64
	skippedSpans  uint64 // spans larger than one arena chunk, never stored
}

// traceStore keeps the most recent spans, bounded both in span count and in bytes, evicting oldest first.
//
// Spans are numbered by a growing sequence; span seq lives at spans[seq % len]. Records (service name + span
// encoding) are appended to an arena addressed by a growing position: position p is byte p%chunk of chunk
// (p/chunk)%nChunks, and no record straddles two chunks. Eviction always removes the oldest span, which is always
// the first of its trace, so per-trace chains stay valid.
type traceStore struct {
	mu       sync.Mutex
	maxSpans int
	chunk    int64
	chunks   [][]byte
	spans    []storedSpan
	headSeq  int64 // oldest live span
	nextSeq  int64
	headPos  int64 // arena position of the oldest live record
	writePos int64
	index    map[[16]byte]traceEntry
	stats    storeStats
}

func newTraceStore(maxSpans int, maxBytes int64) *traceStore {
	if maxSpans <= 0 {
		return nil
	}
	chunk := int64(1 << 20)
	if maxBytes < 4*chunk {
		chunk = max(maxBytes/4, 1)
	}
	n := max(maxBytes/chunk, 1)
	return &traceStore{
		maxSpans: maxSpans,
		chunk:    chunk,
		chunks:   make([][]byte, n),
		index:    make(map[[16]byte]traceEntry),
	}
}

func (t *traceStore) capBytes() int64 { return t.chunk * int64(len(t.chunks)) }

// add stores a batch of spans.
func (t *traceStore) add(spans []spanRec) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range spans {
		t.addLocked(&spans[i])
	}
}

func (t *traceStore) addLocked(s *spanRec) {
	var hdr [binary.MaxVarintLen64]byte
	hn := binary.PutUvarint(hdr[:], uint64(len(s.service)))
	size := int64(hn + len(s.service) + len(s.raw))
	if size > t.chunk {
		t.stats.skippedSpans++
		return
	}
	pos := t.writePos
	if off := pos % t.chunk; off+size > t.chunk {
		pos += t.chunk - off // pad to the next chunk
	}
	for t.nextSeq-t.headSeq >= int64(t.maxSpans) || (t.nextSeq > t.headSeq && pos+size-t.headPos > t.capBytes()) {
		t.evictLocked()
	}
	if t.nextSeq == t.headSeq {
		t.headPos = pos
	}
	ci := (pos / t.chunk) % int64(len(t.chunks))
	if t.chunks[ci] == nil {
		t.chunks[ci] = make([]byte, t.chunk)
	}
	off := pos % t.chunk
	buf := t.chunks[ci][off : off+size]
	copy(buf, hdr[:hn])
	copy(buf[hn:], s.service)
	copy(buf[hn+len(s.service):], s.raw)
	t.writePos = pos + size

	seq := t.nextSeq
	t.nextSeq++
	st := storedSpan{
		traceID: s.traceID, start: s.start, end: s.end, next: -1, pos: pos, size: int32(size),
		status: s.status, root: s.parentID == [8]byte{},
	}
	if len(t.spans) < t.maxSpans {
		t.spans = append(t.spans, st)
	} else {
		t.spans[seq%int64(t.maxSpans)] = st
	}
	if e, ok := t.index[s.traceID]; ok {
		t.at(e.last).next = seq
		e.last = seq
		t.index[s.traceID] = e
	} else {
		t.index[s.traceID] = traceEntry{first: seq, last: seq}
		t.stats.traces++
	}
	t.stats.spans++
	t.stats.bytes = t.writePos - t.headPos
}

func (t *traceStore) at(seq int64) *storedSpan { return &t.spans[seq%int64(t.maxSpans)] }

func (t *traceStore) evictLocked() {
	s := t.at(t.headSeq)
	e := t.index[s.traceID]
	if s.next < 0 {
		delete(t.index, s.traceID)
		t.stats.traces--
		t.stats.evictedTraces++
	} else {
		e.first = s.next
		t.index[s.traceID] = e
	}
	t.stats.evictedSpans++
	t.stats.evictedBytes += uint64(s.size)
	t.stats.spans--
	t.headSeq++
	if t.headSeq < t.nextSeq {
		t.headPos = t.at(t.headSeq).pos
	} else {
		t.headPos = t.writePos
	}
	t.stats.bytes = t.writePos - t.headPos
}

// record returns the service name and span encoding of a stored span. The slices alias the arena: use them
// under mu only.
func (t *traceStore) recordLocked(s *storedSpan) (service, raw []byte) {
	ci := (s.pos / t.chunk) % int64(len(t.chunks))
	off := s.pos % t.chunk
	buf := t.chunks[ci][off : off+int64(s.size)]
	n, hn := binary.Uvarint(buf)
	return buf[hn : hn+int(n)], buf[hn+int(n):]
}

// traceLocked calls fn for every stored span of a trace, oldest first; false when the trace is unknown.
func (t *traceStore) traceLocked(id [16]byte, fn func(s *storedSpan)) bool {
	e, ok := t.index[id]
	if !ok {
		return false
	}
	for seq := e.first; seq >= 0; {
		s := t.at(seq)
		fn(s)
		seq = s.next
	}
	return true
}

func (t *traceStore) snapshotStats() storeStats {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.stats
}
