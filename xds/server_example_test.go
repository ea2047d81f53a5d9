package xds_test

import (
	"context"
	"log/slog"
	"net"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/meshplane/meshplane/xds"
)

// ExampleNewServer wires the ADS server: one grpc.Server with the xDS
// options, the xDS loop fed by the latest input, Notify on every change.
func ExampleNewServer() {
	srv, err := xds.NewServer(xds.ServerOptions{
		Logger:     slog.Default(),
		Registerer: prometheus.NewRegistry(),
		// HoldOff and MaxDelay default to 100 ms and 1 s.
	})
	if err != nil {
		panic(err)
	}
	g := grpc.NewServer(xds.GRPCServerOptions()...)
	srv.Register(g)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() { _ = g.Serve(lis) }()
	defer g.Stop()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	latest := func() xds.Input { return xds.Input{} } // e.g. from the registry's snapshot
	go func() { _ = srv.Run(ctx, latest) }()

	srv.Notify()      // whenever the registry or policy changes
	_ = srv.Ready()   // for /readyz
	_ = srv.Proxies() // for GET /api/v1/proxies
	defer srv.Close()
}
