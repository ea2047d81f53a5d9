package embedetcd_test

import (
	"bytes"
	"context"
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
