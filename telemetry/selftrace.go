package telemetry

import (
	"context"
	"fmt"

	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// TracerConfig configures the control plane's own tracing.
type TracerConfig struct {
	// Endpoint is the OTLP/gRPC endpoint (host:port) receiving the control plane's spans. Empty means off.
	Endpoint string `json:"endpoint"`
	// TLS dials Endpoint with TLS and the system roots; false (the default) sends plaintext.
	TLS bool `json:"tls"`
	// SampleRatio is the fraction (0..1] of root spans sampled; child spans follow their parent. Zero means 1.
	SampleRatio float64 `json:"sampleRatio"`
	// ServiceName is the service.name resource attribute. Empty means "meshplane-controlplane".
	ServiceName string `json:"serviceName"`
}

// NewTracerProvider returns the control plane's TracerProvider and its shutdown function. With no Endpoint it is
// a no-op provider (and shutdown does nothing). Spans are batched and exported with otlptracegrpc. Do not point
// Endpoint at this control plane's own OTLP receiver without sampling: the receiver itself is never traced, so
// there is no feedback loop, but every traced API call then shows up in the service graph.
func NewTracerProvider(ctx context.Context, cfg TracerConfig) (trace.TracerProvider, func(context.Context) error, error) {
	if cfg.Endpoint == "" {
		return noop.NewTracerProvider(), func(context.Context) error { return nil }, nil
	}
	if cfg.SampleRatio < 0 || cfg.SampleRatio > 1 {
		return nil, nil, fmt.Errorf("telemetry: SampleRatio must be within [0,1], got %g", cfg.SampleRatio)
	}
	opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(cfg.Endpoint)}
	if !cfg.TLS {
		opts = append(opts, otlptracegrpc.WithInsecure())
	}
	exp, err := otlptracegrpc.New(ctx, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("telemetry: self-trace exporter %q: %w", cfg.Endpoint, err)
	}
	name := cfg.ServiceName
	if name == "" {
		name = "meshplane-controlplane"
	}
	ratio := cfg.SampleRatio
	if ratio == 0 {
		ratio = 1
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(resource.NewSchemaless(semconv.ServiceName(name))),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio))),
	)
	return tp, tp.Shutdown, nil
}
