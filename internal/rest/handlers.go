package rest

import (
	"net/http"
	"regexp"

	"github.com/meshplane/meshplane/registry"
)

// SnapshotSource gives the registry as the control plane currently sees it.
type SnapshotSource interface {
	Snapshot() registry.Snapshot
}

// ProxySource lists the connected data planes; the value is JSON-encoded as is.
type ProxySource func() any

// Handlers serves the read-only registry and proxy endpoints.
type Handlers struct {
	Registry SnapshotSource
	Proxies  ProxySource
}

// Register adds the handlers' routes to mux.
func (h *Handlers) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/services", h.listServices)
	mux.HandleFunc("GET /api/v1/namespaces/{ns}/services/{name}", h.getService)
	mux.HandleFunc("GET /api/v1/proxies", h.listProxies)
	// Everything else under the API answers a problem document too, so that
	// clients never have to parse ServeMux's plain-text 404.
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		WriteProblem(w, http.StatusNotFound, "no such API resource: "+r.Method+" "+r.URL.Path, "")
	})
}

// dnsLabel is RFC 1123's label: what service names and namespaces must be.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// ServiceSummary is one entry of GET /api/v1/services.
type ServiceSummary struct {
	Name      string          `json:"name"`
	Namespace string          `json:"namespace"`
	Ports     []registry.Port `json:"ports"`
	Instances int             `json:"instances"`
	Serving   int             `json:"serving"`
}

// ServiceList is the body of GET /api/v1/services.
type ServiceList struct {
	Revision int64            `json:"revision"`
	Services []ServiceSummary `json:"services"`
}

func (h *Handlers) listServices(w http.ResponseWriter, r *http.Request) {
	ns := r.URL.Query().Get("namespace")
	if ns != "" && !dnsLabel.MatchString(ns) {
		WriteProblem(w, http.StatusBadRequest, "namespace must be a DNS label (lowercase letters, digits, '-', at most 63)", "namespace")
		return
	}
	snap := h.Registry.Snapshot()
	out := ServiceList{Revision: snap.Revision, Services: []ServiceSummary{}}
	for _, s := range snap.Services {
		if ns != "" && s.Namespace != ns {
			continue
		}
		sum := ServiceSummary{Name: s.Name, Namespace: s.Namespace, Ports: s.Ports, Instances: len(s.Instances)}
		for _, in := range s.Instances {
			if in.Health == registry.HealthServing {
				sum.Serving++
			}
		}
		out.Services = append(out.Services, sum)
	}
	WriteJSON(w, out)
}

func (h *Handlers) getService(w http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("name")
	if !dnsLabel.MatchString(ns) {
		WriteProblem(w, http.StatusBadRequest, "namespace must be a DNS label (lowercase letters, digits, '-', at most 63)", "ns")
		return
	}
	if !dnsLabel.MatchString(name) {
		WriteProblem(w, http.StatusBadRequest, "service name must be a DNS label (lowercase letters, digits, '-', at most 63)", "name")
		return
	}
	for _, s := range h.Registry.Snapshot().Services {
		if s.Namespace == ns && s.Name == name {
			WriteJSON(w, s)
			return
		}
	}
	WriteProblem(w, http.StatusNotFound, "no service "+name+" in namespace "+ns, "name")
}

func (h *Handlers) listProxies(w http.ResponseWriter, _ *http.Request) {
	WriteJSON(w, map[string]any{"proxies": h.Proxies()})
}
