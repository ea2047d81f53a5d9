package registry

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshplane/meshplane/internal/etcdtest"
)

func TestTxnBatcherTakesDistinctKeysWithinBounds(t *testing.T) {
	item := func(key string, size int) *batchedTxn { return &batchedTxn{key: key, size: size} }
	keysOf := func(ts []*batchedTxn) string {
		var ks []string
		for _, t := range ts {
			ks = append(ks, t.key)
		}
		return strings.Join(ks, ",")
	}
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	abandoned := &batchedTxn{ctx: gone, key: "x", size: 1, done: make(chan struct{})}
	many := make([]*batchedTxn, maxBatchTxns+3)
	for i := range many {
		many[i] = item(fmt.Sprint(i), 1)
	}
	tests := map[string]struct {
		queue     []*batchedTxn
		wantBatch string
		wantRest  string
	}{
		"empty":           {},
		"one":             {queue: []*batchedTxn{item("a", 1)}, wantBatch: "a"},
		"same key waits":  {queue: []*batchedTxn{item("a", 1), item("b", 1), item("a", 1), item("c", 1)}, wantBatch: "a,b,c", wantRest: "a"},
		"bytes bound":     {queue: []*batchedTxn{item("a", maxBatchBytes/2), item("b", maxBatchBytes/2), item("c", 1), item("d", 1)}, wantBatch: "a,b", wantRest: "c,d"},
		"big one alone":   {queue: []*batchedTxn{item("a", 2*maxBatchBytes), item("b", 1)}, wantBatch: "a", wantRest: "b"},
		"count bound":     {queue: many, wantBatch: keysOf(many[:maxBatchTxns]), wantRest: keysOf(many[maxBatchTxns:])},
		"caller gone":     {queue: []*batchedTxn{item("a", 1), abandoned, item("b", 1)}, wantBatch: "a,b"},
		"order preserved": {queue: []*batchedTxn{item("a", 1), item("a", 1), item("b", 1), item("a", 1), item("c", 1)}, wantBatch: "a,b,c", wantRest: "a,a"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b := &txnBatcher{queue: append([]*batchedTxn(nil), tc.queue...)}
			batch := b.takeLocked()
			if got := keysOf(batch); got != tc.wantBatch {
				t.Errorf("batch = %q, want %q", got, tc.wantBatch)
			}
			if got := keysOf(b.queue); got != tc.wantRest {
				t.Errorf("left queued = %q, want %q", got, tc.wantRest)
			}
		})
	}
	select {
	case <-abandoned.done:
		if !errors.Is(abandoned.err, context.Canceled) {
			t.Errorf("abandoned write: err %v, want its caller's context.Canceled", abandoned.err)
		}
	default:
		t.Error("abandoned write still pending")
	}
}

