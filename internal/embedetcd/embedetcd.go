package embedetcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.uber.org/zap"
)

// DefaultClientAddr and DefaultPeerAddr are the listeners used when Config
// leaves them empty.
const (
	DefaultClientAddr = "127.0.0.1:2379"
	DefaultPeerAddr   = "127.0.0.1:2380"
)

// memberName is the name of the single member; it is stored in the data
// directory, so it must not change between runs.
const memberName = "meshplane"

// Config says where the embedded etcd keeps its data and listens.
type Config struct {
	// DataDir holds etcd's WAL and snapshots; required. A server restarted on
	// the same DataDir keeps its data.
	DataDir string
	// ClientAddr is host:port (or http://host:port) for clients; empty means
	// DefaultClientAddr. Port 0 picks a free port; Endpoints reports it.
	ClientAddr string
	// PeerAddr is host:port (or http://host:port) for raft peers; empty means
	// DefaultPeerAddr. Port 0 picks a free port.
	PeerAddr string
	// Logger receives etcd's warnings and errors; nil discards them.
	Logger *slog.Logger
	// StartTimeout bounds how long Start waits for etcd to become ready;
	// zero means 60 seconds (it is also bounded by Start's ctx).
	StartTimeout time.Duration
	// UnsafeNoFsync skips fsync: only for tests, where it saves much time on
	// slow disks. A crash may lose data.
	UnsafeNoFsync bool
}

// Server is a running embedded etcd.
type Server struct {
	etcd      *embed.Etcd
	endpoints []string
	core      *slogCore
	closeOnce sync.Once
}

// Start starts etcd and waits until it serves clients (it has elected itself
// leader) or ctx ends.
func Start(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("embedetcd: DataDir is required")
	}
	if cfg.ClientAddr == "" {
		cfg.ClientAddr = DefaultClientAddr
	}
	if cfg.PeerAddr == "" {
		cfg.PeerAddr = DefaultPeerAddr
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	clientURL, err := listenURL(cfg.ClientAddr)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: client address %q: %w", cfg.ClientAddr, err)
	}
	peerURL, err := listenURL(cfg.PeerAddr)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: peer address %q: %w", cfg.PeerAddr, err)
	}

	// etcd wants its data directory private; make it so rather than warn.
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("embedetcd: data dir: %w", err)
	}
	if err := os.Chmod(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("embedetcd: data dir: %w", err)
	}

	ec := embed.NewConfig()
	ec.Name = memberName
	ec.Dir = cfg.DataDir
	ec.ListenClientUrls = []url.URL{*clientURL}
	ec.AdvertiseClientUrls = []url.URL{*clientURL}
	ec.ListenPeerUrls = []url.URL{*peerURL}
	ec.AdvertisePeerUrls = []url.URL{*peerURL}
	ec.InitialCluster = ec.InitialClusterFromName(memberName)
	ec.UnsafeNoFsync = cfg.UnsafeNoFsync
	// Keep history bounded without operator action; watchers that fall
	// behind re-list (the registry store handles ErrCompacted).
	ec.AutoCompactionMode = "periodic"
	ec.AutoCompactionRetention = "1h"
	ec.Logger = "zap"
	ec.LogLevel = "warn"
	core := newSlogCore(logger.With("component", "etcd"), zap.WarnLevel)
	ec.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.New(core))

	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("embedetcd: start: %w", err)
	}
	timer := time.NewTimer(cfg.StartTimeout)
	defer timer.Stop()
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("embedetcd: start: %w", err)
	case <-timer.C:
		e.Close()
		return nil, fmt.Errorf("embedetcd: not ready after %s", cfg.StartTimeout)
	case <-ctx.Done():
		e.Close()
		return nil, fmt.Errorf("embedetcd: start: %w", ctx.Err())
	}
	s := &Server{etcd: e, core: core}
	for _, l := range e.Clients {
		s.endpoints = append(s.endpoints, "http://"+l.Addr().String())
	}
	return s, nil
}

// Endpoints are the client URLs actually bound, e.g. http://127.0.0.1:40123.
func (s *Server) Endpoints() []string {
	return append([]string(nil), s.endpoints...)
}

// Client returns a client that calls this etcd in-process: requests are
// function calls into the server, without loopback gRPC, protobuf encoding or
// HTTP/2 framing (a registration through the registry's gRPC API costs about
// half the CPU it does with a network client). Transactions, leases and
// watches behave as over the network, with two differences: etcd's gRPC
// interceptors do not run, so clientv3.WithRequireLeader has no effect (a
// single member leads itself while it runs; there is no leaderless state to
// detect), and when the server stops the client is closed, so that its
// watches end (an in-process watch would otherwise wait forever) and requests
// fail at once. The caller closes the client when done, before or after
// Close of the server.
func (s *Server) Client() *clientv3.Client {
	cli := v3client.New(s.etcd.Server)
	go func() {
		select {
		case <-s.etcd.Server.StopNotify():
			_ = cli.Close()
		case <-cli.Ctx().Done():
		}
	}()
	return cli
}

// Err reports a fatal error of the running server (the channel is closed or
// never written while all is well).
func (s *Server) Err() <-chan error { return s.etcd.Err() }

// Close stops etcd and waits until its listeners and storage are closed. It
// is safe to call more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		// Stopping makes etcd log "errors" about its own closed listeners.
		s.core.quiet()
		s.etcd.Close()
		<-s.etcd.Server.StopNotify()
	})
}

// listenURL parses host:port or http://host:port, and replaces port 0 with
// a free port. etcd records the advertised peer URL in its data directory and
// clients need a real address, so a concrete port is chosen here rather than
// letting etcd bind :0.
func listenURL(addr string) (*url.URL, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("scheme %q not supported (only http)", u.Scheme)
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return nil, err
	}
	if port == "0" {
		p, err := FreePort(host)
		if err != nil {
			return nil, err
		}
		u.Host = net.JoinHostPort(host, fmt.Sprint(p))
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}, nil
}

// FreePort asks the kernel for a free TCP port on host and releases it. Another
// process may take it before it is used; callers that can bind :0 directly
// should.
func FreePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("embedetcd: pick free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
