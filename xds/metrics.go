package xds

import (
	"errors"
	"fmt"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the ADS server's Prometheus metrics.
type metrics struct {
	connected       *prometheus.GaugeVec
	pushes          *prometheus.CounterVec
	nacks           *prometheus.CounterVec
	publishes       prometheus.Counter
	translateErrors prometheus.Counter
	publishDuration prometheus.Histogram
	convergence     *prometheus.HistogramVec
	resources       *prometheus.GaugeVec
}

// newMetrics registers the metrics on reg; nil reg leaves them unregistered.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshplane_xds_connected_proxies",
			Help: "Open xDS streams whose node has identified itself, by node kind (envoy, grpc).",
		}, []string{"kind"}),
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshplane_xds_pushes_total",
			Help: "xDS responses sent, by resource type (lds, rds, cds, eds, other).",
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshplane_xds_nacks_total",
			Help: "xDS responses rejected by a data plane, by resource type.",
		}, []string{"type"}),
		publishes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshplane_xds_publish_total",
			Help: "Translations published to the xDS caches.",
		}),
		translateErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshplane_xds_translate_errors_total",
			Help: "Translations or validations that failed; the last good resources stayed served.",
		}),
		publishDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshplane_xds_publish_duration_seconds",
			Help:    "Time to translate, validate and publish one input.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
		}),
		convergence: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "meshplane_xds_convergence_seconds",
			Help:    "Time from publishing a changed resource to a data plane's ACK of the response carrying it, by resource type.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 12),
		}, []string{"type"}),
		resources: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshplane_xds_resources",
			Help: "Node-independent resources in the xDS caches, by resource type.",
		}, []string{"type"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.connected, m.pushes, m.nacks, m.publishes, m.translateErrors,
		m.publishDuration, m.convergence, m.resources} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("xds: metrics already registered (one Server per registry): %w", err)
			}
			return nil, fmt.Errorf("xds: register metrics: %w", err)
		}
	}
	return m, nil
}

// typeLabel is the short metric label of a type URL.
func typeLabel(typeURL string) string {
	switch typeURL {
	case resourcev3.ListenerType:
		return "lds"
	case resourcev3.RouteType:
		return "rds"
	case resourcev3.ClusterType:
		return "cds"
	case resourcev3.EndpointType:
		return "eds"
	case resourcev3.SecretType:
		return "sds"
	}
	return "other"
}
