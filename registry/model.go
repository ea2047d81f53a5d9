package registry

import (
	"sort"
)

// Protocol is the application protocol spoken on a port. It decides how the
// translator builds listeners and clusters for the port.
type Protocol string

// Protocols a port may declare.
const (
	ProtocolGRPC  Protocol = "GRPC"
	ProtocolHTTP  Protocol = "HTTP"
	ProtocolHTTP2 Protocol = "HTTP2"
	ProtocolTCP   Protocol = "TCP"
)

// Health is what an instance reports about itself. Only SERVING instances are
// sent to data planes in EDS.
type Health string

// Health states an instance may report.
const (
	HealthServing    Health = "SERVING"
	HealthNotServing Health = "NOT_SERVING"
	HealthDraining   Health = "DRAINING"
)

// Port is one port of a service as an instance exposes it. Port is the mesh
// port that clients dial (xds:///name.namespace:Port); TargetPort is where this
// instance actually listens (0 means the same as Port).
type Port struct {
	Name       string   `json:"name" yaml:"name"`
	Port       uint32   `json:"port" yaml:"port"`
	TargetPort uint32   `json:"targetPort,omitempty" yaml:"targetPort,omitempty"`
	Protocol   Protocol `json:"protocol" yaml:"protocol"`
}

// EffectiveTargetPort is the port the instance listens on.
func (p Port) EffectiveTargetPort() uint32 {
	if p.TargetPort == 0 {
		return p.Port
	}
	return p.TargetPort
}

// Locality is where an instance runs. Data planes prefer their own locality.
type Locality struct {
	Region  string `json:"region,omitempty" yaml:"region,omitempty"`
	Zone    string `json:"zone,omitempty" yaml:"zone,omitempty"`
	SubZone string `json:"subZone,omitempty" yaml:"subZone,omitempty"`
}

// Instance is one registered endpoint of a service, bound to an etcd lease.
type Instance struct {
	// ID is unique within the service; derived from address and ports when the
	// registration does not give one.
	ID        string `json:"id" yaml:"id"`
	Service   string `json:"service" yaml:"service"`
	Namespace string `json:"namespace" yaml:"namespace"`
	Address   string `json:"address" yaml:"address"`
	// Ports are the instance's ports, sorted by Port.
	Ports    []Port   `json:"ports" yaml:"ports"`
	Locality Locality `json:"locality,omitempty" yaml:"locality,omitempty"`
	// Weight is the relative share of traffic, 1..1000 (0 in a request means 1).
	Weight   uint32            `json:"weight" yaml:"weight"`
	Version  string            `json:"version,omitempty" yaml:"version,omitempty"`
	Labels   map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty" yaml:"metadata,omitempty"`
	Health   Health            `json:"health" yaml:"health"`
	// TTLSeconds is the lease TTL the instance was registered with.
	TTLSeconds int64 `json:"ttlSeconds,omitempty" yaml:"ttlSeconds,omitempty"`
	// ModRevision is the etcd revision of the instance's last change. It is
	// read from etcd, not stored in the value, and left out of JSON/YAML so
	// that serialised inputs do not change when only revisions do.
	ModRevision int64 `json:"-" yaml:"-"`
}

// Service is every instance registered under one name in one namespace.
type Service struct {
	Name      string `json:"name" yaml:"name"`
	Namespace string `json:"namespace" yaml:"namespace"`
	// Ports is the union of the instances' ports by Port number, sorted by Port.
	// When instances disagree on a port's name or protocol, the instance with
	// the smallest ID wins.
	Ports []Port `json:"ports" yaml:"ports"`
	// Instances are sorted by ID.
	Instances []Instance `json:"instances" yaml:"instances"`
}

// Host is the service's mesh host name, name.namespace.
func (s Service) Host() string { return s.Name + "." + s.Namespace }

// Snapshot is the registry as of one etcd revision: immutable once built.
type Snapshot struct {
	// Revision is the etcd revision the snapshot reflects.
	Revision int64 `json:"revision" yaml:"revision"`
	// Services are sorted by namespace, then name.
	Services []Service `json:"services" yaml:"services"`
}

// BuildSnapshot groups instances into services, sorted, with each service's
// port union computed. It does not modify its argument.
func BuildSnapshot(revision int64, instances []Instance) Snapshot {
	type key struct{ ns, name string }
	byService := map[key][]Instance{}
	for _, in := range instances {
		k := key{in.Namespace, in.Service}
		byService[k] = append(byService[k], in)
	}
	keys := make([]key, 0, len(byService))
	for k := range byService {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].ns != keys[j].ns {
			return keys[i].ns < keys[j].ns
		}
		return keys[i].name < keys[j].name
	})
	snap := Snapshot{Revision: revision, Services: make([]Service, 0, len(keys))}
	for _, k := range keys {
		ins := byService[k]
		sort.Slice(ins, func(i, j int) bool { return ins[i].ID < ins[j].ID })
		ports := map[uint32]Port{}
		for _, in := range ins {
			for _, p := range in.Ports {
				if _, seen := ports[p.Port]; !seen {
					ports[p.Port] = Port{Name: p.Name, Port: p.Port, Protocol: p.Protocol}
				}
			}
		}
		svcPorts := make([]Port, 0, len(ports))
		for _, p := range ports {
			svcPorts = append(svcPorts, p)
		}
		sort.Slice(svcPorts, func(i, j int) bool { return svcPorts[i].Port < svcPorts[j].Port })
		snap.Services = append(snap.Services, Service{Name: k.name, Namespace: k.ns, Ports: svcPorts, Instances: ins})
	}
	return snap
}