// TestTxnBatcherSendsEachItsOwnResult merges transactions that succeed, fail
// their compare and write on a revoked lease, and checks that each caller
// gets the result it would have had alone.
func TestTxnBatcherSendsEachItsOwnResult(t *testing.T) {
	cli := etcdtest.Start(t).Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "exists", "old"); err != nil {
		t.Fatal(err)
	}
	live, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Revoke(ctx, dead.ID); err != nil {
		t.Fatal(err)
	}
	b := &txnBatcher{kv: cli, timeout: 10 * time.Second}
	create := func(key string, lease clientv3.LeaseID) *batchedTxn {
		return &batchedTxn{
			key:  key,
			cmp:  clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
			then: clientv3.OpPut(key, "new", clientv3.WithLease(lease)),
			els:  clientv3.OpGet(key),
			done: make(chan struct{}),
		}
	}
	type want struct {
		succeeded bool
		err       error
		elseValue string // the value the Else branch read, when it ran
	}
	tests := map[string]struct {
		batch []*batchedTxn
		want  []want
	}{
		"all succeed": {
			batch: []*batchedTxn{create("a", live.ID), create("b", live.ID)},
			want:  []want{{succeeded: true}, {succeeded: true}},
		},
		"one compare fails": {
			batch: []*batchedTxn{create("c", live.ID), create("exists", live.ID), create("d", live.ID)},
			want:  []want{{succeeded: true}, {elseValue: "old"}, {succeeded: true}},
		},
		"one lease revoked": {
			batch: []*batchedTxn{create("e", live.ID), create("f", dead.ID), create("g", live.ID)},
			want:  []want{{succeeded: true}, {err: rpctypes.ErrLeaseNotFound}, {succeeded: true}},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			b.send(tc.batch)
			var rev int64
			for i, bt := range tc.batch {
				<-bt.done
				w := tc.want[i]
				if w.err != nil {
					if !errors.Is(bt.err, w.err) {
						t.Errorf("%s: err = %v, want %v", bt.key, bt.err, w.err)
					}
					continue
				}
				if bt.err != nil {
					t.Fatalf("%s: %v", bt.key, bt.err)
				}
				if bt.resp.Succeeded != w.succeeded {
					t.Errorf("%s: Succeeded = %v, want %v", bt.key, bt.resp.Succeeded, w.succeeded)
				}
				if w.succeeded {
					get, err := cli.Get(ctx, bt.key)
					if err != nil || len(get.Kvs) != 1 || string(get.Kvs[0].Value) != "new" || get.Kvs[0].ModRevision != bt.resp.Header.Revision {
						t.Errorf("%s after write: %v, %v; want new at revision %d", bt.key, get, err, bt.resp.Header.Revision)
					}
					if name == "all succeed" {
						// Merged: one write, one revision.
						if rev != 0 && bt.resp.Header.Revision != rev {
							t.Errorf("revisions %d and %d within one merged write", rev, bt.resp.Header.Revision)
						}
						rev = bt.resp.Header.Revision
					}
				} else {
					kvs := bt.resp.Responses[0].GetResponseRange().GetKvs()
					if len(kvs) != 1 || string(kvs[0].Value) != w.elseValue {
						t.Errorf("%s: Else read %v, want %q", bt.key, kvs, w.elseValue)
					}
				}
			}
		})
	}
}

// TestTxnBatcherConcurrentCommits runs many concurrent compare-and-swap
// increments of a few keys through the batcher: each successful one must
// count exactly once, whether merged or not.
func TestTxnBatcherConcurrentCommits(t *testing.T) {
	cli := etcdtest.Start(t).Client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := &txnBatcher{kv: cli, timeout: 10 * time.Second}
	const keys, writers, incs = 4, 32, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("counter-%d", w%keys)
			var modRev int64
			n := 0
			for done := 0; done < incs; {
				cmp := clientv3.Compare(clientv3.ModRevision(key), "=", modRev)
				resp, err := b.commit(ctx, key, cmp, clientv3.OpPut(key, fmt.Sprint(n+1)), clientv3.OpGet(key))
				if err != nil {
					errs <- err
					return
				}
				if resp.Succeeded {
					modRev, n = resp.Header.Revision, n+1
					done++
					continue
				}
				kvs := resp.Responses[0].GetResponseRange().GetKvs()
				modRev, n = 0, 0
				if len(kvs) == 1 {
					modRev = kvs[0].ModRevision
					fmt.Sscan(string(kvs[0].Value), &n)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for k := range keys {
		get, err := cli.Get(ctx, fmt.Sprintf("counter-%d", k))
		if err != nil || len(get.Kvs) != 1 {
			t.Fatalf("Get: %v %v", get, err)
		}
		if got, want := string(get.Kvs[0].Value), fmt.Sprint(writers/keys*incs); got != want {
			t.Errorf("counter-%d = %s, want %s", k, got, want)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.inFlight != 0 || len(b.queue) != 0 {
		t.Errorf("after all commits: %d in flight, %d queued; want none", b.inFlight, len(b.queue))
	}
	// 32 writers and at most 4 transactions in flight: writes queued, and
	// queued writes are merged.
	if b.merged == 0 {
		t.Error("no transaction was merged with another")
	}
}
