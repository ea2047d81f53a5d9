package embedetcd_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/meshplane/meshplane/internal/embedetcd"
)

// syncBuffer is a bytes.Buffer safe for the concurrent writes of etcd's logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestStartPortZeroServesAndRestarts(t *testing.T) {
	dir := t.TempDir()
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	s, err := embedetcd.Start(ctx, embedetcd.Config{DataDir: dir, ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", Logger: logger, UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	eps := s.Endpoints()
	if len(eps) != 1 || strings.HasSuffix(eps[0], ":0") || !strings.HasPrefix(eps[0], "http://127.0.0.1:") {
		t.Fatalf("Endpoints() = %v, want one bound loopback URL", eps)
	}
	put(ctx, t, eps, "k", "v")
	s.Close()
	s.Close() // idempotent

	s2, err := embedetcd.Start(ctx, embedetcd.Config{DataDir: dir, ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", Logger: logger, UnsafeNoFsync: true})
	if err != nil {
		t.Fatalf("restart on same data dir: %v", err)
	}
	defer s2.Close()
	cli := client(t, s2.Endpoints())
	resp, err := cli.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("after restart Get(k) = %v, want v", resp.Kvs)
	}
	s2.Close()
	// Start, restart and stop are routine: nothing for an operator to read.
	if out := logs.String(); out != "" {
		t.Errorf("etcd logged at info level or above on a clean start/restart/stop:\n%s", out)
	}
}

func TestStartRejectsBadConfig(t *testing.T) {
	tests := map[string]embedetcd.Config{
		"no data dir":   {},
		"bad client":    {DataDir: t.TempDir(), ClientAddr: "no-port"},
		"https scheme":  {DataDir: t.TempDir(), ClientAddr: "https://127.0.0.1:0"},
		"bad peer addr": {DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0", PeerAddr: "::::"},
	}
	for name, cfg := range tests {
		t.Run(name, func(t *testing.T) {
			s, err := embedetcd.Start(context.Background(), cfg)
			if err == nil {
				s.Close()
				t.Fatal("Start succeeded, want error")
			}
			if !strings.HasPrefix(err.Error(), "embedetcd: ") {
				t.Errorf("error %q lacks package prefix", err)
			}
		})
	}
}

func client(t *testing.T, eps []string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func put(ctx context.Context, t *testing.T, eps []string, k, v string) {
	t.Helper()
	if _, err := client(t, eps).Put(ctx, k, v); err != nil {
		t.Fatal(err)
	}
}

func TestClientInProcess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := embedetcd.Start(ctx, embedetcd.Config{DataDir: t.TempDir(), ClientAddr: "127.0.0.1:0", PeerAddr: "127.0.0.1:0", UnsafeNoFsync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cli := s.Client()
	defer cli.Close()

	// A watch started before the write sees it.
	wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer wcancel()
	wch := cli.Watch(wctx, "k", clientv3.WithPrefix())
	grant, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	txn, err := cli.Txn(clientv3.WithRequireLeader(ctx)).
		If(clientv3.Compare(clientv3.CreateRevision("k1"), "=", 0)).
		Then(clientv3.OpPut("k1", "v", clientv3.WithLease(grant.ID))).
		Commit()
	if err != nil || !txn.Succeeded {
		t.Fatalf("Txn = %v, %v; want success", txn, err)
	}
	select {
	case resp := <-wch:
		if len(resp.Events) != 1 || string(resp.Events[0].Kv.Key) != "k1" || clientv3.LeaseID(resp.Events[0].Kv.Lease) != grant.ID {
			t.Fatalf("watch got %+v, want the put of k1 on lease %x", resp.Events, grant.ID)
		}
	case <-ctx.Done():
		t.Fatal("watch saw nothing")
	}
	ka, err := cli.KeepAliveOnce(ctx, grant.ID)
	if err != nil || ka.TTL != 60 {
		t.Fatalf("KeepAliveOnce = %v, %v; want TTL 60", ka, err)
	}
	// A revoked lease takes its key with it, as over the network.
	if _, err := cli.Revoke(ctx, grant.ID); err != nil {
		t.Fatal(err)
	}
	if resp, err := cli.Get(ctx, "k1"); err != nil || len(resp.Kvs) != 0 {
		t.Fatalf("Get after revoke = %v, %v; want no key", resp, err)
	}

	// Once the server stops, requests fail rather than hang until their
	// deadline, and watches end.
	s.Close()
	for open := true; open; {
		select {
		case _, open = <-wch:
		case <-time.After(30 * time.Second):
			t.Fatal("watch still open 30 s after the server stopped")
		}
	}
	for name, op := range map[string]func(context.Context) error{
		"get":   func(ctx context.Context) error { _, err := cli.Get(ctx, "k1"); return err },
		"put":   func(ctx context.Context) error { _, err := cli.Put(ctx, "k2", "v"); return err },
		"grant": func(ctx context.Context) error { _, err := cli.Grant(ctx, 60); return err },
	} {
		octx, ocancel := context.WithTimeout(ctx, 10*time.Second)
		err := op(octx)
		ocancel()
		if err == nil || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s after Close: %v, want an error before the deadline", name, err)
		}
	}
}
