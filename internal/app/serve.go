package app

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/meshplane/meshplane/api"
	"github.com/meshplane/meshplane/internal/embedetcd"
	"github.com/meshplane/meshplane/internal/rest"
	"github.com/meshplane/meshplane/registry"
	"github.com/meshplane/meshplane/telemetry"
	"github.com/meshplane/meshplane/xds"
)

// Bound is what serve actually listens on (port 0 resolved), reported to
// in-process tests through Serve's onReady callback.
type Bound struct {
	GRPC, HTTP         string
	OTLPGRPC, OTLPHTTP string
	Etcd               []string
}

func newLogger(cfg Config, out io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(out, opts))
	}
	return slog.New(slog.NewTextHandler(out, opts))
}

// Serve runs the control plane until ctx ends, then shuts down gracefully.
// onReady, when not nil, is called once every listener is bound.
func Serve(ctx context.Context, cfg Config, logOut io.Writer, onReady func(Bound)) (err error) {
	logger := newLogger(cfg, logOut)
	// cleanups run in reverse order on every return, so a partial start is
	// undone as cleanly as a full one.
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	tp, shutdownTracing, err := telemetry.NewTracerProvider(ctx, telemetry.TracerConfig{Endpoint: cfg.SelfTraceEndpoint, ServiceName: "meshplane-controlplane"})
	if err != nil {
		return err
	}
	cleanups = append(cleanups, func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = shutdownTracing(sctx)
	})

	bound := Bound{}
	endpoints := cfg.EtcdEndpoints
	// etcdFailed reports the embedded etcd dying under us; nil (never ready)
	// with an external etcd.
	var etcdFailed <-chan error
	var tlsConfig *tls.Config
	// embedded is the embedded etcd, nil with an external one.
	var embedded *embedetcd.Server
	if len(endpoints) == 0 {
		etcd, err := embedetcd.Start(ctx, embedetcd.Config{
			DataDir:    cfg.DataDir,
			ClientAddr: cfg.EtcdClientAddr,
			PeerAddr:   cfg.EtcdPeerAddr,
			Logger:     logger,
		})
		if err != nil {
			return fmt.Errorf("start embedded etcd: %w", err)
		}
		cleanups = append(cleanups, func() {
			etcd.Close()
			logger.Info("embedded etcd stopped")
		})
		embedded = etcd
		endpoints = etcd.Endpoints()
		etcdFailed = etcd.Err()
		logger.Info("embedded etcd listening", "client", endpoints, "data_dir", cfg.DataDir)
	} else if cfg.EtcdCAFile != "" || cfg.EtcdCertFile != "" {
		tlsInfo := transport.TLSInfo{TrustedCAFile: cfg.EtcdCAFile, CertFile: cfg.EtcdCertFile, KeyFile: cfg.EtcdKeyFile}
		if tlsConfig, err = tlsInfo.ClientConfig(); err != nil {
			return fmt.Errorf("etcd tls: %w", err)
		}
	}
	bound.Etcd = endpoints
	cli, err := etcdClient(embedded, clientv3.Config{
		Endpoints:            endpoints,
		TLS:                  tlsConfig,
		DialTimeout:          5 * time.Second,
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		// gRPC's default reconnect backoff grows to two minutes; after an etcd
		// outage the registry should be back within a second or two.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 2 * time.Second},
			MinConnectTimeout: 2 * time.Second,
		})},
		Logger: zap.NewNop(),
	})
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	cleanups = append(cleanups, func() { _ = cli.Close() })

	store, err := registry.NewStore(cli, registry.StoreOptions{
		Prefix:         cfg.EtcdPrefix,
		Logger:         logger,
		Registerer:     reg,
		RequestTimeout: cfg.EtcdRequestTimeout,
		TracerProvider: tp,
	})
	if err != nil {
		return err
	}
	xdsServer, err := xds.NewServer(xds.ServerOptions{
		Logger:         logger,
		Registerer:     reg,
		HoldOff:        cfg.XDSHoldOff,
		MaxDelay:       cfg.XDSMaxDelay,
		TracerProvider: tp,
	})
	if err != nil {
		return err
	}

	tel, err := telemetry.New(cfg.TelemetryConfig(), logger.With("component", "telemetry"), reg)
	if err != nil {
		return err
	}

	grpcServer := grpc.NewServer(xds.GRPCServerOptions()...)
	xdsServer.Register(grpcServer)
	registry.NewServer(store, logger).RegisterGRPC(grpcServer)
	healthServer := health.NewServer()
	healthpb.RegisterHealthServer(grpcServer, healthServer)
	reflection.Register(grpcServer)

	grpcLis, err := net.Listen("tcp", cfg.GRPCAddr)
	if err != nil {
		return fmt.Errorf("grpc listener: %w", err)
	}
	cleanups = append(cleanups, func() { _ = grpcLis.Close() })
	httpLis, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http listener: %w", err)
	}
	cleanups = append(cleanups, func() { _ = httpLis.Close() })
	bound.GRPC, bound.HTTP = grpcLis.Addr().String(), httpLis.Addr().String()

	input := func() xds.Input {
		snap := store.Snapshot()
		in := xds.Input{Services: snap.Services}
		if (cfg.EnvoyTracingPercent > 0 || len(cfg.EnvoyTracingServicePercent) > 0) && tel.OTLPGRPCAddr() != "" {
			host, port := splitHostPort(tel.OTLPGRPCAddr())
			in.Tracing = &xds.Tracing{
				CollectorHost:          host,
				CollectorPort:          port,
				SamplingPercent:        cfg.EnvoyTracingPercent,
				ServiceSamplingPercent: cfg.EnvoyTracingServicePercent,
			}
		}
		return in
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if reason := notReady(r.Context(), cli, cfg.EtcdPrefix, store, xdsServer); reason != "" {
			rest.WriteProblem(w, http.StatusServiceUnavailable, reason, "")
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /api/v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(api.OpenAPI)
	})
	(&rest.Handlers{Registry: store, Proxies: func() any { return xdsServer.Proxies() }}).Register(mux)
	tel.RegisterRoutes(mux)
	httpServer := &http.Server{
		Handler:           rest.Traced(tp, mux),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}

	if err := tel.Start(ctx); err != nil {
		return err
	}
	cleanups = append(cleanups, func() {
		sctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
		defer cancel()
		if err := tel.Close(sctx); err != nil {
			logger.Warn("telemetry shutdown", "err", err)
		}
	})
	bound.OTLPGRPC, bound.OTLPHTTP = tel.OTLPGRPCAddr(), tel.OTLPHTTPAddr()

	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	goRun := func(name string, f func() error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	goRun("registry", func() error { return store.Run(runCtx, xdsServer.Notify) })
	goRun("xds", func() error { return xdsServer.Run(runCtx, input) })
	goRun("grpc server", func() error { return grpcServer.Serve(grpcLis) })
	goRun("http server", func() error {
		if err := httpServer.Serve(httpLis); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	logger.Info("control plane listening",
		"grpc", bound.GRPC, "http", bound.HTTP, "otlp_grpc", bound.OTLPGRPC, "otlp_http", bound.OTLPHTTP,
		"etcd", endpoints, "version", Version)
	if onReady != nil {
		onReady(bound)
	}

	select {
	case <-ctx.Done():
		logger.Info("shutting down", "reason", context.Cause(ctx))
	case err = <-errc:
		logger.Error("component failed, shutting down", "err", err)
	case err = <-etcdFailed:
		err = fmt.Errorf("embedded etcd: %w", err)
		logger.Error("embedded etcd failed, shutting down", "err", err)
	}
	healthServer.Shutdown()
	shutdownCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	_ = httpServer.Shutdown(shutdownCtx)
	// In-flight unary calls (registrations) finish; ADS streams never end by
	// themselves, so after a short grace period they are closed and the data
	// planes reconnect to another replica or to this one once it is back.
	stopped := make(chan struct{})
	go func() { grpcServer.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(min(2*time.Second, cfg.ShutdownTimeout)):
		grpcServer.Stop()
		<-stopped
	}
	cancelRun()
	wg.Wait()
	logger.Info("control plane stopped")
	return err
}

// etcdClient returns the embedded etcd's in-process client (no loopback gRPC:
// a registration costs about half the CPU), or a network client of cfg when
// etcd is external (embedded nil).
func etcdClient(embedded *embedetcd.Server, cfg clientv3.Config) (*clientv3.Client, error) {
	if embedded != nil {
		return embedded.Client(), nil
	}
	return clientv3.New(cfg)
}

// notReady says why the control plane cannot take traffic yet, or "" when it
// can: etcd answers a linearizable read, the registry has listed, and the first
// xDS snapshot is published.
func notReady(ctx context.Context, cli *clientv3.Client, prefix string, store *registry.Store, x *xds.Server) string {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := cli.Get(clientv3.WithRequireLeader(ctx), prefix+"readyz", clientv3.WithCountOnly()); err != nil {
		return "etcd unreachable: " + err.Error()
	}
	if !store.Ready() {
		return "registry has not listed etcd yet"
	}
	if !x.Ready() {
		return "first xDS snapshot not built yet"
	}
	return ""
}

func splitHostPort(addr string) (string, uint32) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	var port uint32
	_, _ = fmt.Sscan(portStr, &port)
	return host, port
}

// Version is the control plane's version, set at build time with
// -ldflags "-X github.com/meshplane/meshplane/internal/app.Version=...".
var Version = "dev"
