package telemetry_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshplane/meshplane/telemetry"
)

// Example wires the telemetry subsystem the way cmd/controlplane does: OTLP receivers on free ports, the REST
// routes on the API mux, metrics on the control plane's registry.
func Example() {
	cfg := telemetry.Defaults()
	cfg.OTLPGRPCAddr, cfg.OTLPHTTPAddr = "127.0.0.1:0", "127.0.0.1:0"
	reg := prometheus.NewRegistry()
	tel, err := telemetry.New(cfg, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})), reg)
	if err != nil {
		fmt.Println(err)
		return
	}
	mux := http.NewServeMux()
	tel.RegisterRoutes(mux)
	if err := tel.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fmt.Println(tel.OTLPGRPCAddr() != "", tel.OTLPHTTPAddr() != "", tel.Close(ctx))
	// Output: true true <nil>
}
