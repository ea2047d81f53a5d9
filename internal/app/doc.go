// Package app wires Meshplane's components into one control plane: it loads
// the configuration (flags, environment, config file), starts etcd or
// connects to it, and runs the registry, xDS, telemetry, gRPC and HTTP
// servers until its context ends. cmd/controlplane and the end-to-end tests
// both start the control plane through Serve.
package app
