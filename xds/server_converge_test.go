package xds

import (
	"fmt"
	"sync"
	"testing"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// TestServerConcurrentClientsConverge runs SotW and delta clients that ACK
// everything while publishes keep changing endpoints; every client must end
// holding exactly the last published content.
func TestServerConcurrentClientsConverge(t *testing.T) {
	const services, clients, rounds = 20, 8, 30
	build := func(gen int) *Resources {
		res := baseResources()
		res.Endpoints = nil
		for i := range services {
			port := uint32(1000 + i)
			if i%3 == gen%3 {
				port += uint32(gen) * 100
			}
			res.Endpoints = append(res.Endpoints, svCLA(fmt.Sprintf("s%d", i), port))
		}
		return res
	}
	f := newFixture(t, build(0))
	names := make([]string, services)
	for i := range names {
		names[i] = fmt.Sprintf("s%d", i)
	}

	type holder struct {
		mu   sync.Mutex
		have map[string]*endpointv3.ClusterLoadAssignment
	}
	holders := make([]*holder, 0, 2*clients)
	for i := range clients {
		// SotW: subscribe to every service.
		h := &holder{have: map[string]*endpointv3.ClusterLoadAssignment{}}
		holders = append(holders, h)
		c := newSotwClient(t, f.conn(), grpcNode(fmt.Sprintf("sotw-%d", i)))
		c.send(resourcev3.EndpointType, names, "", "", nil)
		go func() {
			for r := range c.resps {
				h.mu.Lock()
				for _, a := range r.GetResources() {
					cla := &endpointv3.ClusterLoadAssignment{}
					if err := a.UnmarshalTo(cla); err == nil {
						h.have[cla.GetClusterName()] = cla
					}
				}
				h.mu.Unlock()
				if err := c.stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResourceNames: names,
					VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce()}); err != nil {
					return
				}
			}
		}()
		// Delta.
		hd := &holder{have: map[string]*endpointv3.ClusterLoadAssignment{}}
		holders = append(holders, hd)
		d := newDeltaClient(t, f.conn(), grpcNode(fmt.Sprintf("delta-%d", i)))
		d.send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: names})
		go func() {
			for r := range d.resps {
				hd.mu.Lock()
				for _, res := range r.GetResources() {
					cla := &endpointv3.ClusterLoadAssignment{}
					if err := res.GetResource().UnmarshalTo(cla); err == nil {
						hd.have[res.GetName()] = cla
					}
				}
				for _, n := range r.GetRemovedResources() {
					delete(hd.have, n)
				}
				hd.mu.Unlock()
				if err := d.stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()}); err != nil {
					return
				}
			}
		}()
	}
	for gen := 1; gen <= rounds; gen++ {
		f.res.Store(build(gen))
		f.srv.Notify()
		if gen%10 == 0 {
			f.waitPublishes(0) // let some publishes interleave with ACKs
		}
	}
	final := build(rounds)
	f.publish(final)
	want := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, c := range final.Endpoints {
		want[c.GetClusterName()] = c
	}
	for i, h := range holders {
		eventually(t, func() bool {
			h.mu.Lock()
			defer h.mu.Unlock()
			if len(h.have) != len(want) {
				return false
			}
			for n, c := range want {
				if !proto.Equal(h.have[n], c) {
					return false
				}
			}
			return true
		}, "client %d to hold the final endpoints", i)
	}
}
