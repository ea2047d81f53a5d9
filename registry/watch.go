package registry

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// WatchEventType says what happened to an instance.
type WatchEventType int

// Watch event types.
const (
	// WatchPut: the instance was registered or changed.
	WatchPut WatchEventType = iota + 1
	// WatchDelete: the instance is gone; only Namespace, Service, ID and
	// ModRevision are set.
	WatchDelete
	// WatchReset: forget every instance seen so far; PUTs of the whole
	// current state follow.
	WatchReset
)

// WatchEvent is one change seen by Watch.
type WatchEvent struct {
	Type     WatchEventType
	Instance Instance
}

// WatchBatch is a group of events delivered together.
type WatchBatch struct {
	Events []WatchEvent
	// Revision is where a resumed watch continues from (pass it as since).
	// It is 0 on the leading parts of a reset that spans several batches:
	// those are not consistent points to resume from.
	Revision int64
}

// resetChunk bounds the events of one batch of a reset, so that a reset of a
// large registry stays well below gRPC's default 4 MiB message limit.
const resetChunk = 1000

// Watch streams the changes after revision since of the instances in a
// namespace (all when empty) or one service to send, until ctx ends or send
// fails. With since 0, or when since was compacted away, it first sends a
// WatchReset and the current state. Errors: *ValidationError, ErrUnavailable
// (the etcd watch broke: resume from the last Revision received), send's
// error, or ctx's.
func (s *Store) Watch(ctx context.Context, ns, service string, since int64, send func(WatchBatch) error) error {
	if err := ValidateScope(ns, service); err != nil {
		return err
	}
	if since < 0 {
		return &ValidationError{Violations: []FieldViolation{{Field: "since_revision", Description: "must not be negative"}}}
	}
	prefix := s.keys.scope(ns, service)
	rev, reset := since, since == 0
	for {
		if reset {
			r, err := s.sendState(ctx, prefix, send)
			if err != nil {
				return err
			}
			rev, reset = r, false
		}
		r, compacted, err := s.streamChanges(ctx, prefix, rev, send)
		if err != nil {
			return err
		}
		rev, reset = r, compacted
	}
}

// sendState sends a reset followed by the state under prefix.
func (s *Store) sendState(ctx context.Context, prefix string, send func(WatchBatch) error) (int64, error) {
	octx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), 4*s.timeout)
	resp, err := s.cli.Get(octx, prefix, clientv3.WithPrefix())
	cancel()
	if err != nil {
		return 0, s.etcdErr(ctx, "watch", err)
	}
	batch := WatchBatch{Events: []WatchEvent{{Type: WatchReset}}}
	for _, kv := range resp.Kvs {
		in, err := s.decode(string(kv.Key), kv.Value, kv.ModRevision)
		if err != nil {
			continue
		}
		if len(batch.Events) == resetChunk {
			if err := send(batch); err != nil {
				return 0, err
			}
			batch = WatchBatch{}
		}
		batch.Events = append(batch.Events, WatchEvent{Type: WatchPut, Instance: in})
	}
	batch.Revision = resp.Header.Revision
	if err := send(batch); err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// streamChanges sends the changes after rev until the watch breaks.
func (s *Store) streamChanges(ctx context.Context, prefix string, rev int64, send func(WatchBatch) error) (last int64, compacted bool, err error) {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return rev, true, nil
		}
		if err := resp.Err(); err != nil {
			return rev, false, s.etcdErr(ctx, "watch", err)
		}
		batch := WatchBatch{Events: make([]WatchEvent, 0, len(resp.Events))}
		for _, ev := range resp.Events {
			rev = max(rev, ev.Kv.ModRevision)
			key := string(ev.Kv.Key)
			if ev.Type == clientv3.EventTypeDelete {
				ns, svc, id, err := s.keys.parse(key)
				if err != nil {
					continue
				}
				batch.Events = append(batch.Events, WatchEvent{Type: WatchDelete, Instance: Instance{Namespace: ns, Service: svc, ID: id, ModRevision: ev.Kv.ModRevision}})
				continue
			}
			in, err := s.decode(key, ev.Kv.Value, ev.Kv.ModRevision)
			if err != nil {
				continue
			}
			batch.Events = append(batch.Events, WatchEvent{Type: WatchPut, Instance: in})
		}
		if resp.IsProgressNotify() {
			rev = max(rev, resp.Header.Revision)
		}
		if len(batch.Events) == 0 && !resp.IsProgressNotify() {
			continue
		}
		batch.Revision = rev
		if err := send(batch); err != nil {
			return rev, false, err
		}
	}
	if err := ctx.Err(); err != nil {
		return rev, false, err
	}
	return rev, false, fmt.Errorf("registry: watch: %w: watch channel closed", ErrUnavailable)
}
