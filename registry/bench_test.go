package registry

import (
	"fmt"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// fillEntries puts n instances, in services of 10,
// into the store's view, as the watch would.
func fillEntries(s *Store, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := range n {
		in := Instance{
			ID: fmt.Sprintf("10.%d.%d.%d-8080", i/65536, i/256%256, i%256), Service: fmt.Sprintf("svc-%d", i/10), Namespace: "default",
			Address: fmt.Sprintf("10.%d.%d.%d", i/65536, i/256%256, i%256), Ports: []Port{{Name: "grpc", Port: 8080, Protocol: ProtocolGRPC}},
			Weight: 1, Health: HealthServing, TTLSeconds: 15, Labels: map[string]string{"app": "x"},
		}
		key := newKeys("").instance(in.Namespace, in.Service, in.ID)
		s.entries[key] = entry{inst: in, lease: clientv3.LeaseID(i + 1)}
		s.services[serviceKey{in.Namespace, in.Service}]++
	}
	s.dirty = true
}

// BenchmarkSnapshotRebuild10k measures what the xDS loop pays after a change
// with 10,000 instances registered (1,000 services of 10).
func BenchmarkSnapshotRebuild10k(b *testing.B) {
	s, err := NewStore(&clientv3.Client{}, StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	fillEntries(s, 10000)
	b.ReportAllocs()
	for b.Loop() {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		if got := len(s.Snapshot().Services); got != 1000 {
			b.Fatalf("%d services", got)
		}
	}
}

// BenchmarkSnapshotCached10k is the cost of Snapshot when nothing changed.
func BenchmarkSnapshotCached10k(b *testing.B) {
	s, err := NewStore(&clientv3.Client{}, StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	fillEntries(s, 10000)
	s.Snapshot()
	for b.Loop() {
		s.Snapshot()
	}
}
