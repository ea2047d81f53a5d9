package registry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Backoff bounds of Run's reconnect loop.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

var errCompacted = errors.New("registry: watch revision compacted")

// Run keeps the store's in-memory view in sync with etcd until ctx ends:
// it lists every instance at one revision, then watches from the next
// revision (clientv3.WithRequireLeader), applying each batch of changes and
// calling notify after it. notify must be cheap and must not block (a
// non-blocking send on a buffered channel, say): the caller coalesces.
//
// When the watch's revision has been compacted away, Run lists again; when
// etcd is unreachable it retries with backoff and catches up by itself. A
// Run started again on the same store resumes from the revision it reached.
// It returns nil when ctx ends, and an error only when another Run is
// already running.
func (s *Store) Run(ctx context.Context, notify func()) error {
	if notify == nil {
		notify = func() {}
	}
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("registry: Run is already running")
	}
	s.running = true
	s.ready = s.listed
	needList := !s.listed
	rev := s.rev
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running = false
		s.ready = false
		s.mu.Unlock()
	}()

	backoff := minBackoff
	wait := func() bool {
		d := backoff/2 + rand.N(backoff/2+1)
		backoff = min(2*backoff, maxBackoff)
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	healthy := true
	for ctx.Err() == nil {
		if needList {
			r, err := s.list(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				s.metrics.etcdErrors.WithLabelValues("list").Inc()
				if healthy {
					s.logger.Warn("registry list failed; retrying with backoff", "err", err)
					healthy = false
				}
				if !wait() {
					return nil
				}
				continue
			}
			rev, needList = r, false
			notify()
		}
		if !healthy {
			s.logger.Info("registry watch re-established", "revision", rev)
			healthy = true
		}
		r, err := s.watch(ctx, rev, notify)
		if r > rev {
			rev = r
			backoff = minBackoff
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errCompacted):
			s.logger.Info("registry watch revision compacted; listing again", "revision", rev)
			needList = true
		default:
			s.metrics.etcdErrors.WithLabelValues("watch").Inc()
			s.logger.Warn("registry watch ended; resuming with backoff", "revision", rev, "err", err)
			healthy = false
			if !wait() {
				return nil
			}
		}
	}
	return nil
}

// list replaces the view with every instance at one revision.
func (s *Store) list(ctx context.Context) (int64, error) {
	lctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), 4*s.timeout)
	defer cancel()
	resp, err := s.cli.Get(lctx, s.keys.instances, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("registry: list: %w", err)
	}
	entries := make(map[string]entry, len(resp.Kvs))
	services := map[serviceKey]int{}
	for _, kv := range resp.Kvs {
		in, err := s.decode(string(kv.Key), kv.Value, kv.ModRevision)
		if err != nil {
			continue
		}
		entries[string(kv.Key)] = entry{inst: in, lease: clientv3.LeaseID(kv.Lease)}
		services[serviceKey{in.Namespace, in.Service}]++
	}
	s.mu.Lock()
	s.entries = entries
	s.services = services
	s.rev = resp.Header.Revision
	s.listed = true
	s.ready = true
	s.dirty = true
	s.updateGaugesLocked()
	s.mu.Unlock()
	return resp.Header.Revision, nil
}

// watch applies changes after rev until the watch fails or ctx ends; it
// returns the last revision applied.
func (s *Store) watch(ctx context.Context, rev int64, notify func()) (int64, error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(wctx, s.keys.instances, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return rev, errCompacted
		}
		if err := resp.Err(); err != nil {
			return rev, err
		}
		if resp.IsProgressNotify() {
			// Nothing changed up to this revision: resuming from it is safe.
			if resp.Header.Revision > rev {
				rev = resp.Header.Revision
				s.mu.Lock()
				s.rev = rev
				s.mu.Unlock()
			}
			continue
		}
		if len(resp.Events) == 0 {
			continue
		}
		rev = s.apply(resp.Events)
		notify()
	}
	if err := ctx.Err(); err != nil {
		return rev, err
	}
	return rev, errors.New("registry: watch channel closed")
}

// apply applies one batch of watch events and returns the revision of the
// last one.
func (s *Store) apply(events []*clientv3.Event) int64 {
	type decoded struct {
		key   string
		del   bool
		e     entry
		valid bool
	}
	// Decode outside the lock; Snapshot readers should not wait on JSON.
	ds := make([]decoded, 0, len(events))
	var last int64
	for _, ev := range events {
		key := string(ev.Kv.Key)
		last = max(last, ev.Kv.ModRevision)
		if ev.Type == clientv3.EventTypeDelete {
			ds = append(ds, decoded{key: key, del: true})
			continue
		}
		in, err := s.decode(key, ev.Kv.Value, ev.Kv.ModRevision)
		ds = append(ds, decoded{key: key, e: entry{inst: in, lease: clientv3.LeaseID(ev.Kv.Lease)}, valid: err == nil})
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range ds {
		if old, ok := s.entries[d.key]; ok {
			s.dropServiceLocked(serviceKey{old.inst.Namespace, old.inst.Service})
			delete(s.entries, d.key)
		}
		if d.del || !d.valid {
			continue
		}
		s.entries[d.key] = d.e
		s.services[serviceKey{d.e.inst.Namespace, d.e.inst.Service}]++
	}
	s.rev = max(s.rev, last)
	s.dirty = true
	s.updateGaugesLocked()
	return s.rev
}

func (s *Store) dropServiceLocked(k serviceKey) {
	if s.services[k] <= 1 {
		delete(s.services, k)
		return
	}
	s.services[k]--
}

func (s *Store) updateGaugesLocked() {
	s.metrics.instances.Set(float64(len(s.entries)))
	s.metrics.services.Set(float64(len(s.services)))
}

// Snapshot returns the registry as the watch last saw it. It is rebuilt only
// after a change, so calling it often is cheap. The result is shared: treat
// it (and the maps and slices inside) as read-only.
func (s *Store) Snapshot() Snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dirty {
		instances := make([]Instance, 0, len(s.entries))
		for _, e := range s.entries {
			instances = append(instances, e.inst)
		}
		s.snap = BuildSnapshot(s.rev, instances)
		s.dirty = false
	}
	return s.snap
}

// Ready reports whether Run is running and has completed its first list, so
// that Snapshot reflects etcd (possibly a little behind, or stale while etcd
// is unreachable).
func (s *Store) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

// Revision is the etcd revision the in-memory view reflects.
func (s *Store) Revision() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev
}

func (s *Store) cachedLease(key string) (clientv3.LeaseID, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.ready {
		return 0, false
	}
	e, ok := s.entries[key]
	return e.lease, ok && e.lease != 0
}
