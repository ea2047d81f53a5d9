package loadgen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

// Plan is what the load generator simulates. The benchmark driver writes it
// as JSON; every field is required unless it says otherwise.
type Plan struct {
	// Addr is the ADS server's host:port.
	Addr string `json:"addr"`
	// Clusters names every EDS cluster (and ClusterLoadAssignment) the server
	// publishes; scoped clients subscribe to some of them by name.
	Clusters []string `json:"clusters"`
	// Shared is the index in Clusters of the cluster every scoped client
	// subscribes to; the benchmark changes one of its endpoints.
	Shared int `json:"shared"`
	// PerClient is how many clusters each scoped client subscribes to, the
	// shared one included, 1..len(Clusters).
	PerClient int `json:"perClient"`
	// Scoped and Wildcard are how many clients of each kind to run (≥ 0, at
	// least one in all).
	Scoped   int `json:"scoped"`
	Wildcard int `json:"wildcard"`
	// MarkerAddress and MarkerPort name the endpoint of the shared cluster
	// whose load-balancing weight marks a change: a client records a change
	// when the weight it last saw differs (0 = endpoint absent).
	MarkerAddress string `json:"markerAddress"`
	MarkerPort    uint32 `json:"markerPort"`
	// DialConcurrency bounds how many clients connect at once (they count as
	// connecting until they hold their initial configuration); 0 means 256.
	DialConcurrency int `json:"dialConcurrency,omitempty"`
	// NodePrefix starts every client's node id; empty means "xdsload".
	NodePrefix string `json:"nodePrefix,omitempty"`
	// ProgressInterval is how often a progress event is written while clients
	// connect, in nanoseconds as JSON; 0 means 5 s.
	ProgressInterval time.Duration `json:"progressInterval,omitempty"`
}

// ParsePlan decodes and validates a JSON plan. Unknown fields are rejected so
// that a typo does not silently fall back to a default.
func ParsePlan(data []byte) (Plan, error) {
	var p Plan
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return Plan{}, fmt.Errorf("loadgen: plan: %w", err)
	}
	if dec.More() {
		return Plan{}, errors.New("loadgen: plan: trailing data after the JSON object")
	}
	if err := p.Validate(); err != nil {
		return Plan{}, err
	}
	return p, nil
}

// Validate reports the first field that is out of range, by its JSON name.
func (p Plan) Validate() error {
	if _, _, err := net.SplitHostPort(p.Addr); err != nil {
		return fmt.Errorf("loadgen: plan: addr %q: want host:port", p.Addr)
	}
	if len(p.Clusters) == 0 {
		return errors.New("loadgen: plan: clusters: must not be empty")
	}
	seen := make(map[string]bool, len(p.Clusters))
	for i, c := range p.Clusters {
		if c == "" {
			return fmt.Errorf("loadgen: plan: clusters[%d]: must not be empty", i)
		}
		if seen[c] {
			return fmt.Errorf("loadgen: plan: clusters[%d] %q: duplicate", i, c)
		}
		seen[c] = true
	}
	if p.Shared < 0 || p.Shared >= len(p.Clusters) {
		return fmt.Errorf("loadgen: plan: shared %d: want 0..%d", p.Shared, len(p.Clusters)-1)
	}
	if p.PerClient < 1 || p.PerClient > len(p.Clusters) {
		return fmt.Errorf("loadgen: plan: perClient %d: want 1..%d", p.PerClient, len(p.Clusters))
	}
	if p.Scoped < 0 || p.Wildcard < 0 || p.Scoped+p.Wildcard == 0 {
		return fmt.Errorf("loadgen: plan: scoped %d, wildcard %d: want ≥ 0 each and at least one client", p.Scoped, p.Wildcard)
	}
	if p.MarkerAddress == "" {
		return errors.New("loadgen: plan: markerAddress: must not be empty")
	}
	if p.MarkerPort == 0 || p.MarkerPort > 65535 {
		return fmt.Errorf("loadgen: plan: markerPort %d: want 1..65535", p.MarkerPort)
	}
	if p.DialConcurrency < 0 {
		return fmt.Errorf("loadgen: plan: dialConcurrency %d: want ≥ 0", p.DialConcurrency)
	}
	if p.ProgressInterval < 0 {
		return fmt.Errorf("loadgen: plan: progressInterval %s: want ≥ 0", p.ProgressInterval)
	}
	return nil
}

// Subscriptions is the clusters scoped client i subscribes to: the shared
// one first, then PerClient-1 others chosen round-robin over the rest, so that
// every cluster is watched by about the same number of clients.
func (p Plan) Subscriptions(i int) []string {
	names := make([]string, 0, p.PerClient)
	names = append(names, p.Clusters[p.Shared])
	others := len(p.Clusters) - 1
	for k := 0; k < p.PerClient-1; k++ {
		j := (i*(p.PerClient-1) + k) % others
		if j >= p.Shared {
			j++ // skip the shared cluster
		}
		names = append(names, p.Clusters[j])
	}
	return names
}

func (p Plan) dialConcurrency() int {
	if p.DialConcurrency == 0 {
		return 256
	}
	return p.DialConcurrency
}

func (p Plan) nodePrefix() string {
	if p.NodePrefix == "" {
		return "xdsload"
	}
	return p.NodePrefix
}

func (p Plan) progressInterval() time.Duration {
	if p.ProgressInterval == 0 {
		return 5 * time.Second
	}
	return p.ProgressInterval
}
