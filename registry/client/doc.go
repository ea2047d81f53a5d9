// Package client registers an application instance with Meshplane's
// registry and keeps it registered: it heartbeats every TTL/3, registers
// again whenever the control plane has lost the instance (expired lease,
// restart, outage) and deregisters on shutdown. It depends only on gRPC and
// the generated API, not on etcd.
package client
