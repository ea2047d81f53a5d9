package xds

import (
	"context"
	"slices"
	"testing"
)

// changeOneInstance returns in with instance j of service i given a new
// weight, copying only what it changes (as a new registry snapshot would).
func changeOneInstance(in Input, i, j int, weight uint32) Input {
	out := in
	out.Services = slices.Clone(in.Services)
	out.Services[i].Instances = slices.Clone(in.Services[i].Instances)
	out.Services[i].Instances[j].Weight = weight
	return out
}

// BenchmarkPublishOneInstance measures the real publish pipeline (default
// translator and validation) for 1,000 services × 10 instances where one
// instance's weight changed since the last publish, with no client
// connected: what every publish of a running mesh costs.
func BenchmarkPublishOneInstance(b *testing.B) {
	srv, err := NewServer(ServerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	in := benchInput(1000, 10)
	srv.publish(ctx, func() Input { return in })
	if !srv.Ready() {
		b.Fatal("first publish failed")
	}
	before := metricValue(srv.metrics.translateErrors)
	b.ReportAllocs()
	w := uint32(1)
	for b.Loop() {
		w = w%MaxWeight + 1
		in = changeOneInstance(in, 500, 3, w)
		srv.publish(ctx, func() Input { return in })
	}
	b.StopTimer()
	if metricValue(srv.metrics.translateErrors) != before {
		b.Fatal("a publish failed")
	}
}
