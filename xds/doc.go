// Package xds turns the registry (and, later, policy) into Envoy resources and
// serves them over ADS. Translate is a pure function of Input; the Server
// coalesces changes, publishes each resource version once for every connected
// data plane, and guards against NACK loops.
package xds
