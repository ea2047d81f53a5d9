package registry

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the store's Prometheus metrics.
type metrics struct {
	services      prometheus.Gauge
	instances     prometheus.Gauge
	etcdErrors    *prometheus.CounterVec
	registrations *prometheus.CounterVec
}

// Values of the result label of meshplane_registry_registrations_total.
const (
	resultCreated = "created"
	resultUpdated = "updated"
	resultInvalid = "invalid"
	resultError   = "error"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		services: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshplane_registry_services",
			Help: "Services with at least one registered instance, as seen by this replica's watch.",
		}),
		instances: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "meshplane_registry_instances",
			Help: "Registered instances, as seen by this replica's watch.",
		}),
		etcdErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshplane_registry_etcd_errors_total",
			Help: "Failed etcd operations of the registry, by operation.",
		}, []string{"op"}),
		registrations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshplane_registry_registrations_total",
			Help: "Register calls by result: created, updated, invalid, error.",
		}, []string{"result"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.services, m.instances, m.etcdErrors, m.registrations} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("registry: metrics already registered (one Store per Registerer): %w", err)
			}
			return nil, fmt.Errorf("registry: register metrics: %w", err)
		}
	}
	return m, nil
}
