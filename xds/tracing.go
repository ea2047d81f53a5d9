package xds

import (
	"math"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	detectorsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/tracers/opentelemetry/resource_detectors/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
)

// samplingPercent is the random sampling percentage for a service host
// ("name.namespace"): its override, else the mesh-wide percentage.
func samplingPercent(tr *Tracing, host string) float64 {
	if p, ok := tr.ServiceSamplingPercent[host]; ok {
		return p
	}
	return tr.SamplingPercent
}

// hcmTracing is the tracing block of an Envoy HTTP connection manager: the
// OpenTelemetry tracer exporting over OTLP/gRPC through TracingClusterName.
//
// serviceName is the span resource's service.name. It is empty on the shared
// outbound listener, which instead gets the environment resource detector so
// each sidecar names itself through OTEL_RESOURCE_ATTRIBUTES
// (service.name=name.namespace); detected attributes override the default
// "unknown_service:envoy".
// gRPC clients ignore HCM tracing, so only Envoy listeners carry it.
func hcmTracing(tr *Tracing, serviceName string, percent float64) *hcmv3.HttpConnectionManager_Tracing {
	cfg := &tracev3.OpenTelemetryConfig{
		GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: TracingClusterName},
		}},
		ServiceName: serviceName,
	}
	if serviceName == "" {
		cfg.ResourceDetectors = []*corev3.TypedExtensionConfig{{
			Name:        envDetectorName,
			TypedConfig: anyOf(&detectorsv3.EnvironmentResourceDetectorConfig{}),
		}}
	}
	return &hcmv3.HttpConnectionManager_Tracing{
		Provider: &tracev3.Tracing_Http{
			Name:       otelTracerName,
			ConfigType: &tracev3.Tracing_Http_TypedConfig{TypedConfig: anyOf(cfg)},
		},
		RandomSampling: &typev3.Percent{Value: percent},
	}
}

// routeTracing overrides the HCM's random sampling for one route, which is
// how the shared outbound listener applies per-service sampling.
func routeTracing(percent float64) *routev3.Tracing {
	return &routev3.Tracing{RandomSampling: &typev3.FractionalPercent{
		Numerator:   uint32(math.Round(percent * 10000)),
		Denominator: typev3.FractionalPercent_MILLION,
	}}
}

// tracingCluster is the OTLP/gRPC collector cluster the tracer exports to.
func tracingCluster(tr *Tracing) (c *clusterv3.Cluster) {
	return staticCluster(TracingClusterName, tr.CollectorHost, tr.CollectorPort, true)
}
