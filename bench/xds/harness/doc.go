// Package harness drives the xDS scale benchmark: it builds and starts the
// real control plane as a child process, registers a synthetic registry
// through the gRPC Registry API, starts the load generator
// (bench/xds/cmd/xdsload) as a second child process, changes one endpoint
// several times and turns what both processes report into the figures of
// docs/benchmarks.md: convergence latency, server memory per connected
// client, server CPU per push and registrations per second.
package harness
