// Package embedetcd runs etcd inside the control plane process for
// single-machine deployments and tests. It wraps go.etcd.io/etcd/server/v3/embed
// with loopback defaults, port-0 support and etcd's logs routed to slog at
// warning level and above, so start-up output stays readable.
package embedetcd
