package registry

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Bounds of one merged transaction: etcd refuses more than 128 operations
// per transaction (the nested ones included) and requests over 1.5 MiB by
// default.
const (
	maxBatchTxns  = 64
	maxBatchBytes = 512 << 10
	// maxBatchesInFlight is how many merged transactions may wait for etcd
	// at once. A lone write is sent at once; writes queue, and merge, only
	// behind this many.
	maxBatchesInFlight = 4
)

// txnBatcher merges concurrent single-key compare-and-swap transactions into
// one etcd transaction of nested ones: under load, N registrations cost one
// raft proposal for their writes instead of N (each nested transaction still
// succeeds or fails on its own compare). Keys within one merged transaction
// are distinct, as etcd requires.
type txnBatcher struct {
	kv      clientv3.KV
	timeout time.Duration

	mu       sync.Mutex
	queue    []*batchedTxn
	inFlight int
	merged   int // transactions sent merged with others, for tests
}

// batchedTxn is one caller's transaction: If(cmp) Then(then) Else(els).
type batchedTxn struct {
	ctx  context.Context // the caller's: once it ends, the write is not sent
	key  string          // the one key then writes
	cmp  clientv3.Cmp
	then clientv3.Op
	els  clientv3.Op
	size int

	done chan struct{}
	resp *clientv3.TxnResponse
	err  error
}

// commit runs If(cmp) Then(then) Else(els), merged with whatever other
// transactions are waiting. The response is as for a transaction of its own,
// except that its revision is that of the merged write. Errors are as from
// clientv3's Txn; when ctx ends first the transaction may still be applied.
func (b *txnBatcher) commit(ctx context.Context, key string, cmp clientv3.Cmp, then, els clientv3.Op) (*clientv3.TxnResponse, error) {
	t := &batchedTxn{ctx: ctx, key: key, cmp: cmp, then: then, els: els, size: len(key) + len(then.ValueBytes()) + 64, done: make(chan struct{})}
	b.mu.Lock()
	b.queue = append(b.queue, t)
	start := b.inFlight < maxBatchesInFlight
	if start {
		b.inFlight++
	}
	b.mu.Unlock()
	if start {
		go b.run()
	}
	select {
	case <-t.done:
		return t.resp, t.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// run sends merged transactions until the queue is empty.
func (b *txnBatcher) run() {
	for {
		b.mu.Lock()
		batch := b.takeLocked()
		if len(batch) == 0 {
			b.inFlight--
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.send(batch)
	}
}

// takeLocked removes the next batch from the queue: in order, up to the
// bounds, skipping (and keeping queued) a second write of the same key.
// Writes whose caller has given up (etcd slow or down) are dropped, not
// sent late.
func (b *txnBatcher) takeLocked() []*batchedTxn {
	if len(b.queue) == 0 {
		return nil
	}
	var (
		batch []*batchedTxn
		keys  map[string]struct{}
		rest  = b.queue[:0]
		bytes int
	)
	for i, t := range b.queue {
		if t.ctx != nil && t.ctx.Err() != nil {
			t.err = t.ctx.Err()
			close(t.done)
			continue
		}
		_, dup := keys[t.key]
		full := len(batch) == maxBatchTxns || (len(batch) > 0 && bytes+t.size > maxBatchBytes)
		if full {
			rest = append(rest, b.queue[i:]...)
			break
		}
		if dup {
			rest = append(rest, t)
			continue
		}
		if keys == nil {
			keys = make(map[string]struct{}, min(len(b.queue), maxBatchTxns))
		}
		keys[t.key] = struct{}{}
		batch = append(batch, t)
		bytes += t.size
	}
	clear(b.queue[len(rest):])
	b.queue = rest
	return batch
}

// send commits one batch and hands each caller its result.
func (b *txnBatcher) send(batch []*batchedTxn) {
	ctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(context.Background()), b.timeout)
	defer cancel()
	if len(batch) == 1 {
		t := batch[0]
		t.resp, t.err = b.kv.Txn(ctx).If(t.cmp).Then(t.then).Else(t.els).Commit()
		close(t.done)
		return
	}
	b.mu.Lock()
	b.merged += len(batch)
	b.mu.Unlock()
	ops := make([]clientv3.Op, len(batch))
	for i, t := range batch {
		ops[i] = clientv3.OpTxn([]clientv3.Cmp{t.cmp}, []clientv3.Op{t.then}, []clientv3.Op{t.els})
	}
	resp, err := b.kv.Txn(ctx).Then(ops...).Commit()
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		// One write's lease is gone, which fails the whole merged write:
		// send each on its own, so that only that one fails.
		for _, t := range batch {
			t.resp, t.err = b.kv.Txn(ctx).If(t.cmp).Then(t.then).Else(t.els).Commit()
			close(t.done)
		}
		return
	}
	for i, t := range batch {
		if err != nil {
			t.err = err
		} else if len(resp.Responses) != len(batch) || resp.Responses[i].GetResponseTxn() == nil {
			t.err = errors.New("registry: merged transaction: malformed response")
		} else {
			sub := resp.Responses[i].GetResponseTxn()
			t.resp = &clientv3.TxnResponse{Header: resp.Header, Succeeded: sub.Succeeded, Responses: sub.Responses}
		}
		close(t.done)
	}
}
