// Package xds turns the registry (and, later, policy) into Envoy resources and
// serves them over ADS. Translate is a pure function of Input, assembled from
// per-service translations; the Server coalesces changes, re-translates only
// the services that changed, publishes each resource version once for every
// connected data plane, and guards against NACK loops. SotW ADS streams
// (proxyless gRPC) are served by the package's own loop, one goroutine per
// stream (ads.go); delta streams (Envoy) by go-control-plane's server.
package xds
