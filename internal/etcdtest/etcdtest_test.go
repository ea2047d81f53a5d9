package etcdtest_test

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/meshplane/meshplane/internal/etcdtest"
)

func TestRestartKeepsDataAndClientReconnects(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v1"); err != nil {
		t.Fatal(err)
	}
	c.Restart()
	// The old client reconnects on its own; poll until it can read.
	var got string
	for ctx.Err() == nil {
		resp, err := cli.Get(ctx, "k")
		if err == nil && len(resp.Kvs) == 1 {
			got = string(resp.Kvs[0].Value)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got != "v1" {
		t.Fatalf("after restart got %q, want v1", got)
	}
}

func TestCompactMakesOldWatchFail(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r1, err := cli.Put(ctx, "k", "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "k", "b"); err != nil {
		t.Fatal(err)
	}
	c.Compact(c.Revision())
	wch := cli.Watch(ctx, "k", clientv3.WithRev(r1.Header.Revision))
	resp := <-wch
	if resp.Err() != rpctypes.ErrCompacted {
		t.Fatalf("watch from compacted revision: err = %v, want ErrCompacted", resp.Err())
	}
}
