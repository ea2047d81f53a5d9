package xds

import (
	"fmt"
	"testing"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
)

// BenchmarkNotifyWatches measures the cache's side of a push through
// go-control-plane's watches (the delta path; SotW streams are served by
// ads.go): one EDS resource of 1,000 changes and each of 1,000 watches (10 names each,
// all including the changed one) gets its response built and queued; the
// watches are then re-opened as the streams' next requests would.
func BenchmarkNotifyWatches(b *testing.B) {
	const services, watches = 1000, 1000
	c := newTypeCache(resourcev3.EndpointType)
	desired := map[string]*entry{}
	for i := range services {
		e, err := newEntry(resourcev3.EndpointType, fmt.Sprint("svc-", i), svCLA(fmt.Sprint("svc-", i), 10000, 10001))
		if err != nil {
			b.Fatal(err)
		}
		desired[e.name] = e
	}
	c.set("", desired)
	type stream struct {
		names []string
		sub   streamv3.Subscription
		ch    chan cachev3.Response
	}
	streams := make([]*stream, watches)
	open := func(s *stream) {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: s.names, ResponseNonce: "n"}
		if _, err := c.CreateWatch(req, s.sub, s.ch); err != nil {
			b.Fatal(err)
		}
	}
	for i := range streams {
		s := &stream{names: []string{"svc-0"}, ch: make(chan cachev3.Response, 1)}
		for j := 1; j < 10; j++ {
			s.names = append(s.names, fmt.Sprint("svc-", (i*9+j)%services))
		}
		s.sub = streamv3.NewSotwSubscription(s.names, false)
		ret := map[string]string{}
		for _, n := range s.names {
			ret[n] = desired[n].version
		}
		s.sub.SetReturnedResources(ret)
		streams[i] = s
		open(s)
	}
	b.ReportAllocs()
	gen := uint32(0)
	for b.Loop() {
		gen++
		e, err := newEntry(resourcev3.EndpointType, "svc-0", svCLA("svc-0", 20000+gen))
		if err != nil {
			b.Fatal(err)
		}
		c.apply(map[string]*entry{"svc-0": e}, nil)
		for _, s := range streams {
			r := <-s.ch
			s.sub.SetReturnedResources(r.GetReturnedResources())
			open(s)
		}
	}
}
